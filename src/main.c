/* shadowd: argv, signals, and the uv loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin.h"
#include "check_request.h"
#include "json.h"
#include "log.h"
#include "offline_diff.h"
#include "script.h"
#include "shadow.h"
#include "stats.h"
#include "watch.h"

typedef struct app_s {
  uv_loop_t *loop;
  const char *config_path;
  const char *listen_override, *admin_override;
  shadow_stats_t *stats;
  shadow_dispatcher_t *dispatcher;
  shadow_admin_t *admin;
  uv_signal_t sighup, sigterm, sigint;
  uv_timer_t drain_timer;
  shadow_watch_t *watch;
  int stopping;
} app_t;

static void usage(FILE *f) {
  fprintf(f,
    "usage: shadowd [--config FILE] [--listen ADDR:PORT] [--admin ADDR:PORT]\n"
    "               [--check [--request 'GET /p' [--header 'n: v']...]]\n"
    "               [--version] [--help]\n"
    "       shadowd diff [--config FILE] PRIMARY_FILE CANDIDATE_FILE\n"
    "\n"
    "Serves every request from the primary, mirrors a sampled share to the\n"
    "candidate, and compares the two responses.\n"
    "\n"
    "  --config FILE   the Lua config script (default ./shadow.lua)\n"
    "  --listen ADDR   override the config's listen address\n"
    "  --admin ADDR    override the config's admin address\n"
    "  --check         load and validate the config, print it, exit\n"
    "  --request 'GET /path' [--header 'name: value' ...]\n"
    "                  with --check: what the hooks decide for this request\n"
    "  --version       print the version\n"
    "  --help          this text\n"
    "\n"
    "diff compares two recorded responses (or two JSON bodies) under the\n"
    "config's ignore, arrays, tolerance and normalize rules, prints the\n"
    "divergence JSON, and exits 0 when they agree, 1 when they differ, 2 on\n"
    "error.\n"
    "\n"
    "Signals: SIGHUP reloads the scripts; SIGTERM or SIGINT drains and exits.\n");
}

static const char *backend_desc(const shadow_backend_cfg_t *b, char *buf,
                                size_t n) {
  if (b->kind == SHADOW_BACKEND_HTTP)
    snprintf(buf, n, "%s (timeout %llu ms)", b->url,
             (unsigned long long)b->timeout_ms);
  else if (b->kind == SHADOW_BACKEND_LUA)
    snprintf(buf, n, "an in-process Lua function");
  else
    snprintf(buf, n, "none");
  return buf;
}

static void print_check(const char *path, shadow_gen_t *g) {
  const shadow_config_t *c = shadow_gen_config(g);
  char b[512];
  printf("config %s is valid\n", path);
  printf("  listen     %s\n  admin      %s%s\n", c->listen, c->admin,
         c->admin_token ? " (bearer token required)" : "");
  printf("  primary    %s\n", backend_desc(&c->primary, b, sizeof(b)));
  printf("  candidate  %s\n", backend_desc(&c->candidate, b, sizeof(b)));
  printf("  sample     rate %g, key %s, filter %s\n", c->rate,
         shadow_gen_has_hook(g, SHADOW_HOOK_KEY) ? "hook" : "none (random)",
         shadow_gen_has_hook(g, SHADOW_HOOK_FILTER) ? "hook" : "none");
  printf("  hooks     ");
  int any = 0;
  for (int h = SHADOW_HOOK_ROUTE; h <= SHADOW_HOOK_ON_DIVERGENCE; h++)
    if (shadow_gen_has_hook(g, h)) {
      printf(" %s", shadow_hook_name(h));
      any = 1;
    }
  printf("%s\n", any ? "" : " none");
  printf("  log        %zu records in memory%s%s\n", c->log_capacity,
         c->log_file ? ", appended to " : "", c->log_file ? c->log_file : "");
  printf("  breaker    opens after %d failures for %llu ms\n",
         c->breaker_failures, (unsigned long long)c->breaker_cooldown_ms);
  printf("  shadow legs at most %zu in flight\n", c->max_inflight_shadow);
}

/* --- reload and shutdown ------------------------------------------------ */

static void on_sources_changed(void *ud);

