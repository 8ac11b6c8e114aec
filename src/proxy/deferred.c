/* The deferred queue (see deferred.h): a FIFO of intrusive tasks drained
 * by one uv_idle handle, which runs only while there is work. */
#include "deferred.h"

#include <stddef.h>

static void on_idle(uv_idle_t *h) {
  shadow_deferred_t *q = h->data;
  /* Tasks queued while these run wait for the next turn. */
  shadow_task_t *t = q->head;
  q->head = q->tail = NULL;
  while (t) {
    shadow_task_t *next = t->next;
    t->next = NULL;
    t->run(t, q->closing);
    t = next;
  }
  if (q->after) q->after(q->ud);
  if (!q->head) uv_idle_stop(&q->idle);
}

void shadow_deferred_init(uv_loop_t *loop, shadow_deferred_t *q,
                          void (*after)(void *ud), void *ud) {
  q->head = q->tail = NULL;
  q->after = after;
  q->ud = ud;
  q->closing = 0;
  uv_idle_init(loop, &q->idle);
  q->idle.data = q;
}

void shadow_deferred_push(shadow_deferred_t *q, shadow_task_t *t,
                          shadow_task_fn run) {
  t->run = run;
  t->next = NULL;
  if (q->tail)
    q->tail->next = t;
  else
    q->head = t;
  q->tail = t;
  if (!q->closing) uv_idle_start(&q->idle, on_idle);
}

void shadow_deferred_kick(shadow_deferred_t *q) {
  if (!q->closing) uv_idle_start(&q->idle, on_idle);
}

void shadow_deferred_close(shadow_deferred_t *q, uv_close_cb close_cb) {
  q->closing = 1;
  shadow_task_t *t = q->head;
  q->head = q->tail = NULL;
  while (t) {
    shadow_task_t *next = t->next;
    t->next = NULL;
    t->run(t, 1);
    t = next;
  }
  q->idle.data = q->ud;
  uv_close((uv_handle_t *)&q->idle, close_cb);
}
