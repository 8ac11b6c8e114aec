/* A connection's deadline, kept lazily on its libuv timer. A connection
 * re-arms on nearly every event of a request (each read, write and head),
 * and a timer start or stop is a walk of the loop's timer heap, which
 * holds every connection's timer: thousands when a slow candidate keeps
 * that many legs in flight. So a deadline that only moves later, or goes,
 * is just noted: the timer fires at its earlier time, finds the deadline
 * ahead (or none) and sleeps for the rest, as nginx keeps its timers. The
 * client connections (server.c) and the pool's HTTP/1.1 connections
 * (upstream.c) keep theirs so; an HTTP/2 connection's timer serves the
 * earliest of its streams' deadlines instead (h2_client.c). */
#ifndef SHADOW_DEADLINE_H
#define SHADOW_DEADLINE_H

#include <stdint.h>
#include <uv.h>

/* In uv_now() ms. */
typedef struct shadow_deadline_s {
  uint64_t due;   /* the deadline (UINT64_MAX: none) */
  uint64_t armed; /* when the timer, if active, fires */
} shadow_deadline_t;

/* The deadline ms from now; the timer is started only when it must fire
 * earlier than it would (or is not running). */
static inline void shadow_deadline_set(shadow_deadline_t *d, uv_timer_t *t,
                                       uv_timer_cb cb, uint64_t ms) {
  uint64_t now = uv_now(t->loop);
  uint64_t due = ms < UINT64_MAX - 1 - now ? now + ms : UINT64_MAX - 1;
  d->due = due;
  if (uv_is_active((uv_handle_t *)t) && d->armed <= due) return;
  d->armed = due;
  uv_timer_start(t, cb, ms, 0);
}

/* No deadline: a timer still running finds none when it fires. */
static inline void shadow_deadline_clear(shadow_deadline_t *d) {
  d->due = UINT64_MAX;
}

/* From the timer's callback: 1 when the deadline has come (it is then
 * cleared); 0 when it moved later since the timer was armed (the timer
 * sleeps on to it) or went. */
static inline int shadow_deadline_reached(shadow_deadline_t *d, uv_timer_t *t,
                                          uv_timer_cb cb) {
  uint64_t now = uv_now(t->loop);
  if (d->due > now) {
    if (d->due != UINT64_MAX) {
      d->armed = d->due;
      uv_timer_start(t, cb, d->due - now, 0);
    }
    return 0;
  }
  d->due = UINT64_MAX;
  return 1;
}

#endif