/* Watches the running generation's files when its config says watch. */
static void rearm_watch(app_t *app) {
  shadow_watch_stop(app->watch);
  app->watch = NULL;
  shadow_gen_t *g = shadow_dispatcher_gen(app->dispatcher);
  if (!shadow_gen_config(g)->watch || app->stopping) return;
  size_t n = shadow_gen_source_count(g);
  const char *paths[64];
  if (n > 64) n = 64;
  for (size_t i = 0; i < n; i++) paths[i] = shadow_gen_source(g, i);
  if (shadow_watch_start(app->loop, paths, n, 200, on_sources_changed, app,
                         &app->watch) != 0)
    shadow_log_warn("cannot watch the config files; reload with SIGHUP");
}

/* 0: reloaded; 1: the sources are byte-identical, nothing to do; -1: the
 * new script was refused and the running one stays. */
static int reload(void *ud, char **err) {
  app_t *app = ud;
  shadow_gen_t *cur = shadow_dispatcher_gen(app->dispatcher);
  if (shadow_gen_source_hash_now(cur) == shadow_gen_source_hash(cur)) {
    shadow_stats_set_reload(app->stats, shadow_now_ms(), "unchanged", NULL);
    shadow_log_info("reload: %s is unchanged; nothing to do",
                    app->config_path);
    return 1;
  }
  shadow_gen_t *g = NULL;
  char *e = NULL;
  int rc = shadow_script_load(app->config_path, &g, &e);
  if (rc == 0)
    rc = shadow_gen_override(g, app->listen_override, app->admin_override);
  if (rc == 0) {
    const shadow_config_t *now = shadow_gen_config(
        shadow_dispatcher_gen(app->dispatcher));
    if (strcmp(now->admin, shadow_gen_config(g)->admin) != 0) {
      e = strdup("admin cannot change on reload; restart shadowd");
      rc = -EINVAL;
    }
  }
  if (rc == 0) rc = shadow_dispatcher_reload(app->dispatcher, g, &e);
  if (rc != 0 && g) shadow_gen_unref(g);
  shadow_stats_set_reload(app->stats, shadow_now_ms(), rc ? "error" : "ok",
                          rc ? e : NULL);
  if (rc) {
    shadow_log_error("reload failed, the running script stays: %s",
                     e ? e : "?");
    if (err) *err = e;
    else free(e);
    return -1;
  }
  shadow_log_info("reloaded %s: generation %u", app->config_path,
                  app->stats->generation);
  rearm_watch(app);
  return 0;
}

static void on_sources_changed(void *ud) {
  reload(ud, NULL);
}

static shadow_ring_t *admin_ring(void *ud) {
  app_t *app = ud;
  return shadow_dispatcher_ring(app->dispatcher);
}

static const shadow_config_t *admin_config(void *ud) {
  app_t *app = ud;
  return shadow_gen_config(shadow_dispatcher_gen(app->dispatcher));
}

