/* The configuration a script produced, as plain C data. Filled by script.c,
 * read by the dispatcher, the admin and main. */
#ifndef SHADOW_CONFIG_H
#define SHADOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "diff.h"
#include "server.h"

enum {
  SHADOW_BACKEND_NONE = 0,
  SHADOW_BACKEND_HTTP = 1, /* a URL: the upstream client */
  SHADOW_BACKEND_LUA = 2   /* a Lua function in the generation's state */
};

typedef struct shadow_backend_cfg_s {
  int kind;
  char *url;  /* HTTP */
  char *host; /* HTTP: Host header override, or NULL */
  uint64_t timeout_ms, connect_timeout_ms;
  size_t max_connections;
  int lua_ref; /* LUA: registry reference of the function */
} shadow_backend_cfg_t;

/* Bits of mirror_methods, by llhttp method number (all are < 64). */
typedef uint64_t shadow_method_set_t;

typedef struct shadow_config_s {
  char *listen, *admin, *admin_token;
  shadow_backend_cfg_t primary, candidate, secondary;
  double rate;
  shadow_method_set_t mirror_methods;
  shadow_diff_opts_t *diff_opts;
  size_t log_capacity;
  char *log_file;
  int breaker_failures;
  uint64_t breaker_cooldown_ms;
  size_t max_inflight_shadow;
  shadow_limits_t limits;
  size_t diff_bytes;
  double slo_max_rate;
  uint64_t slo_min_samples;
  uint64_t drain_timeout_ms;
  uint64_t hook_timeout_ms; /* limits.hook_timeout_ms */
  int watch;
} shadow_config_t;

void shadow_config_release(shadow_config_t *c);
/* llhttp's number for an HTTP method name (any case), or -1. */
int shadow_config_method_id(const char *name);

#endif
