/* The running daemon: the main loop with the signals, the admin port, the
 * file watch and reloads, and either one dispatcher on this loop or N
 * worker loops (--workers). */
#include "daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin.h"
#include "admin_guard.h"
#include "caches.h"
#include "clock.h"
#include "config_changes.h"
#include "dispatcher.h"
#include "log.h"
#include "shared.h"
#include "stop_signal.h"
#include "store.h"
#include "watch.h"
#include "workers.h"

typedef struct app_s {
  uv_loop_t *loop;
  shadow_daemon_opts_t opts;
  shadow_shared_t sh;
  /* The generation of the running config, as the main thread sees it:
   * the admin reads its settings and the watch its files. With one loop
   * the dispatcher runs its hooks in this same state; worker loops each
   * have a state of their own, loaded from the same files. */
  shadow_gen_t *gen;
  shadow_dispatcher_t *dispatcher; /* one loop */
  shadow_workers_t *workers;       /* --workers N > 1 */
  shadow_admin_t *admin;
  shadow_store_t *store; /* the fleet store, or NULL */
  uv_signal_t sighup, sigterm, sigint, sigusr1;
  uv_timer_t drain_timer, flush_timer;
  shadow_watch_t *watch;
  unsigned generation; /* 1, then one more for each good reload */
  int stopping;
} app_t;

static void apply_store(app_t *app, const shadow_config_t *cfg);

/* Loads the config with the command line's overrides applied. */
static int load(app_t *app, shadow_gen_t **out, char **err) {
  int rc = shadow_script_load(app->opts.config_path, out, err);
  if (rc == 0 && shadow_gen_override(*out, app->opts.listen_override,
                                     app->opts.admin_override) != 0) {
    shadow_gen_unref(*out);
    *out = NULL;
    *err = strdup("out of memory");
    rc = -ENOMEM;
  }
  return rc;
}

/* One generation per worker: a Lua state belongs to one thread. */
static int load_for_workers(app_t *app, shadow_gen_t **gens, char **err) {
  for (size_t i = 0; i < app->opts.workers; i++) {
    if (load(app, &gens[i], err) != 0) {
      while (i > 0)
        shadow_gen_unref(gens[--i]);
      return -1;
    }
  }
  return 0;
}

/* --- reload ------------------------------------------------------------- */

static void on_sources_changed(void *ud);

/* Watches the running generation's files when its config says watch. */
static void rearm_watch(app_t *app) {
  shadow_watch_stop(app->watch);
  app->watch = NULL;
  if (!shadow_gen_config(app->gen)->watch || app->stopping) return;
  size_t n = shadow_gen_source_count(app->gen);
  const char *paths[64];
  if (n > 64) n = 64;
  for (size_t i = 0; i < n; i++)
    paths[i] = shadow_gen_source(app->gen, i);
  if (shadow_watch_start(app->loop, paths, n, 200, on_sources_changed, app,
                         &app->watch) != 0)
    shadow_log_warn("cannot watch the config files; reload with SIGHUP");
}

static void set_reload(app_t *app, const char *result, const char *error) {
  shadow_shared_lock(&app->sh);
  shadow_stats_set_reload(app->sh.stats, shadow_wall_ms(), result, error);
  app->sh.stats->generation = app->generation;
  shadow_shared_unlock(&app->sh);
}

/* Builds every state the new config needs, checks it, and only then
 * swaps. 0: reloaded; 1: the files are byte-identical, nothing to do; -1:
 * the new script was refused and the running one stays. */
