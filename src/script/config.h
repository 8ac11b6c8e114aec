/* The configuration a script produced, as plain C data: read from the
 * script's table by script_config.c, read by the dispatcher, the admin and
 * main. The defaults live in config.c, and those of a backend's timeouts
 * in the upstream client they configure. */
#ifndef SHADOW_CONFIG_H
#define SHADOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "diff.h"
#include "redact.h"
#include "server.h"
#include "store_cfg.h"
#include "upstream.h"

enum {
  SHADOW_BACKEND_NONE = 0,
  SHADOW_BACKEND_HTTP = 1, /* a URL: the upstream client */
  SHADOW_BACKEND_LUA = 2   /* a Lua function in the generation's state */
};

typedef struct shadow_backend_cfg_s {
  int kind;
  char *url;  /* HTTP */
  char *host; /* HTTP: Host header to send, or NULL for the client's */
  /* HTTP: timeouts and pool sizes; opts.host is set from host by
   * shadow_backend_upstream_opts(). */
  shadow_upstream_opts_t opts;
  /* HTTP candidate and secondary: a shadow leg's whole deadline, from its
   * start to the response's last byte (total_timeout_ms, default 30000);
   * the primary has none: its response streams as long as it lasts. */
  uint64_t total_timeout_ms;
  /* https: tls = { ca_file, server_name, verify, cert_file, key_file };
   * opts.tls points at these. */
  char *tls_ca_file, *tls_server_name, *tls_cert_file, *tls_key_file;
  int lua_ref; /* LUA: registry reference of the function */
} shadow_backend_cfg_t;

/* limits.hook_memory_bytes unless the config says otherwise. */
#define SHADOW_HOOK_MEMORY_DEFAULT ((size_t)64 << 20)

/* What a client may send and how long things may take (limits.*). */
typedef struct shadow_limits_s {
  size_t header_bytes;        /* request head; over: 431 */
  size_t max_headers;         /* header lines in a request head; over: 431 */
  uint64_t body_bytes;        /* request body; over: 413; 0: no cap */
  uint64_t mirror_body_bytes; /* larger request bodies are not mirrored */
  size_t diff_bytes;          /* body kept per side for the diff */
  uint64_t header_timeout_ms;
  uint64_t idle_timeout_ms;
  /* Client connections open at once (all workers); past it new ones get
   * 503. SHADOW_LIMIT_AUTO until resolved by shadow_limits_resolve(). */
  size_t max_connections;
  uint64_t hook_timeout_ms; /* a Lua hook call that runs longer is stopped */
  size_t hook_memory_bytes; /* a Lua state's heap; past it allocations fail */
  uint64_t tunnel_idle_timeout_ms; /* an upgraded connection left idle */
  size_t max_tunnels; /* upgrades open at once; past it 503; AUTO as above */
  /* Request-body copies for the candidate, the secondary and capture, all
   * exchanges and workers together; past it new copies are skipped. */
  uint64_t copy_memory_bytes;
  /* HTTP/2 clients: streams open at once on one connection (past it:
   * RST_STREAM REFUSED_STREAM), and stream resets one connection may send
   * per 10 s (past it: GOAWAY ENHANCE_YOUR_CALM; 0: no cap). */
  size_t h2_max_streams;
  uint64_t h2_max_resets;
} shadow_limits_t;

/* "Derive it": what max_connections and max_tunnels are until the config
 * is read (an explicit 0 means no cap). */
#define SHADOW_LIMIT_AUTO ((size_t)-1)
/* Descriptors the proxy's listener leaves free at any time: the admin's 64
 * connections, 64 refusals being answered, and a margin. */
#define SHADOW_FD_RESERVE 160

/* Bits of mirror_methods, by llhttp method number (all are < 64). */
typedef uint64_t shadow_method_set_t;

/* capture = { file, rate, key, methods, max_bytes, keep, body_bytes }:
 * sampled exchanges written as NDJSON for `shadowd replay` (capture.h).
 * No file: no capture. The key hook is the generation's
 * SHADOW_HOOK_CAPTURE_KEY; without one, sample.key's key is used. */
