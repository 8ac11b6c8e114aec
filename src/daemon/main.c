/* shadowd: the command line. The running daemon is daemon.c. */
#include <errno.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin_guard.h"
#include "caches.h"
#include "check_gateway.h"
#include "check_request.h"
#include "check_response.h"
#include "daemon.h"
#include "export.h"
#include "json.h"
#include "offline_diff.h"
#include "replay.h"
#include "script.h"

static void usage(FILE *f) {
  fputs(
      "usage: shadowd [--config FILE] [--listen ADDR:PORT] [--admin "
      "ADDR:PORT]\n"
      "               [--workers N]\n"
      "               [--check [--request 'GET /p' [--header 'n: v']...]]\n"
      "               [--check --response FILE [--side primary|candidate]]\n"
      "               [--version] [--help]\n"
      "       shadowd diff [--config FILE] [--explain] PRIMARY_FILE "
      "CANDIDATE_FILE\n"
      "       shadowd diff [--config FILE] [--explain] DIR\n"
      "                    [--descriptors FILE.pb --message pkg.Type]\n"
      "       shadowd replay [--config FILE] [--candidate URL] [--primary "
      "URL]\n"
      "                      [--rate R] [--concurrency N] [--out FILE]\n"
      "                      [--summary FILE] [--junit FILE [--junit-per "
      "route|exchange]]\n"
      "                      [--fixtures DIR] [--record FILE] [--quiet]\n"
      "                      [--max-line-bytes N] CAPTURE_FILE...\n"
      "       shadowd export --har [--out FILE] [--max-line-bytes N] "
      "CAPTURE_FILE...\n"
      "       shadowd export --fixtures DIR DIVERGENCES_FILE...\n"
      "       shadowd check-gateway [--nginx-conf NGINX_CONF] CONF_LUA\n"
      "\n"
      "Serves every request from the primary, mirrors a sampled share to the\n"
      "candidate, and compares the two responses.\n"
      "\n"
      "  --config FILE   the Lua config script (default ./shadow.lua)\n"
      "  --listen ADDR   override the config's listen address\n"
      "  --admin ADDR    override the config's admin address\n"
      "  --workers N     N event-loop threads sharing the listen address\n"
      "                  (SO_REUSEPORT); counters and the log are shared\n"
      "  --check         load and validate the config, print it, exit\n"
      "  --request 'GET /path' [--header 'name: value' ...]\n"
      "                  with --check: what the hooks decide for this request\n"
      "  --response FILE [--side primary|candidate]\n"
      "                  with --check: run normalize on a recorded response\n"
      "                  (as shadowd diff reads it) and print it before and\n"
      "                  after\n"
      "  --version       print the version\n"
      "  --help          this text\n"
      "\n"
      "diff compares two recorded responses (or two JSON bodies) under the\n"
      "config's rules (normalize, ignore.headers, ignore.json, arrays,\n"
      "tolerance, rename, coerce, mask, time), prints the divergence JSON,\n"
      "and exits 0 when they agree, 1 when they differ, 2 on error.\n"
      "  --explain       print instead each reported difference with the\n"
      "                  rules tried at its path, and each difference a rule\n"
      "                  absorbed, with the rule (normalize and\n"
      "                  ignore.headers included)\n"
      "  DIR             compare every pair DIR/NAME.primary and\n"
      "                  DIR/NAME.candidate against DIR/NAME.expect "
      "(\"same\",\n"
      "                  the default, or \"differ\" and the fields that must\n"
      "                  differ, one a line); print a table and how often\n"
      "                  each rule fired; exit 0 when every pair came out as\n"
      "                  expected, 1 when one did not, 2 when one could not\n"
      "                  be read\n"
      "\n"
      "replay sends the requests of capture files (capture = { file = ... })\n"
      "to a candidate and compares its answers with the recorded ones under\n"
      "the same rules; it writes the divergence records (stdout, or --out),\n"
      "a summary per route with the verdict (stderr), and exits 0 when the\n"
      "verdict is promote or nothing diverged, 1 when something diverged or\n"
      "failed, 2 on error or when nothing was compared (then no verdict).\n"
      "  --candidate URL the candidate (default: the config's)\n"
      "  --primary URL   also send each request to a live primary; the\n"
      "                  recording then tells noise from divergences\n"
      "  --rate R        replay a share R (0 to 1) of the exchanges, by key\n"
      "  --concurrency N exchanges in flight (1 to 4096, default 8)\n"
      "  --summary FILE  the summary as JSON\n"
      "  --junit FILE    JUnit XML for CI: one test case per route, a\n"
      "                  failure naming each failing exchange's file:line\n"
      "                  and fields\n"
      "  --junit-per exchange  one test case per exchange instead\n"
      "  --fixtures DIR  each divergence as a pair of files for diff\n"
      "  --record FILE   with --primary: the live answers as a new capture\n"
      "  --quiet         no progress line\n"
      "export writes a capture as HAR 1.2 (--har), or divergences as pairs\n"
      "of files for diff (--fixtures DIR).\n"
      "replay and export read capture lines up to --max-line-bytes (N, NK, NM\n"
      "or NG; default 64M, or with --config the longest line that config's\n"
      "capture writes); a longer line is read past without being held,\n"
      "reported as file:line and counted as skipped.\n"
      "\n"
      "check-gateway validates a shadow.gateway conf outside nginx: CONF_LUA\n"
      "returns the table for require(\"shadow.gateway\").new(conf) "
      "(nginx.conf\n"
      "can pass it dofile(\"CONF_LUA\")); it is checked by the code new() "
      "runs\n"
      "and exits 0 with a summary, or 1 with new()'s message. --nginx-conf\n"
      "checks shared_dict against that file's lua_shared_dict lines.\n"
      "\n"
      "Signals: SIGHUP reloads the scripts; SIGTERM or SIGINT drains and "
      "exits.\n",
      f);
}

