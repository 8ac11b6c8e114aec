/* What the worker loops share (see shared.h): counters, ring log,
 * signatures, sink and breaker, created from the first config and updated
 * on each reload. */
#include "shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "script.h"

/* Starts a writer for path unless it is *slot's already, whose rotation
 * settings are then updated. A file that cannot be opened is no error
 * here: the writer counts it and tries again (sink.h). The sink replaced
 * goes to *old, for the caller to close once it has let go of the lock
 * (closing writes what it still holds). what names the setting. */
static int open_one(shadow_sink_t **slot, const shadow_sink_opts_t *o,
                    const char *what, shadow_sink_t **old, char **err) {
  *old = NULL;
  const char *path = o->path;
  if (path && *slot && strcmp(path, shadow_sink_path(*slot)) == 0) {
    shadow_sink_configure(*slot, o->max_bytes, o->keep);
    return 0;
  }
  shadow_sink_t *s = NULL;
  if (path) {
    int rc = shadow_sink_new(o, &s);
    if (rc) {
      shadow_buf_t b = SHADOW_BUF_INIT;
      shadow_buf_printf(&b, "cannot start the %s writer for %s: %s", what, path,
                        rc == -ENOMEM ? "out of memory" : uv_strerror(rc));
      *err = shadow_buf_steal(&b, NULL);
      return -1;
    }
  }
  *old = *slot;
  *slot = s;
  return 0;
}

static int open_sink(shadow_shared_t *sh, const shadow_config_t *cfg,
                     shadow_sink_t **old, char **err) {
  shadow_sink_opts_t o = {
      .path = cfg->log_file,
      .max_bytes = cfg->log_max_bytes,
      .keep = cfg->log_keep,
  };
  int rc = open_one(&sh->sink, &o, "log.file", old, err);
  sh->stats->sink = sh->sink;
  return rc;
}

/* The capture sink's queue holds a few of the largest lines a capture
 * can write (two bodies of body_bytes, base64 at worst), so one large
 * exchange is never dropped for its size alone. */
static int open_capture(shadow_shared_t *sh, const shadow_config_t *cfg,
                        shadow_sink_t **old, char **err) {
  size_t line = cfg->capture.body_bytes / 3 * 8 + (64u << 10);
  shadow_sink_opts_t o = {
      .path = cfg->capture.file,
      .max_bytes = cfg->capture.max_bytes,
      .keep = cfg->capture.keep,
      .queue_bytes = line * 4 > SHADOW_SINK_QUEUE_BYTES
                         ? line * 4
                         : SHADOW_SINK_QUEUE_BYTES,
  };
  int rc = open_one(&sh->capture, &o, "capture.file", old, err);
  sh->stats->capture_sink = sh->capture;
  return rc;
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
  sh->signatures =
      shadow_signatures_new(SHADOW_SIGNATURES_MAX, SHADOW_SIGNATURES_BYTES);
  if (!sh->stats || !sh->ring || !sh->signatures ||
      shadow_stats_set_loops(sh->stats, loops ? loops : 1) != 0) {
    *err = strdup("out of memory");
    shadow_shared_release(sh);
    return -1;
  }
  sh->stats->signatures = sh->signatures;
  sh->stats->window_start_ms = shadow_wall_ms();
  for (int g = 0; g < SHADOW_GATES; g++)
    shadow_breaker_init(&sh->gates[g].breaker, cfg->breaker_failures,
                        cfg->breaker_cooldown_ms);
  add_rules(sh, cfg);
  shadow_sink_t *none;
  if (open_sink(sh, cfg, &none, err) || open_capture(sh, cfg, &none, err)) {
    shadow_shared_release(sh);
    return -1;
  }
  return 0;
}

int shadow_shared_apply(shadow_shared_t *sh, const shadow_config_t *cfg,
                        char **err) {
  shadow_sink_t *old = NULL, *old_capture = NULL;
  shadow_shared_lock(sh);
  int rc = open_sink(sh, cfg, &old, err);
  if (rc == 0) rc = open_capture(sh, cfg, &old_capture, err);
  if (rc == 0) {
    shadow_ring_set_capacity(sh->ring, cfg->log_capacity);
    for (int g = 0; g < SHADOW_GATES; g++)
      shadow_breaker_configure(&sh->gates[g].breaker, cfg->breaker_failures,
                               cfg->breaker_cooldown_ms);
    add_rules(sh, cfg);
  }
  shadow_shared_unlock(sh);
  shadow_sink_close(old);
  shadow_sink_close(old_capture);
  return rc;
}

void shadow_shared_flush(shadow_shared_t *sh) {
  shadow_shared_lock(sh);
  if (sh->sink) shadow_sink_flush(sh->sink);
  if (sh->capture) shadow_sink_flush(sh->capture);
  shadow_shared_unlock(sh);
}

void shadow_shared_reopen(shadow_shared_t *sh) {
  shadow_shared_lock(sh);
  if (sh->sink) {
    shadow_sink_reopen(sh->sink);
    shadow_log_info("reopening %s", shadow_sink_path(sh->sink));
  }
  if (sh->capture) {
    shadow_sink_reopen(sh->capture);
    shadow_log_info("reopening %s", shadow_sink_path(sh->capture));
  }
  shadow_shared_unlock(sh);
}

void shadow_shared_release(shadow_shared_t *sh) {
  shadow_sink_close(sh->sink);
  sh->sink = NULL;
  shadow_sink_close(sh->capture);
  sh->capture = NULL;
  shadow_signatures_free(sh->signatures);
  sh->signatures = NULL;
  shadow_ring_free(sh->ring);
  sh->ring = NULL;
  shadow_stats_free(sh->stats);
  sh->stats = NULL;
  uv_mutex_destroy(&sh->mu);
}