typedef struct shadow_capture_cfg_s {
  char *file;
  double rate;                 /* default 1 */
  shadow_method_set_t methods; /* default mirror_methods */
  uint64_t max_bytes;          /* rotate past this size; 0: never */
  unsigned keep;               /* rotated files kept */
  size_t body_bytes; /* bodies kept per side; default limits.diff_bytes */
} shadow_capture_cfg_t;

typedef struct shadow_config_s {
  char *listen, *admin, *admin_token;
  /* listen = { addr = ..., tls = { cert_file, key_file } }: a TLS
   * listener; NULL for plain HTTP. */
  char *listen_cert_file, *listen_key_file;
  shadow_backend_cfg_t primary, candidate, secondary;
  double rate;
  /* sample.secondary_rate: the share of requests that also go to the
   * secondary; < 0 until set, then the sample rate (see policy.c). */
  double secondary_rate;
  /* noise = { confidence, min_samples }: the significance rule's one-sided
   * confidence (as z, engine/noise.h) and the samples each side needs
   * before a field is classed. */
  double noise_confidence, noise_z;
  uint64_t noise_min_samples;
  shadow_method_set_t mirror_methods;
  shadow_diff_opts_t *diff_opts;
  size_t log_capacity;
  char *log_file;
  uint64_t log_max_bytes; /* rotate log.file past this size; 0: never */
  unsigned log_keep;      /* rotated files kept */
  int breaker_failures;
  uint64_t breaker_cooldown_ms;
  size_t max_inflight_shadow;
  shadow_limits_t limits;
  double slo_max_rate;
  uint64_t slo_min_samples;
  double slo_max_latency_ratio; /* 0: no latency objective */
  /* redact = { headers, json }: authorization, cookie, set-cookie unless
   * headers is given. */
  shadow_redact_t *redact;
  uint64_t drain_timeout_ms;
  int watch;
  int forwarded; /* X-Forwarded-For and -Proto on both legs (default on) */
  shadow_capture_cfg_t capture;
  /* grpc = { descriptors = "api.pb" }: the descriptor set whose methods
   * decode gRPC replies by name (loaded into diff_opts); NULL: none. */
  char *grpc_descriptors;
  /* store = shadow.redis(url, opts): the fleet store (store_cfg.h); its
   * url is NULL without one. */
  shadow_store_cfg_t store;
} shadow_config_t;

/* The defaults of every field; 0, or -ENOMEM. */
int shadow_config_init(shadow_config_t *c);
void shadow_config_release(shadow_config_t *c);
void shadow_limits_default(shadow_limits_t *l);
/* Replaces SHADOW_LIMIT_AUTO: max_connections from the open-file limit
 * (RLIMIT_NOFILE's soft value) less a reserve, max_tunnels half of that. */
void shadow_limits_resolve(shadow_limits_t *l, size_t max_inflight_shadow);
/* Raises the soft RLIMIT_NOFILE to the hard one (as nginx's
 * worker_rlimit_nofile would); returns the soft limit now in force. */
uint64_t shadow_nofile_raise(void);
void shadow_backend_cfg_init(shadow_backend_cfg_t *b);
/* The upstream options a backend's pool is made with: its own, plus what
 * the limits say about bodies kept for the diff. */
void shadow_backend_upstream_opts(const shadow_backend_cfg_t *b,
                                  const shadow_limits_t *l,
                                  shadow_upstream_opts_t *out);
/* The server options the limits make for the proxy's listener. */
void shadow_limits_server_opts(const shadow_limits_t *l,
                               shadow_server_opts_t *out);
/* The files a config reads besides its scripts (certificates, keys, CA
 * files, grpc.descriptors), which a reload re-reads and the watch
 * watches: calls fn on each (at most SHADOW_CONFIG_MAX_FILES). */
#define SHADOW_CONFIG_MAX_FILES 9
void shadow_config_each_file(const shadow_config_t *c,
                             void (*fn)(void *ud, const char *path), void *ud);

#endif