/* shadow: a candidate or secondary, whose legs have a total deadline. */
static const char *backend_desc(const shadow_backend_cfg_t *b, int shadow,
                                char *buf, size_t n) {
  const shadow_upstream_opts_t *o = &b->opts;
  char resolve[64] = "";
  if (b->kind == SHADOW_BACKEND_HTTP && shadow_upstream_url_has_name(b->url)) {
    if (o->resolve_ms)
      snprintf(resolve, sizeof(resolve), ", resolved every %llu ms",
               (unsigned long long)o->resolve_ms);
    else
      snprintf(resolve, sizeof(resolve), ", resolved at load only");
  }
  char total[48] = "";
  if (shadow)
    snprintf(total, sizeof(total), ", total %llu ms",
             (unsigned long long)b->total_timeout_ms);
  if (b->kind == SHADOW_BACKEND_HTTP)
    snprintf(buf, n,
             "%s (connect %llu ms, head %llu ms after the request, between "
             "reads/writes %llu ms%s%s%s%s)",
             b->url, (unsigned long long)o->connect_timeout_ms,
             (unsigned long long)o->timeout_ms,
             (unsigned long long)o->read_timeout_ms, total,
             b->host ? ", Host " : "", b->host ? b->host : "", resolve);
  else if (b->kind == SHADOW_BACKEND_LUA)
    snprintf(buf, n, "an in-process Lua function");
  else
    snprintf(buf, n, "none");
  if (b->kind == SHADOW_BACKEND_HTTP) {
    /* Which HTTP it speaks: h2c:// is h2 whatever the option says, and
     * gRPC goes over h2 whatever it says. */
    int p = strncmp(b->url, "h2c:", 4) == 0 ? SHADOW_UPSTREAM_H2 : o->protocol;
    int tls = strncmp(b->url, "https:", 6) == 0;
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "; %s, %zu streams a connection",
             p == SHADOW_UPSTREAM_AUTO ? "auto (ALPN: h2 or http/1.1)"
             : p == SHADOW_UPSTREAM_H2 ? (tls ? "h2 (ALPN)" : "h2c")
                                       : "http/1.1 (gRPC over h2",
             o->max_streams);
    if (p == SHADOW_UPSTREAM_HTTP1) {
      len = strlen(buf);
      snprintf(buf + len, n - len, ")");
    }
  }
  if (b->kind == SHADOW_BACKEND_HTTP && strncmp(b->url, "https:", 6) == 0) {
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "; tls %s%s%s%s%s",
             !o->tls.verify   ? "NOT VERIFIED"
             : b->tls_ca_file ? "verified against "
                              : "verified against the system CAs",
             o->tls.verify && b->tls_ca_file ? b->tls_ca_file : "",
             b->tls_server_name ? ", name " : "",
             b->tls_server_name ? b->tls_server_name : "",
             b->tls_cert_file ? ", client certificate" : "");
  }
  return buf;
}