static int reload(void *ud, char **err) {
  app_t *app = ud;
  if (shadow_gen_source_hash_now(app->gen) ==
      shadow_gen_source_hash(app->gen)) {
    set_reload(app, "unchanged", NULL);
    shadow_log_info("reload: %s is unchanged; nothing to do",
                    app->opts.config_path);
    return 1;
  }
  shadow_gen_t *g = NULL;
  shadow_gen_t *gens[SHADOW_MAX_WORKERS];
  char *e = NULL;
  int have_gens = 0;
  int rc = load(app, &g, &e);
  if (rc == 0) {
    const shadow_config_t *now = shadow_gen_config(app->gen);
    const shadow_config_t *next = shadow_gen_config(g);
    if (strcmp(now->admin, next->admin) != 0) {
      e = strdup("admin cannot change on reload; restart shadowd");
      rc = -EINVAL;
    } else if (strcmp(now->listen, next->listen) != 0) {
      e = strdup("listen cannot change on reload; restart shadowd");
      rc = -EINVAL;
    }
  }
  if (rc == 0 && app->workers) {
    rc = load_for_workers(app, gens, &e);
    have_gens = rc == 0;
  }
  if (rc == 0) rc = shadow_shared_apply(&app->sh, shadow_gen_config(g), &e);
  if (rc == 0 && app->dispatcher) {
    shadow_gen_ref(g);
    rc = shadow_dispatcher_reload(app->dispatcher, g, &e);
    if (rc) shadow_gen_unref(g);
  }
  if (rc != 0) {
    if (have_gens)
      for (size_t i = 0; i < app->opts.workers; i++)
        shadow_gen_unref(gens[i]);
    shadow_gen_unref(g);
    set_reload(app, "error", e);
    shadow_log_error("reload failed, the running script stays: %s",
                     e ? e : "?");
    if (err)
      *err = e;
    else
      free(e);
    return -1;
  }
  apply_store(app, shadow_gen_config(g));
  app->generation++;
  if (app->workers) {
    shadow_workers_reload(app->workers, gens, app->generation);
  } else {
    shadow_shared_lock(&app->sh);
    app->sh.stats->loop_generation[0] = app->generation;
    shadow_shared_unlock(&app->sh);
  }
  shadow_buf_t what = SHADOW_BUF_INIT;
  shadow_config_print_describe(shadow_gen_print(app->gen), shadow_gen_print(g),
                               &what);
  shadow_gen_unref(app->gen);
  app->gen = g;
  set_reload(app, "ok", NULL);
  shadow_log_info("reloaded %s: generation %u: %s", app->opts.config_path,
                  app->generation, what.data ? what.data : "");
  shadow_buf_free(&what);
  rearm_watch(app);
  return 0;
}

static void on_sources_changed(void *ud) {
  reload(ud, NULL);
}

/* POST /stats/reset: a new counting window, said in the log so a later
 * reader knows why the counts went back to 0. */
static void reset_stats(void *ud, int forget_noise) {
  app_t *app = ud;
  shadow_shared_lock(&app->sh);
  uint64_t compared = app->sh.stats->compared;
  uint64_t diverged = app->sh.stats->diverged;
  shadow_stats_reset(app->sh.stats, shadow_wall_ms(), forget_noise);
  shadow_shared_unlock(&app->sh);
  shadow_log_info("stats reset: a new counting window begins (the last had "
                  "%llu compared, %llu diverged); learned noise %s",
                  (unsigned long long)compared, (unsigned long long)diverged,
                  forget_noise ? "forgotten" : "kept");
}

/* --- admin -------------------------------------------------------------- */

static shadow_ring_t *admin_ring(void *ud);
static void admin_lock(void *ud);
static void admin_unlock(void *ud);

static shadow_ring_t *admin_ring(void *ud) {
  app_t *app = ud;
  return app->sh.ring;
}

static void admin_settings(void *ud, shadow_admin_settings_t *out) {
  app_t *app = ud;
  const shadow_config_t *cfg = shadow_gen_config(app->gen);
  out->token = cfg->admin_token;
  out->slo_max_rate = cfg->slo_max_rate;
  out->slo_min_samples = cfg->slo_min_samples;
  out->slo_max_latency_ratio = cfg->slo_max_latency_ratio;
  out->noise.confidence = cfg->noise_confidence;
  out->noise.z = cfg->noise_z;
  out->noise.min_samples = cfg->noise_min_samples;
}

static void admin_lock(void *ud) {
  app_t *app = ud;
  shadow_shared_lock(&app->sh);
}

static void admin_unlock(void *ud) {
  app_t *app = ud;
  shadow_shared_unlock(&app->sh);
}

/* --- the fleet store ---------------------------------------------------- */

/* Starts, keeps or replaces the fleet store for cfg: a reload whose store
 * settings did not change keeps the connection and what it has sent. */
