/* --workers N (see workers.h): each worker thread runs its own loop with
 * its own dispatcher and Lua state; the main thread hands them new
 * generations through a mailbox and an async handle, and joins them. */
#include "workers.h"

#include <stdlib.h>
#include <string.h>

#include "caches.h"
#include "dispatcher.h"
#include "log.h"

typedef struct worker_s {
  struct shadow_workers_s *ws;
  size_t index;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake; /* the main thread has put something in the mailbox */
  uv_timer_t drain_timer;
  shadow_dispatcher_t *d;
  shadow_gen_t *initial;
  /* The mailbox, guarded by ws->mu. */
  shadow_gen_t *next_gen;
  unsigned next_generation; /* its number, for /stats */
  int stop;
  uint64_t drain_timeout_ms;
  /* Start-up result, read by the main thread after `ready`. */
  int start_rc;
  char *start_err;
  int stopping;
} worker_t;

struct shadow_workers_s {
  worker_t *v;
  size_t n;
  shadow_shared_t *sh;
  uv_mutex_t mu;
  uv_sem_t ready;
  uv_async_t stopped; /* on the main loop: a worker has finished */
  size_t running;     /* threads started */
  size_t finished;    /* loops that have exited; guarded by mu */
  void (*done)(void *ud);
  void *ud;
};

static void close_worker_loop(worker_t *w) {
  if (w->d) shadow_dispatcher_close(w->d);
  w->d = NULL;
  uv_close((uv_handle_t *)&w->wake, NULL);
  uv_close((uv_handle_t *)&w->drain_timer, NULL);
}

static void worker_drained(void *ud) {
  worker_t *w = ud;
  uv_timer_stop(&w->drain_timer);
  close_worker_loop(w);
}

static void worker_drain_timeout(uv_timer_t *t) {
  worker_t *w = t->data;
  shadow_log_warn("worker %zu: drain timeout: %zu requests still in flight "
                  "are cut",
                  w->index, shadow_dispatcher_inflight(w->d));
  close_worker_loop(w);
}

/* Runs on the worker's loop: take what the main thread posted. */
static void on_wake(uv_async_t *h) {
  worker_t *w = h->data;
  uv_mutex_lock(&w->ws->mu);
  shadow_gen_t *g = w->next_gen;
  unsigned generation = w->next_generation;
  int stop = w->stop;
  w->next_gen = NULL;
  uv_mutex_unlock(&w->ws->mu);
  if (g && !w->stopping) {
    char *err = NULL;
    if (shadow_dispatcher_reload(w->d, g, &err) != 0) {
      shadow_log_error("worker %zu: reload failed, the running script "
                       "stays: %s",
                       w->index, err ? err : "?");
      free(err);
      shadow_gen_unref(g);
    } else {
      shadow_shared_t *sh = w->ws->sh;
      shadow_shared_lock(sh);
      if (w->index < sh->stats->nloops)
        sh->stats->loop_generation[w->index] = generation;
      shadow_shared_unlock(sh);
    }
  } else if (g) {
    shadow_gen_unref(g);
  }
  if (stop && !w->stopping) {
    w->stopping = 1;
    /* A hook may have held this loop since the signal came: the drain
     * counts from the signal. */
    uint64_t late = shadow_script_stop_age_ms();
    uint64_t ms = w->drain_timeout_ms > late ? w->drain_timeout_ms - late : 0;
    uv_timer_start(&w->drain_timer, worker_drain_timeout, ms, 0);
    shadow_dispatcher_drain(w->d, worker_drained, w);
  }
}

static void worker_main(void *arg) {
  worker_t *w = arg;
  uv_loop_init(&w->loop);
  uv_async_init(&w->loop, &w->wake, on_wake);
  w->wake.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  w->start_rc = shadow_dispatcher_new(&w->loop, w->initial, w->ws->sh, &w->d,
                                      &w->start_err);
  if (w->start_rc != 0) {
    shadow_gen_unref(w->initial);
    w->d = NULL;
    close_worker_loop(w);
  }
  w->initial = NULL;
  uv_sem_post(&w->ws->ready);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&w->loop) != 0)
    shadow_log_warn("worker %zu: loop closed with handles open", w->index);
  shadow_engine_caches_clear();
  uv_mutex_lock(&w->ws->mu);
  w->ws->finished++;
  uv_mutex_unlock(&w->ws->mu);
  uv_async_send(&w->ws->stopped);
}

