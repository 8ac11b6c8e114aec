/* `--check --request`: runs the dispatcher's own policy (policy.c) and the
 * rewrite hook on one request made up from the command line, and prints
 * each step of the decision. */
#include "check_request.h"

#include <string.h>

#include "policy.h"

static void print_request(shadow_gen_t *g, int lreq,
                          const shadow_headers_t *orig, FILE *out) {
  shadow_buf_t m = SHADOW_BUF_INIT, t = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  if (shadow_script_req_read(g, lreq, orig, &m, &t, &h, &b) == 0) {
    fprintf(out, "    %s %s\n", m.data, t.data);
    for (size_t i = 0; i < h.n; i++)
      fprintf(out, "    %s: %s\n", h.v[i].name, h.v[i].value);
    if (b.len) fprintf(out, "    (%zu bytes of body)\n", b.len);
  } else {
    fprintf(out, "    (the rewritten request is not a valid request)\n");
  }
  shadow_buf_free(&m);
  shadow_buf_free(&t);
  shadow_buf_free(&b);
  shadow_headers_free(&h);
}

int shadow_check_request(shadow_gen_t *g, const char *request,
                         const char *const *headers, size_t nheaders,
                         FILE *out) {
  const shadow_config_t *cfg = shadow_gen_config(g);
  char method[32];
  const char *sp = strchr(request, ' ');
  if (!sp || (size_t)(sp - request) >= sizeof(method) || sp[1] != '/') {
    fprintf(out, "--request must look like 'GET /path?query'\n");
    return -1;
  }
  memcpy(method, request, (size_t)(sp - request));
  method[sp - request] = '\0';
  int id = shadow_request_method_id(method);
  if (id < 0) {
    fprintf(out, "--request: %s is not an HTTP method\n", method);
    return -1;
  }
  shadow_request_t req;
  memset(&req, 0, sizeof(req));
  req.method = method;
  req.method_id = id;
  shadow_buf_puts(&req.target, sp + 1);
  int rc = 0;
  for (size_t i = 0; i < nheaders && rc == 0; i++) {
    const char *colon = strchr(headers[i], ':');
    if (!colon) {
      fprintf(out, "--header must look like 'name: value'\n");
      rc = -1;
      break;
    }
    const char *v = colon + 1;
    while (*v == ' ')
      v++;
    shadow_headers_add(&req.headers, headers[i], (size_t)(colon - headers[i]),
                       v, strlen(v));
  }
  if (rc == 0) {
    int lreq = shadow_script_req_open(g, &req, NULL, 0);
    fprintf(out, "request %s\n", request);
    /* The dispatcher's own decision, then the steps that led to it. */
    shadow_policy_decision_t dec = {0};
    shadow_policy_decide(g, &req, lreq, &dec);
    shadow_policy_why_t why = dec.why;
    int method_ok =
        shadow_policy_may_mirror(cfg, id) || why > SHADOW_POLICY_METHOD;
    fprintf(out, "  method     %s\n",
            method_ok ? "mirrored" : "not in mirror_methods: not mirrored");
    if (method_ok && shadow_gen_has_hook(g, SHADOW_HOOK_FILTER))
      fprintf(out, "  filter     %s\n",
              why == SHADOW_POLICY_FILTERED ? "filters it out" : "passes");
    /* The key was looked at when the decision got that far. */
    int keyed = why == SHADOW_POLICY_MIRROR || why >= SHADOW_POLICY_KEY_FAILED;
    if (why == SHADOW_POLICY_KEY_FAILED)
      fprintf(out, "  key        the hook failed: not sampled\n");
    else if (keyed && dec.has_key)
      fprintf(out, "  key        \"%s\": %s at rate %g\n", dec.key.data,
              why == SHADOW_POLICY_MIRROR ? "sampled" : "not sampled",
              cfg->rate);
    else if (keyed)
      fprintf(out, "  key        none: a random draw at rate %g\n", cfg->rate);
    shadow_buf_free(&dec.key);
    int mirrored = why == SHADOW_POLICY_MIRROR;
    if (shadow_gen_has_hook(g, SHADOW_HOOK_ROUTE)) {
      shadow_buf_t route = SHADOW_BUF_INIT;
      shadow_policy_route(g, &req, lreq, &route);
      fprintf(out, "  route      %s\n", route.data);
      shadow_buf_free(&route);
    }
    if (shadow_gen_has_hook(g, SHADOW_HOOK_REWRITE)) {
      int rw = 0;
      if (shadow_script_rewrite(g, lreq, &rw) == 0) {
        fprintf(out, "  rewrite    the candidate gets:\n");
        print_request(g, rw, &req.headers, out);
        if (rw != lreq) shadow_script_req_close(g, rw);
      } else {
        fprintf(out, "  rewrite    the hook failed: the candidate is "
                     "skipped\n");
        mirrored = 0;
      }
    }
    fprintf(out, "  verdict    %s\n",
            mirrored ? (dec.has_key ? "mirrored to the candidate"
                                    : "mirrored when the random draw says so")
            : why == SHADOW_POLICY_NOT_SAMPLED && !dec.has_key
                ? "mirrored when the random draw says so"
                : "not mirrored");
    shadow_script_req_close(g, lreq);
  }
  shadow_buf_free(&req.target);
  shadow_headers_free(&req.headers);
  return rc;
}
