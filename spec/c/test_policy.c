/* The mirroring policy and the route names, on configs loaded by the real
 * script host: methods, the filter and key hooks with their fallbacks, the
 * sticky sampling rule, and the folding of numeric path segments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "policy.h"
#include "sample.h"
#include "script.h"

static char dir[] = "/tmp/test_policy.XXXXXX";

static shadow_gen_t *load(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  shadow_gen_t *g = NULL;
  char *err = NULL;
  if (shadow_script_load(path, &g, &err) != 0)
    fprintf(stderr, "load %s: %s\n", name, err ? err : "?");
  free(err);
  return g;
}

static void make(shadow_request_t *r, const char *method, const char *target,
                 const char *user) {
  memset(r, 0, sizeof(*r));
  r->method = method;
  r->method_id = shadow_request_method_id(method);
  shadow_buf_puts(&r->target, target);
  if (user) shadow_headers_add(&r->headers, "X-User-Id", 9, user, strlen(user));
}

static void drop(shadow_request_t *r) {
  shadow_buf_free(&r->target);
  shadow_headers_free(&r->headers);
}

/* Decides for one request and returns why. */
static shadow_policy_why_t decide(shadow_gen_t *g, const char *method,
                                  const char *target, const char *user,
                                  int *has_key) {
  shadow_request_t r;
  make(&r, method, target, user);
  int lreq = shadow_script_req_open(g, &r, NULL, 0);
  shadow_policy_decision_t d = {0};
  shadow_policy_decide(g, &r, lreq, &d);
  if (has_key) *has_key = d.has_key;
  shadow_script_req_close(g, lreq);
  shadow_buf_free(&d.key);
  drop(&r);
  return d.why;
}

static void route_is(shadow_gen_t *g, const char *method, const char *target,
                     const char *want) {
  shadow_request_t r;
  make(&r, method, target, NULL);
  int lreq = shadow_script_req_open(g, &r, NULL, 0);
  shadow_buf_t route = SHADOW_BUF_INIT;
  shadow_policy_route(g, &r, lreq, &route);
  if (!route.data || strcmp(route.data, want) != 0)
    fprintf(stderr, "route of %s %s: got %s, want %s\n", method, target,
            route.data ? route.data : "(none)", want);
  CHECK(route.data && strcmp(route.data, want) == 0);
  shadow_buf_free(&route);
  shadow_script_req_close(g, lreq);
  drop(&r);
}

static void test_methods_filter_key(void) {
  shadow_gen_t *g =
      load("keyed.lua", "return { primary = 'http://127.0.0.1:1',\n"
                        "  candidate = 'http://127.0.0.1:2',\n"
                        "  sample = { rate = 0.3,\n"
                        "    key = function(req)\n"
                        "      if req.path == '/boom' then error('no') end\n"
                        "      return req.headers['x-user-id'] end,\n"
                        "    filter = function(req)\n"
                        "      return req.path ~= '/healthz' end },\n"
                        "  mirror_methods = { 'GET', 'put' } }\n");
  CHECK(g != NULL);
  if (!g) return;
  int has_key = 0;
  CHECK(decide(g, "POST", "/x", "u", NULL) == SHADOW_POLICY_METHOD);
  CHECK(decide(g, "GET", "/healthz", "u", NULL) == SHADOW_POLICY_FILTERED);
  CHECK(decide(g, "GET", "/boom", "u", NULL) == SHADOW_POLICY_KEY_FAILED);
  /* The sticky rule, key by key, as sample.c computes it. */
  int in = 0, n = 200;
  for (int i = 0; i < n; i++) {
    char key[16];
    snprintf(key, sizeof(key), "u-%d", i);
    shadow_policy_why_t why =
        decide(g, i % 2 ? "GET" : "PUT", "/a", key, &has_key);
    int want = shadow_sampled(key, strlen(key), 0.3);
    CHECK(has_key);
    CHECK(why == (want ? SHADOW_POLICY_MIRROR : SHADOW_POLICY_NOT_SAMPLED));
    in += want;
  }
  CHECK(in > 30 && in < 90);
  /* No key: a random draw, no key reported. */
  decide(g, "GET", "/a", NULL, &has_key);
  CHECK(!has_key);
  CHECK(strcmp(shadow_policy_why_name(SHADOW_POLICY_METHOD),
               "not in mirror_methods") == 0);
  shadow_gen_unref(g);

  /* Without a candidate, or at rate 0, nothing is mirrored whatever the
   * method; the pre-check says so before any hook runs. */
  g = load("none.lua", "return { primary = 'http://127.0.0.1:1',\n"
                       "  sample = { rate = 1 } }\n");
  CHECK(g && decide(g, "GET", "/", "u", NULL) == SHADOW_POLICY_NO_CANDIDATE);
  CHECK(g && !shadow_policy_may_mirror(shadow_gen_config(g), HTTP_GET));
  if (g) shadow_gen_unref(g);
  g = load("zero.lua", "return { primary = 'http://127.0.0.1:1',\n"
                       "  candidate = 'http://127.0.0.1:2' }\n");
  CHECK(g && decide(g, "GET", "/", "u", NULL) == SHADOW_POLICY_NO_CANDIDATE);
  if (g) shadow_gen_unref(g);
}

static void test_routes(void) {
  shadow_gen_t *g =
      load("plain.lua", "return { primary = 'http://127.0.0.1:1',\n"
                        "  candidate = 'http://127.0.0.1:2',\n"
                        "  sample = { rate = 1 } }\n");
  CHECK(g != NULL);
  if (!g) return;
  route_is(g, "GET", "/users/42", "GET /users/:id");
  route_is(g, "GET", "/users/42/posts/7?x=1", "GET /users/:id/posts/:id");
  route_is(g, "POST", "/v2/a1/123/", "POST /v2/a1/:id/");
  route_is(g, "GET", "/", "GET /");
  route_is(g, "GET", "/2026", "GET /:id");
  shadow_gen_unref(g);
  g = load("routed.lua",
           "return { primary = 'http://127.0.0.1:1',\n"
           "  route = function(req)\n"
           "    if req.path == '/boom' then error('no route') end\n"
           "    return 'r:' .. req.method end }\n");
  CHECK(g != NULL);
  if (!g) return;
  route_is(g, "GET", "/users/42", "r:GET");
  route_is(g, "GET", "/boom", "unknown"); /* the hook's fallback */
  shadow_gen_unref(g);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  test_methods_filter_key();
  test_routes();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_policy");
}
