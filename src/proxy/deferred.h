/* Work the dispatcher runs from the loop's idle phase rather than where it
 * arises: in-process (Lua) candidate legs, which must not delay the
 * client's response, and the closing of backends no generation uses any
 * more, which must not happen inside one of their own callbacks. */
#ifndef SHADOW_DEFERRED_H
#define SHADOW_DEFERRED_H

#include <uv.h>

typedef struct shadow_task_s shadow_task_t;
/* canceled: the queue is being closed; the task must clean up only. */
typedef void (*shadow_task_fn)(shadow_task_t *t, int canceled);

/* Embedded in whatever needs running; queued at most once at a time. */
struct shadow_task_s {
  shadow_task_t *next;
  shadow_task_fn run;
};

typedef struct shadow_deferred_s {
  uv_idle_t idle;
  shadow_task_t *head, *tail;
  void (*after)(void *ud); /* once per idle turn, after the tasks */
  void *ud;
  int closing;
} shadow_deferred_t;

/* after (NULL-able) runs at the end of every turn that had work, and of
 * turns asked for with shadow_deferred_kick(). */
void shadow_deferred_init(uv_loop_t *loop, shadow_deferred_t *q,
                          void (*after)(void *ud), void *ud);
void shadow_deferred_push(shadow_deferred_t *q, shadow_task_t *t,
                          shadow_task_fn run);
/* Asks for a turn even with no task queued (for `after`). */
void shadow_deferred_kick(shadow_deferred_t *q);
/* Runs every queued task with canceled = 1, then closes the handle;
 * close_cb as for uv_close (the handle's data is q->ud). */
void shadow_deferred_close(shadow_deferred_t *q, uv_close_cb close_cb);

#endif
