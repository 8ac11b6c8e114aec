#include "check_request.h"

#include <string.h>

#include "sample.h"

static void print_request(shadow_gen_t *g, int lreq, FILE *out) {
  shadow_buf_t m = SHADOW_BUF_INIT, t = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  if (shadow_script_req_read(g, lreq, &m, &t, &h, &b) == 0) {
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
  int id = shadow_config_method_id(method);
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
    int lreq = shadow_script_req_open(g, &req);
    fprintf(out, "request %s\n", request);
    int mirrored = cfg->candidate.kind != SHADOW_BACKEND_NONE;
    int method_ok = (cfg->mirror_methods >> id) & 1;
    fprintf(out, "  method     %s\n",
            method_ok ? "mirrored" : "not in mirror_methods: not mirrored");
    mirrored &= method_ok;
    int pass = shadow_script_filter(g, lreq);
    if (shadow_gen_has_hook(g, SHADOW_HOOK_FILTER))
      fprintf(out, "  filter     %s\n", pass ? "passes" : "filters it out");
    mirrored &= pass;
    shadow_buf_t key = SHADOW_BUF_INIT;
    int k = shadow_script_key(g, lreq, &key);
    if (k == 1) {
      int in = shadow_sampled(key.data, key.len, cfg->rate);
      fprintf(out, "  key        \"%s\": %s at rate %g\n", key.data,
              in ? "sampled" : "not sampled", cfg->rate);
      mirrored &= in;
    } else if (k == 0) {
      fprintf(out, "  key        none: a random draw at rate %g\n", cfg->rate);
      mirrored &= cfg->rate > 0;
    } else {
      fprintf(out, "  key        the hook failed: not sampled\n");
      mirrored = 0;
    }
    shadow_buf_free(&key);
    if (shadow_gen_has_hook(g, SHADOW_HOOK_ROUTE)) {
      shadow_buf_t route = SHADOW_BUF_INIT;
      if (shadow_script_route(g, lreq, &route) == 0)
        fprintf(out, "  route      %s\n", route.data);
      else
        fprintf(out, "  route      the hook failed: \"unknown\"\n");
      shadow_buf_free(&route);
    }
    if (shadow_gen_has_hook(g, SHADOW_HOOK_REWRITE)) {
      int rw = 0;
      if (shadow_script_rewrite(g, lreq, &rw) == 0) {
        fprintf(out, "  rewrite    the candidate gets:\n");
        print_request(g, rw, out);
        if (rw != lreq) shadow_script_req_close(g, rw);
      } else {
        fprintf(out, "  rewrite    the hook failed: the candidate is "
                     "skipped\n");
        mirrored = 0;
      }
    }
    fprintf(out, "  verdict    %s\n",
            mirrored ? (k == 1 ? "mirrored to the candidate"
                               : "mirrored when the random draw says so")
                     : "not mirrored");
    shadow_script_req_close(g, lreq);
  }
  shadow_buf_free(&req.target);
  shadow_headers_free(&req.headers);
  return rc;
}