/* On the main loop: sends coalesce, so count the finished loops under the
 * lock; the last one ends the drain. */
static void on_stopped(uv_async_t *h) {
  shadow_workers_t *ws = h->data;
  uv_mutex_lock(&ws->mu);
  int all = ws->finished == ws->running;
  uv_mutex_unlock(&ws->mu);
  if (all && ws->done) {
    void (*done)(void *) = ws->done;
    ws->done = NULL;
    done(ws->ud);
  }
}

/* The memory goes with the main loop's handle, in its close callback. */
static void on_close_free(uv_handle_t *h) {
  shadow_workers_t *ws = h->data;
  uv_sem_destroy(&ws->ready);
  uv_mutex_destroy(&ws->mu);
  for (size_t i = 0; i < ws->n; i++)
    free(ws->v[i].start_err);
  free(ws->v);
  free(ws);
}

int shadow_workers_start(uv_loop_t *main_loop, size_t n, shadow_gen_t **gens,
                         shadow_shared_t *sh, void (*done)(void *ud), void *ud,
                         shadow_workers_t **out, char **err) {
  shadow_workers_t *ws = calloc(1, sizeof(*ws));
  worker_t *v = calloc(n, sizeof(*v));
  if (!ws || !v) {
    free(ws);
    free(v);
    for (size_t i = 0; i < n; i++)
      shadow_gen_unref(gens[i]);
    *err = strdup("out of memory");
    return -1;
  }
  ws->v = v;
  ws->n = n;
  ws->sh = sh;
  ws->done = done;
  ws->ud = ud;
  uv_mutex_init(&ws->mu);
  uv_sem_init(&ws->ready, 0);
  uv_async_init(main_loop, &ws->stopped, on_stopped);
  ws->stopped.data = ws;
  int rc = 0;
  size_t started = 0;
  for (size_t i = 0; i < n; i++) {
    worker_t *w = &v[i];
    w->ws = ws;
    w->index = i;
    w->initial = gens[i];
    if (rc == 0 && uv_thread_create(&w->thread, worker_main, w) == 0) {
      started++;
      uv_sem_wait(&ws->ready);
      if (w->start_rc != 0) {
        rc = -1;
        *err = w->start_err;
        w->start_err = NULL;
      }
    } else {
      if (rc == 0) *err = strdup("cannot start a worker thread");
      rc = -1;
      shadow_gen_unref(w->initial);
      w->initial = NULL;
    }
  }
  ws->running = started;
  if (rc != 0) {
    /* Stop the ones that did start, without waiting for a drain. */
    shadow_workers_drain(ws, 0);
    for (size_t i = 0; i < started; i++)
      uv_thread_join(&v[i].thread);
    ws->done = NULL;
    uv_close((uv_handle_t *)&ws->stopped, on_close_free);
    return -1;
  }
  *out = ws;
  return 0;
}

void shadow_workers_reload(shadow_workers_t *ws, shadow_gen_t **gens,
                           unsigned generation) {
  for (size_t i = 0; i < ws->n; i++) {
    worker_t *w = &ws->v[i];
    uv_mutex_lock(&ws->mu);
    shadow_gen_t *old = w->next_gen;
    w->next_gen = gens[i];
    w->next_generation = generation;
    uv_mutex_unlock(&ws->mu);
    /* A generation posted but not yet taken is replaced by the newer. */
    if (old) shadow_gen_unref(old);
    uv_async_send(&w->wake);
  }
}

void shadow_workers_drain(shadow_workers_t *ws, uint64_t drain_timeout_ms) {
  for (size_t i = 0; i < ws->n; i++) {
    worker_t *w = &ws->v[i];
    uv_mutex_lock(&ws->mu);
    w->stop = 1;
    w->drain_timeout_ms = drain_timeout_ms;
    uv_mutex_unlock(&ws->mu);
    uv_async_send(&w->wake);
  }
}

void shadow_workers_free(shadow_workers_t *ws) {
  if (!ws) return;
  for (size_t i = 0; i < ws->n; i++) {
    uv_thread_join(&ws->v[i].thread);
    if (ws->v[i].next_gen) shadow_gen_unref(ws->v[i].next_gen);
    ws->v[i].next_gen = NULL;
  }
  ws->done = NULL;
  uv_close((uv_handle_t *)&ws->stopped, on_close_free);
}
