/* The config's defaults and its plain-data helpers: one place for each
 * default, so --check, the dispatcher and the docs agree. */
#include "config.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "noise.h"
#include "sink.h"

void shadow_limits_default(shadow_limits_t *l) {
  l->header_bytes = 64 * 1024;
  l->max_headers = 100;
  l->body_bytes = 8 * 1024 * 1024;
  l->mirror_body_bytes = 8 * 1024 * 1024;
  l->diff_bytes = 1024 * 1024;
  l->header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->max_connections = SHADOW_LIMIT_AUTO;
  l->hook_timeout_ms = 100;
  l->hook_memory_bytes = SHADOW_HOOK_MEMORY_DEFAULT;
  l->tunnel_idle_timeout_ms = 60000;
  l->max_tunnels = SHADOW_LIMIT_AUTO;
  l->copy_memory_bytes = 64 * 1024 * 1024;
  l->h2_max_streams = 128; /* nginx's http2_max_concurrent_streams */
  l->h2_max_resets = 1000;
}

/* File descriptors kept back from client connections: the admin's 64
 * connections and listener, refusals being answered (server.c's
 * MAX_REFUSING), the listeners, log and capture files, stdio, each loop's
 * epoll, timers and wakeups, and a margin (SHADOW_FD_RESERVE of it is
 * what the listener itself keeps free). The shadow legs (candidate and
 * secondary, max_inflight_shadow each) come on top. */
#define NOFILE_RESERVE 256

uint64_t shadow_nofile_raise(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit up = {rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = rl.rlim_max;
  }
  return rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20
                                      : (uint64_t)rl.rlim_cur;
}

void shadow_limits_resolve(shadow_limits_t *l, size_t max_inflight_shadow) {
  if (l->max_connections == SHADOW_LIMIT_AUTO) {
    struct rlimit rl;
    uint64_t nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
      nofile = rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20
                                            : (uint64_t)rl.rlim_cur;
    uint64_t avail = nofile > NOFILE_RESERVE ? nofile - NOFILE_RESERVE : 0;
    /* The shadow legs are best effort: at most a quarter of the rest,
     * whatever max_inflight_shadow says (a leg that finds no descriptor
     * fails as the candidate's error, unseen by clients). */
    uint64_t legs = 2 * (uint64_t)max_inflight_shadow;
    if (legs > avail / 4) legs = avail / 4;
    /* Half of what remains: a client whose request is in flight holds a
     * connection to the primary as well, and a tunnel always does. */
    uint64_t n = (avail - legs) / 2;
    if (n < 16) n = 16; /* a tiny limit: a few clients rather than none */
    l->max_connections = n > 10000000 ? 10000000 : (size_t)n;
  }
  if (l->max_tunnels == SHADOW_LIMIT_AUTO)
    /* Tunnels live long: they may take half the connections, so plain
     * requests always keep the other half. */
    l->max_tunnels = l->max_connections ? (l->max_connections + 1) / 2 : 0;
}

void shadow_backend_cfg_init(shadow_backend_cfg_t *b) {
  memset(b, 0, sizeof(*b));
  b->kind = SHADOW_BACKEND_NONE;
  b->lua_ref = LUA_NOREF;
  shadow_upstream_opts_default(&b->opts);
  b->total_timeout_ms = 30000;
}