static void print_check(const char *path, shadow_gen_t *g) {
  const shadow_config_t *c = shadow_gen_config(g);
  char b[1024];
  printf("config %s is valid\n", path);
  printf("  listen     %s%s%s\n  admin      %s%s\n", c->listen,
         c->listen_cert_file ? ", TLS with " : "",
         c->listen_cert_file ? c->listen_cert_file : "", c->admin,
         c->admin_token ? " (bearer token required)" : "");
  if (!c->admin_token && !shadow_admin_addr_loopback(c->admin))
    printf("  warning    the admin listens beyond loopback without "
           "admin_token:\n             whoever reaches %s reads the "
           "divergences and reloads\n",
           c->admin);
  printf("  primary    %s\n", backend_desc(&c->primary, 0, b, sizeof(b)));
  printf("  candidate  %s\n", backend_desc(&c->candidate, 1, b, sizeof(b)));
  if (c->secondary.kind != SHADOW_BACKEND_NONE)
    printf("  secondary  %s; rate %g, noise classed at confidence %g after "
           "%llu samples\n",
           backend_desc(&c->secondary, 1, b, sizeof(b)), c->secondary_rate,
           c->noise_confidence, (unsigned long long)c->noise_min_samples);
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
  printf("%s; each call stopped past %llu ms or %zu MiB\n", any ? "" : " none",
         (unsigned long long)c->limits.hook_timeout_ms,
         c->limits.hook_memory_bytes >> 20);
  printf("  log        %zu records in memory%s%s\n", c->log_capacity,
         c->log_file ? ", appended to " : "", c->log_file ? c->log_file : "");
  if (c->log_file && c->log_max_bytes)
    printf("             rotated past %llu bytes, %u kept\n",
           (unsigned long long)c->log_max_bytes, c->log_keep);
  if (c->capture.file) {
    printf("  capture    rate %g, key %s, to %s; response bodies up to %zu "
           "bytes\n",
           c->capture.rate,
           shadow_gen_has_hook(g, SHADOW_HOOK_CAPTURE_KEY) ? "capture.key"
           : shadow_gen_has_hook(g, SHADOW_HOOK_KEY)       ? "sample.key"
                                                           : "none (random)",
           c->capture.file, c->capture.body_bytes);
    if (c->capture.max_bytes)
      printf("             rotated past %llu bytes, %u kept\n",
             (unsigned long long)c->capture.max_bytes, c->capture.keep);
  }
  if (c->grpc_descriptors)
    printf("  grpc       replies decoded by the output types of %zu methods "
           "from %s\n",
           shadow_diff_opts_grpc_methods(c->diff_opts), c->grpc_descriptors);
  if (c->store.url) {
    const shadow_store_cfg_t *st = &c->store;
    const char *at = strchr(st->url, '@');
    printf("  store      %s%s (prefix %s, flush every %llu ms, keys kept "
           "%llu s, %llu deltas kept while down)\n",
           at ? (st->tls ? "rediss://" : "redis://") : "",
           at ? at + 1 : st->url, st->prefix ? st->prefix : "shadow",
           (unsigned long long)st->flush_ms, (unsigned long long)st->ttl_s,
           (unsigned long long)st->max_pending);
    if (st->nsentinels)
      printf("             the primary named %s by %zu sentinel%s\n",
             st->sentinel_master, st->nsentinels,
             st->nsentinels > 1 ? "s" : "");
    if (st->username || st->password)
      printf("             AUTH as %s\n",
             st->username ? st->username : "the default user");
    if (st->tls)
      printf("             tls %s%s\n",
             !st->tls_verify   ? "NOT VERIFIED"
             : st->tls_ca_file ? "verified against "
                               : "verified against the system CAs",
             st->tls_verify && st->tls_ca_file ? st->tls_ca_file : "");
  }
  printf("  redact    ");
  for (size_t i = 0; i < shadow_redact_headers(c->redact); i++)
    printf(" %s", shadow_redact_header(c->redact, i));
  for (size_t i = 0; i < shadow_redact_pointers(c->redact); i++)
    printf(" body:%s", shadow_redact_pointer(c->redact, i));
  printf("%s\n",
         shadow_redact_headers(c->redact) + shadow_redact_pointers(c->redact)
             ? ""
             : " nothing");
  /* Which key, never the key itself. */
  if (shadow_redact_headers(c->redact) + shadow_redact_pointers(c->redact))
    printf("             marked by HMAC-SHA256 with %s\n",
           shadow_redact_has_key(c->redact)
               ? "redact.key"
               : "a random key per process (set redact.key to compare "
                 "marks across runs, e.g. for replay)");
  /* The divergence budget the verdict is judged against. */
  printf("  slo        budget %g%% of compared requests may differ; promote "
         "after at least %llu compared\n",
         c->slo_max_rate * 100, (unsigned long long)c->slo_min_samples);
  if (c->slo_max_latency_ratio > 0)
    printf("             hold when the candidate's p99 is over %g x the "
           "primary's\n",
           c->slo_max_latency_ratio);
  printf("  breaker    opens after %d failures for %llu ms\n",
         c->breaker_failures, (unsigned long long)c->breaker_cooldown_ms);
  printf("  shadow legs at most %zu in flight\n", c->max_inflight_shadow);
  const shadow_limits_t *l = &c->limits;
  printf("  bodies     client bodies up to %llu bytes%s, mirrored up to %llu; "
         "%zu bytes per side kept for the diff, the rest by digest\n",
         (unsigned long long)l->body_bytes, l->body_bytes ? "" : " (no cap)",
         (unsigned long long)l->mirror_body_bytes, l->diff_bytes);
  printf("  edge       %zu client connections%s, %zu tunnels%s (idle ones "
         "closed after %llu ms); request-body copies up to %llu bytes in "
         "all\n",
         l->max_connections, l->max_connections ? "" : " (no cap)",
         l->max_tunnels, l->max_tunnels ? "" : " (no cap)",
         (unsigned long long)l->tunnel_idle_timeout_ms,
         (unsigned long long)l->copy_memory_bytes);
  printf("  http/2     %zu streams per connection, %llu stream resets per "
         "10 s%s\n",
         l->h2_max_streams, (unsigned long long)l->h2_max_resets,
         l->h2_max_resets ? "" : " (no cap)");
  /* The JSON rules, by the names /metrics counts them under, so a rule
   * that never fires can be told from one that was never loaded. */
  const char *const *ignored = NULL;
  size_t nignored = shadow_diff_opts_ignored_headers(c->diff_opts, &ignored);
  printf("  ignore     headers");
  for (size_t i = 0; i < nignored; i++)
    printf("%s %s", i ? "," : "", ignored[i]);
  printf("%s\n", nignored ? " (never compared)" : " none");
  size_t nrules = 0;
  shadow_diff_opts_rule_names(c->diff_opts, NULL, &nrules);
  printf("  rules      %zu JSON rule%s%s\n", nrules, nrules == 1 ? "" : "s",
         nrules ? " (hits in shadow_rule_hits_total{rule}):" : "");
  for (size_t bit = 0; bit < SHADOW_JSON_RULE_BITS; bit++) {
    const char *name = shadow_diff_opts_rule_name(c->diff_opts, bit);
    if (name)
      printf("    %-30s %s\n", name,
             shadow_diff_opts_rule_desc(c->diff_opts, bit));
  }
}

