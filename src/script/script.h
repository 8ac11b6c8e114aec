/* The script host: every contact with Lua. A generation is one LuaJIT state
 * plus the config its script returned; hooks run protected in it, and an
 * error in one is counted and answered by that hook's fallback, never by
 * touching the client's response. */
#ifndef SHADOW_SCRIPT_H
#define SHADOW_SCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "record.h"
#include "request_parse.h"

typedef struct shadow_gen_s shadow_gen_t;

typedef enum shadow_hook_e {
  SHADOW_HOOK_FILTER = 0,
  SHADOW_HOOK_KEY,
  SHADOW_HOOK_ROUTE,
  SHADOW_HOOK_REWRITE,
  SHADOW_HOOK_NORMALIZE,
  SHADOW_HOOK_ON_DIVERGENCE,
  SHADOW_HOOK_BACKEND,     /* an in-process Lua backend */
  SHADOW_HOOK_CAPTURE_KEY, /* capture.key */
  SHADOW_HOOK_COUNT
} shadow_hook_t;

/* "filter", "key", ...: the label values of shadow_script_errors_total
 * and shadow_hook_duration_seconds, by hook. */
extern const char *const shadow_hook_names[SHADOW_HOOK_COUNT];
const char *shadow_hook_name(int hook);

/* Told of every hook error, after the host has logged it (at most once a
 * second per hook), and of the time every hook call took. */
typedef struct shadow_script_observer_s {
  void (*on_error)(void *ud, int hook, const char *msg);
  void (*on_time)(void *ud, int hook, double seconds);
  void *ud;
} shadow_script_observer_t;

/* Loads, runs and validates the script at path in a fresh state. On
 * failure returns a negative code and *err ("file:line: message"; free()
 * it); nothing is left behind. */
int shadow_script_load(const char *path, shadow_gen_t **out, char **err);

/* SIGTERM or SIGINT came: a hook still running drain_timeout_ms / 2
 * later, or started after that, is stopped (whatever its own limit), so
 * the process exits within drain_timeout_ms even when a hook holds the
 * loop. Async-signal-safe: only an atomic store. */
void shadow_script_stop(void);
/* Milliseconds since shadow_script_stop() (0 when it was not called): the
 * part of the drain a hook took before the loop saw the signal. */
uint64_t shadow_script_stop_age_ms(void);

/* Command-line --listen and --admin win over the script (NULL: keep). */
int shadow_gen_override(shadow_gen_t *g, const char *listen, const char *admin);

void shadow_gen_ref(shadow_gen_t *g);
void shadow_gen_unref(shadow_gen_t *g); /* the last one closes the state */
const shadow_config_t *shadow_gen_config(const shadow_gen_t *g);
int shadow_gen_has_hook(const shadow_gen_t *g, int hook);
void shadow_gen_observe(shadow_gen_t *g, const shadow_script_observer_t *o);
/* The files the generation was built from (the config and the modules it
 * required), and a hash of their contents when it was loaded. */
size_t shadow_gen_source_count(const shadow_gen_t *g);
const char *shadow_gen_source(const shadow_gen_t *g, size_t i);
uint64_t shadow_gen_source_hash(const shadow_gen_t *g);
/* The config's top-level fields' fingerprints (config_changes.h). */
struct shadow_config_print_s;
const struct shadow_config_print_s *shadow_gen_print(const shadow_gen_t *g);
/* Hashes the same files as they are on disk now: equal to
 * shadow_gen_source_hash() when nothing changed. */
uint64_t shadow_gen_source_hash_now(const shadow_gen_t *g);

/* The Lua view of one request, { method, path, query, headers, body },
 * built once and shared by all the hooks of that request; body is the
 * request body as far as it is kept (NULL: none). Returns a handle (> 0)
 * or 0 when the table could not be built. */
int shadow_script_req_open(shadow_gen_t *g, const shadow_request_t *req,
                           const char *body, size_t body_len);
void shadow_script_req_close(shadow_gen_t *g, int req);

/* 1: sample it, 0: filtered out or the hook failed (fallback: not
 * sampled). */
int shadow_script_filter(shadow_gen_t *g, int req);
/* 1: *key set; 0: the key is nil; -1: the hook failed (not sampled). */
int shadow_script_key(shadow_gen_t *g, int req, shadow_buf_t *key);
/* The same for capture.key: 0 when the config has no capture key. */
int shadow_script_capture_key(shadow_gen_t *g, int req, shadow_buf_t *key);
/* 0: *route set; -1: the hook failed (route "unknown"). */
int shadow_script_route(shadow_gen_t *g, int req, shadow_buf_t *route);
/* The request the candidate gets: 0 and a new handle in *out (close it
 * too), or -1 when the hook failed (fallback: the candidate is skipped). */
int shadow_script_rewrite(shadow_gen_t *g, int req, int *out);
/* Reads a request handle back into C. Headers whose value is still what
 * orig (the request the handle was opened on; NULL: none) had keep orig's
 * lines, so an identity rewrite reads back as the request itself. */
int shadow_script_req_read(shadow_gen_t *g, int req,
                           const shadow_headers_t *orig, shadow_buf_t *method,
                           shadow_buf_t *target, shadow_headers_t *headers,
                           shadow_buf_t *body);
/* Replaces *rec with normalize(rec, side, req)'s result. 0, or -1 when the
 * hook failed and *rec is untouched (fallback: raw compare). A body that
 * was cut to a prefix and a digest (see record.h) is shown as that prefix
 * and stays as it is, whatever the hook returns for it. */
int shadow_script_normalize(shadow_gen_t *g, int req, shadow_record_t *rec,
                            const char *side);
/* Calls on_divergence with the record decoded to a table; errors ignored. */
void shadow_script_on_divergence(shadow_gen_t *g, const char *json, size_t len);
/* Calls an in-process backend function with the request. 0 and *out
 * filled, or -1 (the caller answers as for a failed backend). */
int shadow_script_call_backend(shadow_gen_t *g, int fn_ref, int req,
                               shadow_record_t *out, char *err, size_t errlen);

/* Stack: unchanged on success; the error message pushed on failure (-1).
 * Registers shadow's Lua modules compiled into the binary in
 * package.preload, and the engine as shadow.clib (ffi.C), in an opened
 * state: the daemon's states (behind their sandbox) and check-gateway's
 * use it alike. */
struct lua_State;
int shadow_script_open_embedded(struct lua_State *L);

#endif
