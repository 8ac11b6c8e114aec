/* The backend registry across reloads: a generation whose backend has the
 * same URL and options shares the pool (its warm connections survive the
 * reload); another URL or another option is another pool; a pool no
 * generation uses any more is closed by a sweep; function backends have no
 * pool. The candidate's pool keeps at least max_inflight_shadow idle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backends.h"
#include "check.h"
#include "script.h"

static char dir[] = "/tmp/test_backends.XXXXXX";

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

static shadow_epoch_t *epoch(shadow_backends_t *r, shadow_gen_t *g) {
  shadow_epoch_t *e = NULL;
  char *err = NULL;
  CHECK(g && shadow_epoch_new(r, g, &e, &err) == 0);
  free(err);
  if (g) shadow_gen_unref(g); /* the epoch holds its own reference */
  return e;
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  uv_loop_t loop;
  uv_loop_init(&loop);
  shadow_backends_t *r = shadow_backends_new(&loop);

  const char *base = "local shadow = require 'shadow'\n"
                     "return { primary = shadow.http('http://127.0.0.1:7001'),"
                     " candidate = shadow.http('http://127.0.0.1:7002'%s) }\n";
  char text[512];
  snprintf(text, sizeof(text), base, "");
  shadow_epoch_t *e1 = epoch(r, load("one.lua", text));
  CHECK(shadow_backends_count(r) == 2);
  CHECK(e1 && e1->primary && e1->candidate);

  /* A reload with the same backends: the same pools. */
  shadow_epoch_t *e2 = epoch(r, load("same.lua", text));
  CHECK(shadow_backends_count(r) == 2);
  CHECK(shadow_backend_upstream(e2->primary) ==
        shadow_backend_upstream(e1->primary));
  CHECK(shadow_backend_upstream(e2->candidate) ==
        shadow_backend_upstream(e1->candidate));

  /* Another option on the candidate: a new pool for it only. */
  snprintf(text, sizeof(text), base, ", { timeout_ms = 250 }");
  shadow_epoch_t *e3 = epoch(r, load("timeout.lua", text));
  CHECK(shadow_backends_count(r) == 3);
  CHECK(shadow_backend_upstream(e3->primary) ==
        shadow_backend_upstream(e1->primary));
  CHECK(shadow_backend_upstream(e3->candidate) !=
        shadow_backend_upstream(e1->candidate));

  /* The old generations end: their candidate pool is unused, and a sweep
   * closes it; the shared primary pool stays. */
  shadow_epoch_unref(r, e1);
  CHECK(!shadow_backends_unused(r)); /* e2 still uses both */
  shadow_epoch_unref(r, e2);
  CHECK(shadow_backends_unused(r));
  shadow_backends_sweep(r);
  CHECK(shadow_backends_count(r) == 2);
  CHECK(!shadow_backends_unused(r));

  /* Function backends have no pool. */
  shadow_epoch_t *e4 =
      epoch(r, load("lua.lua", "return { primary = function(req) return "
                               "{ status = 200 } end }\n"));
  CHECK(e4 && !e4->primary && !e4->candidate);
  CHECK(shadow_backends_count(r) == 2);

  shadow_epoch_unref(r, e3);
  shadow_epoch_unref(r, e4);
  shadow_backends_sweep(r);
  CHECK(shadow_backends_count(r) == 0);
  shadow_backends_free(r);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_backends");
}