int main(int argc, char **argv) {
  shadow_daemon_opts_t app;
  memset(&app, 0, sizeof(app));
  app.config_path = "shadow.lua";
  app.workers = 1;
  signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
  /* A response of a few dozen KiB takes buffers (its record, the client's
   * output) that are freed when it ends; with glibc's default threshold
   * each such free at the top of the heap gives the memory back with brk
   * and the next response asks for it again: 1.3 system calls a request
   * at 64 KiB. Up to 4 MiB of free memory stays at the top of each heap
   * instead. Setting it fixes the mmap threshold too (glibc would raise it
   * by itself, up to 32 MiB): chunks from 1 MiB on are mmap'd, and given
   * back at once when freed. */
  mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (argc > 1 && strcmp(argv[1], "diff") == 0) {
    int code = shadow_offline_diff_main(argc - 1, argv + 1);
    shadow_engine_caches_clear();
    return code;
  }
  if (argc > 1 && strcmp(argv[1], "replay") == 0)
    return shadow_replay_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "check-gateway") == 0)
    return shadow_check_gateway_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "export") == 0) {
    int code = shadow_export_main(argc - 1, argv + 1);
    shadow_engine_caches_clear();
    return code;
  }

  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"listen", required_argument, NULL, 'l'},
      {"admin", required_argument, NULL, 'a'},
      {"check", no_argument, NULL, 'k'},
      {"request", required_argument, NULL, 'r'},
      {"header", required_argument, NULL, 'H'},
      {"response", required_argument, NULL, 'R'},
      {"side", required_argument, NULL, 'S'},
      {"workers", required_argument, NULL, 'w'},
      {"version", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int check = 0, c;
  const char *request = NULL, *response = NULL, *side = "primary";
  const char *headers[64];
  size_t nheaders = 0;
  while ((c = getopt_long(argc, argv, "c:l:a:kvhr:H:w:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': app.config_path = optarg; break;
    case 'l': app.listen_override = optarg; break;
    case 'a': app.admin_override = optarg; break;
    case 'k': check = 1; break;
    case 'r': request = optarg; break;
    case 'R': response = optarg; break;
    case 'S':
      if (strcmp(optarg, "primary") != 0 && strcmp(optarg, "candidate") != 0) {
        fprintf(stderr, "shadowd: --side is primary or candidate\n");
        return 2;
      }
      side = optarg;
      break;
    case 'H':
      if (nheaders == 64) {
        fprintf(stderr, "shadowd: at most 64 --header options\n");
        return 2;
      }
      headers[nheaders++] = optarg;
      break;
    case 'w': {
      char *end;
      long n = strtol(optarg, &end, 10);
      if (*end || n < 1 || n > SHADOW_MAX_WORKERS) {
        fprintf(stderr, "shadowd: --workers takes a number from 1 to %d\n",
                SHADOW_MAX_WORKERS);
        return 2;
      }
      app.workers = (size_t)n;
      break;
    }
    case 'v': printf("shadowd %s\n", SHADOW_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if ((request || nheaders) && !check) {
    fprintf(stderr, "shadowd: --request and --header go with --check\n");
    return 2;
  }
  if ((response || strcmp(side, "primary") != 0) && !check) {
    fprintf(stderr, "shadowd: --response and --side go with --check\n");
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "shadowd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  /* Client connections are capped from the open-file limit (config.c),
   * so the limit is first raised as far as the hard one allows. */
  shadow_nofile_raise();
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
    int rc = request
                 ? shadow_check_request(g, request, headers, nheaders, stdout)
                 : 0;
    if (response && shadow_check_response(g, response, side, stdout) != 0)
      rc = -1;
    shadow_gen_unref(g);
    return rc ? 2 : 0;
  }
  return shadow_daemon_run(&app, g);
}