static void stop_now(app_t *app) {
  shadow_watch_stop(app->watch);
  app->watch = NULL;
  uv_timer_stop(&app->drain_timer);
  uv_close((uv_handle_t *)&app->drain_timer, NULL);
  uv_close((uv_handle_t *)&app->sighup, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  shadow_admin_close(app->admin);
  app->admin = NULL;
  shadow_dispatcher_close(app->dispatcher);
  app->dispatcher = NULL;
}

static void drained(void *ud) {
  app_t *app = ud;
  shadow_log_info("drained; exiting");
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
  if (app->stopping) return;
  app->stopping = 1;
  const shadow_config_t *c = admin_config(app);
  shadow_log_info("signal %d: draining (at most %llu ms)", signum,
                  (unsigned long long)c->drain_timeout_ms);
  uv_timer_start(&app->drain_timer, drain_timeout, c->drain_timeout_ms, 0);
  shadow_dispatcher_drain(app->dispatcher, drained, app);
}

/* --- entry -------------------------------------------------------------- */

static int run(app_t *app, shadow_gen_t *g) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  app->loop = &loop;
  app->stats = shadow_stats_new();
  char *err = NULL;
  const shadow_config_t *cfg = shadow_gen_config(g);
  char *admin_addr = strdup(cfg->admin);
  int rc = app->stats ? shadow_dispatcher_new(&loop, g, app->stats,
                                              &app->dispatcher, &err)
                      : -ENOMEM;
  if (rc) {
    shadow_gen_unref(g);
    fprintf(stderr, "shadowd: %s\n", err ? err : strerror(-rc));
    free(err);
    free(admin_addr);
    shadow_stats_free(app->stats);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 1;
  }
  shadow_admin_ctx_t ctx = {app->stats, admin_ring, admin_config, reload,
                            app};
  rc = shadow_admin_listen(&loop, admin_addr, &ctx, &app->admin, &err);
  if (rc) {
    fprintf(stderr, "shadowd: admin: %s\n", err ? err : strerror(-rc));
    free(err);
    free(admin_addr);
    shadow_dispatcher_close(app->dispatcher);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    shadow_stats_free(app->stats);
    return 1;
  }
  uv_signal_init(&loop, &app->sighup);
  uv_signal_init(&loop, &app->sigterm);
  uv_signal_init(&loop, &app->sigint);
  uv_timer_init(&loop, &app->drain_timer);
  app->sighup.data = app->sigterm.data = app->sigint.data = app;
  app->drain_timer.data = app;
  uv_signal_start(&app->sighup, on_signal, SIGHUP);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);
  uv_signal_start(&app->sigint, on_signal, SIGINT);

  rearm_watch(app);
  cfg = admin_config(app);
  shadow_log_info("shadowd %s listening on %s, admin on %s; primary %s, "
                  "candidate %s at rate %g", SHADOW_VERSION, cfg->listen,
                  admin_addr,
                  cfg->primary.kind == SHADOW_BACKEND_LUA ? "lua"
                                                          : cfg->primary.url,
                  cfg->candidate.kind == SHADOW_BACKEND_LUA ? "lua"
                  : cfg->candidate.url ? cfg->candidate.url : "none",
                  cfg->rate);
  free(admin_addr);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (rc) shadow_log_warn("loop closed with handles still open");
  shadow_stats_free(app->stats);
  shadow_json_arena_cache_clear();
  return 0;
}

int main(int argc, char **argv) {
  app_t app;
  memset(&app, 0, sizeof(app));
  app.config_path = "shadow.lua";
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (argc > 1 && strcmp(argv[1], "diff") == 0) {
    int code = shadow_offline_diff_main(argc - 1, argv + 1);
    shadow_json_arena_cache_clear();
    return code;
  }

  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"listen", required_argument, NULL, 'l'},
      {"admin", required_argument, NULL, 'a'},
      {"check", no_argument, NULL, 'k'},
      {"request", required_argument, NULL, 'r'},
      {"header", required_argument, NULL, 'H'},
      {"version", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int check = 0, c;
  const char *request = NULL;
  const char *headers[64];
  size_t nheaders = 0;
  while ((c = getopt_long(argc, argv, "c:l:a:kvhr:H:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': app.config_path = optarg; break;
    case 'l': app.listen_override = optarg; break;
    case 'a': app.admin_override = optarg; break;
    case 'k': check = 1; break;
    case 'r': request = optarg; break;
    case 'H':
      if (nheaders == 64) {
        fprintf(stderr, "shadowd: at most 64 --header options\n");
        return 2;
      }
      headers[nheaders++] = optarg;
      break;
    case 'v': printf("shadowd %s\n", SHADOW_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if ((request || nheaders) && !check) {
    fprintf(stderr, "shadowd: --request and --header go with --check\n");
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "shadowd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  shadow_gen_t *g = NULL;
  char *err = NULL;
  if (shadow_script_load(app.config_path, &g, &err) != 0 ||
      shadow_gen_override(g, app.listen_override, app.admin_override) != 0) {
    fprintf(stderr, "shadowd: %s\n", err ? err : "out of memory");
    free(err);
    shadow_gen_unref(g);
    return 1;
  }
  if (check) {
    print_check(app.config_path, g);
    int rc = request ? shadow_check_request(g, request, headers, nheaders,
                                            stdout)
                     : 0;
    shadow_gen_unref(g);
    return rc ? 2 : 0;
  }
  return run(&app, g);
}
