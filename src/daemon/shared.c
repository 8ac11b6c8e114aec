/* What the worker loops share (see shared.h): counters, ring log, sink and
 * breaker, created from the first config and updated on each reload. */
#include "shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "script.h"

/* Opens path for appending unless it is already the sink. */
static int open_sink(shadow_shared_t *sh, const char *path, char **err) {
  if ((!path && !sh->sink_path) ||
      (path && sh->sink_path && strcmp(path, sh->sink_path) == 0))
    return 0;
  FILE *f = NULL;
  char *copy = NULL;
  if (path) {
    f = fopen(path, "a");
    copy = strdup(path);
    if (!f || !copy) {
      int e = errno;
      shadow_buf_t b = SHADOW_BUF_INIT;
      shadow_buf_printf(&b, "cannot open log.file %s: %s", path, strerror(e));
      *err = shadow_buf_steal(&b, NULL);
      if (f) fclose(f);
      free(copy);
      return -1;
    }
    /* Records are flushed every second and at exit: a full buffer between
     * those is written in one go. */
    setvbuf(f, NULL, _IOFBF, 1 << 16);
  }
  if (sh->sink) fclose(sh->sink);
  free(sh->sink_path);
  sh->sink = f;
  sh->sink_path = copy;
  return 0;
}

/* Every rule of cfg gets its hit counter now, at 0, so /metrics lists a
 * rule that never fires. Counters of rules a reload dropped stay. */
static void add_rules(shadow_shared_t *sh, const shadow_config_t *cfg) {
  size_t len = 0, n = 0;
  const char *names = shadow_diff_opts_rule_names(cfg->diff_opts, &len, &n);
  for (size_t i = 0, at = 0; i < n && at < len; i++) {
    size_t k = strlen(names + at);
    shadow_counters_add(sh->stats->rule_hits, names + at, k, 0);
    at += k + 1;
  }
}

int shadow_shared_init(shadow_shared_t *sh, const shadow_config_t *cfg,
                       size_t loops, char **err) {
  memset(sh, 0, sizeof(*sh));
  sh->threaded = loops > 1;
  uv_mutex_init(&sh->mu);
  sh->stats = shadow_stats_new(shadow_hook_names, SHADOW_HOOK_COUNT);
  sh->ring = shadow_ring_new(cfg->log_capacity);
  if (!sh->stats || !sh->ring ||
      shadow_stats_set_loops(sh->stats, loops ? loops : 1) != 0) {
    *err = strdup("out of memory");
    shadow_shared_release(sh);
    return -1;
  }
  shadow_breaker_init(&sh->breaker, cfg->breaker_failures,
                      cfg->breaker_cooldown_ms);
  add_rules(sh, cfg);
  if (open_sink(sh, cfg->log_file, err)) {
    shadow_shared_release(sh);
    return -1;
  }
  return 0;
}

int shadow_shared_apply(shadow_shared_t *sh, const shadow_config_t *cfg,
                        char **err) {
  shadow_shared_lock(sh);
  int rc = open_sink(sh, cfg->log_file, err);
  if (rc == 0) {
    shadow_ring_set_capacity(sh->ring, cfg->log_capacity);
    shadow_breaker_configure(&sh->breaker, cfg->breaker_failures,
                             cfg->breaker_cooldown_ms);
    add_rules(sh, cfg);
  }
  shadow_shared_unlock(sh);
  return rc;
}

void shadow_shared_flush(shadow_shared_t *sh) {
  shadow_shared_lock(sh);
  if (sh->sink) fflush(sh->sink);
  shadow_shared_unlock(sh);
}

void shadow_shared_release(shadow_shared_t *sh) {
  if (sh->sink) fclose(sh->sink);
  sh->sink = NULL;
  free(sh->sink_path);
  sh->sink_path = NULL;
  shadow_ring_free(sh->ring);
  sh->ring = NULL;
  shadow_stats_free(sh->stats);
  sh->stats = NULL;
  uv_mutex_destroy(&sh->mu);
}
