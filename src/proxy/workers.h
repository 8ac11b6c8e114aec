/* --workers N: N event-loop threads, each with its own dispatcher, Lua
 * state and backend pools, all listening on the same address with
 * SO_REUSEPORT, and sharing counters, ring log and sink (shared.h). The
 * main thread keeps signals and the admin port. */
#ifndef SHADOW_WORKERS_H
#define SHADOW_WORKERS_H

#include <stddef.h>
#include <uv.h>

#include "script.h"
#include "shared.h"

typedef struct shadow_workers_s shadow_workers_t;

/* Starts n workers, worker i on gens[i] (one generation per worker: a Lua
 * state belongs to one thread; the workers take these references). Calls
 * done on the main loop once every worker has stopped after
 * shadow_workers_drain. 0, or -1 and *err with nothing left running. */
int shadow_workers_start(uv_loop_t *main_loop, size_t n, shadow_gen_t **gens,
                         shadow_shared_t *sh, void (*done)(void *ud), void *ud,
                         shadow_workers_t **out, char **err);
/* Hands gens[i] to worker i, which swaps it in on its own loop and then
 * shows generation as its own in the stats (loop_generation). */
void shadow_workers_reload(shadow_workers_t *w, shadow_gen_t **gens,
                           unsigned generation);
/* Each worker drains (at most drain_timeout_ms) and stops. */
void shadow_workers_drain(shadow_workers_t *w, uint64_t drain_timeout_ms);
/* Joins the threads and frees everything; call after done ran. */
void shadow_workers_free(shadow_workers_t *w);

#endif
