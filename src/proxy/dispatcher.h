/* The dispatcher (the "shadower"): serves each client request from the
 * primary, mirrors the sampled ones to the candidate, and hands each pair
 * to the diff engine. The client's response never waits for the
 * candidate. */
#ifndef SHADOW_DISPATCHER_H
#define SHADOW_DISPATCHER_H

#include <uv.h>

#include "script.h"
#include "shared.h"

typedef struct shadow_dispatcher_s shadow_dispatcher_t;

/* Starts serving cfg.listen on loop with generation gen (the dispatcher
 * takes the caller's reference). sh, shared with any other loop's
 * dispatcher, must outlive it; with sh->threaded the listener uses
 * SO_REUSEPORT. */
int shadow_dispatcher_new(uv_loop_t *loop, shadow_gen_t *gen,
                          shadow_shared_t *sh, shadow_dispatcher_t **out,
                          char **err);
/* Swaps in a new generation (taking the caller's reference) if it can be
 * started: requests in flight finish on the old one. On failure the old
 * one keeps running, *err says why, and the caller keeps its reference.
 * The shared parts of a config (ring, sink, breaker) are applied once, by
 * the caller, with shadow_shared_apply. */
int shadow_dispatcher_reload(shadow_dispatcher_t *d, shadow_gen_t *gen,
                             char **err);

/* Graceful stop: stop accepting, let client requests in flight finish, then
 * call done. Candidate legs still pending are abandoned by close(). */
void shadow_dispatcher_drain(shadow_dispatcher_t *d, void (*done)(void *ud),
                             void *ud);
size_t shadow_dispatcher_inflight(const shadow_dispatcher_t *d);
/* Closes everything and frees the dispatcher once the loop has run. */
void shadow_dispatcher_close(shadow_dispatcher_t *d);

#endif