static void apply_store(app_t *app, const shadow_config_t *cfg) {
  if (app->store && shadow_store_same(app->store, &cfg->store)) {
    shadow_store_set_log_capacity(app->store, cfg->log_capacity);
    return;
  }
  shadow_store_stop(app->store);
  app->store = NULL;
  if (!cfg->store.url) return;
  shadow_store_owner_t owner = {app->sh.stats, admin_ring, admin_lock,
                                admin_unlock, app};
  char *err = NULL;
  if (shadow_store_start(app->loop, &cfg->store, &owner, &app->store, &err) !=
      0) {
    /* The config reader checked the same settings: only memory or a file
     * gone since can fail here, and the proxy runs on without a store. */
    shadow_log_error("store: %s; running without a fleet store",
                     err ? err : "cannot start");
    free(err);
    app->store = NULL;
    return;
  }
  shadow_store_set_log_capacity(app->store, cfg->log_capacity);
}

/* --- shutdown ----------------------------------------------------------- */

static void stop_now(app_t *app) {
  shadow_watch_stop(app->watch);
  app->watch = NULL;
  uv_timer_stop(&app->drain_timer);
  uv_close((uv_handle_t *)&app->drain_timer, NULL);
  uv_close((uv_handle_t *)&app->flush_timer, NULL);
  uv_close((uv_handle_t *)&app->sighup, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigusr1, NULL);
  /* Closing the last handle gives a signal back its default action, and
   * a second SIGTERM (or a SIGHUP) while the last handles close would
   * then kill us: we are exiting already, so they are ignored. */
  signal(SIGHUP, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  shadow_admin_close(app->admin);
  app->admin = NULL;
  shadow_store_stop(app->store);
  app->store = NULL;
  if (app->dispatcher) shadow_dispatcher_close(app->dispatcher);
  app->dispatcher = NULL;
  /* The workers' threads have ended (see workers_stopped): join them. */
  shadow_workers_free(app->workers);
  app->workers = NULL;
}

static void drained(void *ud) {
  app_t *app = ud;
  shadow_log_info("drained; exiting");
  stop_now(app);
}

static void workers_stopped(void *ud) {
  app_t *app = ud;
  shadow_log_info("every worker has drained; exiting");
  stop_now(app);
}

static void drain_timeout(uv_timer_t *t) {
  app_t *app = t->data;
  shadow_log_warn("drain timeout: %zu requests still in flight are cut",
                  shadow_dispatcher_inflight(app->dispatcher));
  stop_now(app);
}

static void on_signal(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  if (signum == SIGHUP) {
    if (!app->stopping) reload(app, NULL);
    return;
  }
  if (signum == SIGUSR1) {
    /* After logrotate moved log.file away: write to a new one. */
    shadow_shared_reopen(&app->sh);
    return;
  }
  if (app->stopping) return;
  app->stopping = 1;
  shadow_watch_stop(app->watch);
  app->watch = NULL;
  uint64_t ms = shadow_gen_config(app->gen)->drain_timeout_ms;
  shadow_log_info("signal %d: draining (at most %llu ms)", signum,
                  (unsigned long long)ms);
  if (app->workers) {
    /* Each worker bounds its own drain by the same timeout. */
    shadow_workers_drain(app->workers, ms);
  } else {
    /* A hook may have held this loop since the signal came: the drain
     * counts from the signal. */
    uint64_t late = shadow_script_stop_age_ms();
    ms = ms > late ? ms - late : 0;
    uv_timer_start(&app->drain_timer, drain_timeout, ms, 0);
    shadow_dispatcher_drain(app->dispatcher, drained, app);
  }
}

static void flush_cb(uv_timer_t *t) {
  app_t *app = t->data;
  shadow_shared_flush(&app->sh);
}

/* --- run ---------------------------------------------------------------- */

static int start_serving(app_t *app, shadow_gen_t *g, char **err) {
  if (app->opts.workers <= 1) {
    shadow_gen_ref(g);
    int rc =
        shadow_dispatcher_new(app->loop, g, &app->sh, &app->dispatcher, err);
    if (rc) shadow_gen_unref(g);
    return rc;
  }
  shadow_gen_t *gens[SHADOW_MAX_WORKERS];
  if (load_for_workers(app, gens, err) != 0) return -1;
  return shadow_workers_start(app->loop, app->opts.workers, gens, &app->sh,
                              workers_stopped, app, &app->workers, err);
}

int shadow_daemon_run(const shadow_daemon_opts_t *opts, shadow_gen_t *g) {
  app_t app_store;
  app_t *app = &app_store;
  memset(app, 0, sizeof(*app));
  app->opts = *opts;
  app->gen = g;
  uv_loop_t loop;
  uv_loop_init(&loop);
  app->loop = &loop;
  char *err = NULL;
  const shadow_config_t *cfg = shadow_gen_config(g);
  int rc = shadow_shared_init(&app->sh, cfg,
                              opts->workers > 1 ? opts->workers : 1, &err);
  app->generation = 1;
  if (rc == 0) app->sh.stats->generation = 1;
  if (rc == 0) rc = start_serving(app, g, &err);
  if (rc == 0) {
    shadow_admin_ctx_t ctx = {.stats = app->sh.stats,
                              .ring = admin_ring,
                              .settings = admin_settings,
                              .reload = reload,
                              .reset = reset_stats,
                              .lock = admin_lock,
                              .unlock = admin_unlock,
                              .ud = app};
    rc = shadow_admin_listen(&loop, cfg->admin, &ctx, &app->admin, &err);
    if (rc) {
      char *why = err;
      err = NULL;
      shadow_buf_t b = SHADOW_BUF_INIT;
      shadow_buf_printf(&b, "admin: %s", why ? why : "cannot listen");
      free(why);
      err = shadow_buf_steal(&b, NULL);
    }
  }
  if (rc) {
    fprintf(stderr, "shadowd: %s\n", err ? err : strerror(-rc));
    free(err);
    if (app->dispatcher) shadow_dispatcher_close(app->dispatcher);
    if (app->workers) {
      shadow_workers_drain(app->workers, 0);
      shadow_workers_free(app->workers);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (app->sh.stats) shadow_shared_release(&app->sh);
    shadow_gen_unref(g);
    return 1;
  }
  uv_signal_init(&loop, &app->sighup);
  uv_signal_init(&loop, &app->sigterm);
  uv_signal_init(&loop, &app->sigint);
  uv_signal_init(&loop, &app->sigusr1);
  uv_timer_init(&loop, &app->drain_timer);
  uv_timer_init(&loop, &app->flush_timer);
  app->sighup.data = app->sigterm.data = app->sigint.data = app;
  app->sigusr1.data = app;
  app->drain_timer.data = app->flush_timer.data = app;
  uv_signal_start(&app->sighup, on_signal, SIGHUP);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);
  uv_signal_start(&app->sigint, on_signal, SIGINT);
  uv_signal_start(&app->sigusr1, on_signal, SIGUSR1);
  if (shadow_stop_signal_install() != 0)
    shadow_log_warn("cannot watch SIGTERM for hooks: a hook that runs away "
                    "delays a stop by up to limits.hook_timeout_ms");
  uv_timer_start(&app->flush_timer, flush_cb, 1000, 1000);
  apply_store(app, cfg);
  rearm_watch(app);
  shadow_log_info(
      "shadowd %s listening on %s (%zu loop%s), admin on %s; "
      "primary %s, candidate %s at rate %g",
      SHADOW_VERSION, cfg->listen, opts->workers > 1 ? opts->workers : 1,
      opts->workers > 1 ? "s" : "", cfg->admin,
      cfg->primary.kind == SHADOW_BACKEND_LUA ? "lua" : cfg->primary.url,
      cfg->candidate.kind == SHADOW_BACKEND_LUA ? "lua"
      : cfg->candidate.url                      ? cfg->candidate.url
                                                : "none",
      cfg->rate);
  if (!cfg->admin_token && !shadow_admin_addr_loopback(cfg->admin))
    shadow_log_warn("admin on %s listens beyond loopback without "
                    "admin_token: whoever reaches it reads the divergences "
                    "and can reload",
                    cfg->admin);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    shadow_log_warn("loop closed with handles still open");
  shadow_shared_release(&app->sh);
  shadow_gen_unref(app->gen);
  shadow_engine_caches_clear();
  return 0;
}