int shadow_config_init(shadow_config_t *c) {
  memset(c, 0, sizeof(*c));
  c->listen = strdup("127.0.0.1:8080");
  c->admin = strdup("127.0.0.1:9090");
  shadow_backend_cfg_init(&c->primary);
  shadow_backend_cfg_init(&c->candidate);
  shadow_backend_cfg_init(&c->secondary);
  c->mirror_methods =
      (1ull << HTTP_GET) | (1ull << HTTP_HEAD) | (1ull << HTTP_OPTIONS);
  c->log_capacity = 1000;
  c->log_max_bytes = SHADOW_SINK_MAX_BYTES;
  c->log_keep = SHADOW_SINK_KEEP;
  c->breaker_failures = 5;
  c->breaker_cooldown_ms = 10000;
  c->max_inflight_shadow = 256;
  c->secondary_rate = -1;
  c->noise_confidence = 0.99;
  c->noise_z = shadow_noise_z(c->noise_confidence);
  c->noise_min_samples = 100;
  c->slo_max_rate = 0.001;
  c->slo_min_samples = 1000;
  c->drain_timeout_ms = 10000;
  c->forwarded = 1;
  shadow_limits_default(&c->limits);
  shadow_store_cfg_init(&c->store);
  c->capture.rate = 1.0;
  c->capture.methods = c->mirror_methods;
  c->capture.max_bytes = SHADOW_SINK_MAX_BYTES;
  c->capture.keep = SHADOW_SINK_KEEP;
  c->capture.body_bytes = c->limits.diff_bytes;
  c->diff_opts = shadow_diff_opts_new();
  c->redact = shadow_redact_new();
  if (!c->listen || !c->admin || !c->diff_opts || !c->redact ||
      shadow_redact_add_defaults(c->redact) != 0)
    return -ENOMEM;
  shadow_diff_opts_set_diff_bytes(c->diff_opts, c->limits.diff_bytes);
  return 0;
}

void shadow_backend_upstream_opts(const shadow_backend_cfg_t *b,
                                  const shadow_limits_t *l,
                                  shadow_upstream_opts_t *out) {
  *out = b->opts;
  out->host = b->host;
  out->tls.ca_file = b->tls_ca_file;
  out->tls.server_name = b->tls_server_name;
  out->tls.cert_file = b->tls_cert_file;
  out->tls.key_file = b->tls_key_file;
  out->header_bytes = l->header_bytes;
  out->body_keep = l->diff_bytes;
}

void shadow_limits_server_opts(const shadow_limits_t *l,
                               shadow_server_opts_t *out) {
  shadow_server_opts_default(out);
  out->header_bytes = l->header_bytes;
  out->max_headers = l->max_headers;
  out->body_bytes = l->body_bytes;
  out->header_timeout_ms = l->header_timeout_ms;
  out->idle_timeout_ms = l->idle_timeout_ms;
  out->max_connections =
      l->max_connections == SHADOW_LIMIT_AUTO ? 0 : l->max_connections;
  /* Whatever max_connections says, clients stop short of the descriptor
   * limit by the admin's connections, refusals in progress and a margin. */
  out->fd_reserve = SHADOW_FD_RESERVE;
  out->tunnel_idle_timeout_ms = l->tunnel_idle_timeout_ms;
  out->h2_max_streams = l->h2_max_streams;
  out->h2_max_resets = l->h2_max_resets;
}

static void backend_release(shadow_backend_cfg_t *b) {
  free(b->url);
  free(b->host);
  free(b->tls_ca_file);
  free(b->tls_server_name);
  free(b->tls_cert_file);
  free(b->tls_key_file);
  b->url = b->host = NULL;
  b->tls_ca_file = b->tls_server_name = NULL;
  b->tls_cert_file = b->tls_key_file = NULL;
}

void shadow_config_each_file(const shadow_config_t *c,
                             void (*fn)(void *ud, const char *path), void *ud) {
  const char *const files[] = {
      c->listen_cert_file,        c->listen_key_file,
      c->primary.tls_ca_file,     c->primary.tls_cert_file,
      c->primary.tls_key_file,    c->candidate.tls_ca_file,
      c->candidate.tls_cert_file, c->candidate.tls_key_file,
      c->grpc_descriptors};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    if (files[i]) fn(ud, files[i]);
}

void shadow_config_release(shadow_config_t *c) {
  free(c->listen);
  free(c->listen_cert_file);
  free(c->listen_key_file);
  free(c->admin);
  free(c->admin_token);
  backend_release(&c->primary);
  backend_release(&c->candidate);
  backend_release(&c->secondary);
  free(c->log_file);
  free(c->capture.file);
  free(c->grpc_descriptors);
  shadow_store_cfg_release(&c->store);
  shadow_diff_opts_free(c->diff_opts);
  shadow_redact_free(c->redact);
  memset(c, 0, sizeof(*c));
}
