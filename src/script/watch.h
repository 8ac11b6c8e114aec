/* Watches a set of files and calls back once, debounced, after any of them
 * changes. Editors save by writing a new file and renaming it over the old
 * one, which ends an inode watch, so each file's directory is watched and
 * events are matched by name. */
#ifndef SHADOW_WATCH_H
#define SHADOW_WATCH_H

#include <stddef.h>
#include <uv.h>

typedef struct shadow_watch_s shadow_watch_t;

typedef void (*shadow_watch_cb)(void *ud);

/* Watches paths[0..n). debounce_ms after the last change, cb runs. */
int shadow_watch_start(uv_loop_t *loop, const char *const *paths, size_t n,
                       uint64_t debounce_ms, shadow_watch_cb cb, void *ud,
                       shadow_watch_t **out);
/* Stops watching; memory is freed when the handles have closed. */
void shadow_watch_stop(shadow_watch_t *w);

#endif
