/* The config file watch (see watch.h): one libuv fs_event per directory,
 * matched by file name, debounced with a timer. */
#include "watch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct dir_watch_s {
  uv_fs_event_t ev;
  struct shadow_watch_s *w;
  char *dir;
} dir_watch_t;

struct shadow_watch_s {
  uv_timer_t debounce;
  dir_watch_t *dirs;
  size_t ndirs;
  char **names; /* base names of the watched files, per dir */
  size_t *name_dir;
  size_t nnames;
  uint64_t debounce_ms;
  shadow_watch_cb cb;
  void *ud;
  int open_handles;
};

static void split(const char *path, char **dir, char **base) {
  const char *slash = strrchr(path, '/');
  if (slash) {
    *dir = strndup(path, (size_t)(slash - path + (slash == path)));
    *base = strdup(slash + 1);
  } else {
    *dir = strdup(".");
    *base = strdup(path);
  }
}

static void fire(uv_timer_t *t) {
  shadow_watch_t *w = t->data;
  w->cb(w->ud);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events,
                     int status) {
  dir_watch_t *d = h->data;
  shadow_watch_t *w = d->w;
  size_t idx = (size_t)(d - w->dirs);
  (void)events;
  if (status < 0) return;
  for (size_t i = 0; i < w->nnames; i++)
    if (w->name_dir[i] == idx &&
        (!filename || strcmp(filename, w->names[i]) == 0)) {
      uv_timer_start(&w->debounce, fire, w->debounce_ms, 0);
      return;
    }
}

static void free_watch(shadow_watch_t *w) {
  for (size_t i = 0; i < w->ndirs; i++)
    free(w->dirs[i].dir);
  for (size_t i = 0; i < w->nnames; i++)
    free(w->names[i]);
  free(w->dirs);
  free(w->names);
  free(w->name_dir);
  free(w);
}

static void on_close(uv_handle_t *h) {
  shadow_watch_t *w = h->data;
  if (h->type == UV_FS_EVENT) w = ((dir_watch_t *)h->data)->w;
  if (--w->open_handles == 0) free_watch(w);
}

int shadow_watch_start(uv_loop_t *loop, const char *const *paths, size_t n,
                       uint64_t debounce_ms, shadow_watch_cb cb, void *ud,
                       shadow_watch_t **out) {
  shadow_watch_t *w = calloc(1, sizeof(*w));
  if (!w) return -ENOMEM;
  w->dirs = calloc(n ? n : 1, sizeof(*w->dirs));
  w->names = calloc(n ? n : 1, sizeof(char *));
  w->name_dir = calloc(n ? n : 1, sizeof(size_t));
  if (!w->dirs || !w->names || !w->name_dir) {
    free_watch(w);
    return -ENOMEM;
  }
  w->debounce_ms = debounce_ms;
  w->cb = cb;
  w->ud = ud;
  for (size_t i = 0; i < n; i++) {
    char *dir, *base;
    split(paths[i], &dir, &base);
    if (!dir || !base) {
      free(dir);
      free(base);
      continue;
    }
    size_t j = 0;
    while (j < w->ndirs && strcmp(w->dirs[j].dir, dir) != 0)
      j++;
    if (j == w->ndirs) {
      w->dirs[j].dir = dir;
      w->dirs[j].w = w;
      w->ndirs++;
    } else {
      free(dir);
    }
    w->names[w->nnames] = base;
    w->name_dir[w->nnames++] = j;
  }
  uv_timer_init(loop, &w->debounce);
  w->debounce.data = w;
  w->open_handles = 1;
  for (size_t j = 0; j < w->ndirs; j++) {
    dir_watch_t *d = &w->dirs[j];
    uv_fs_event_init(loop, &d->ev);
    d->ev.data = d;
    w->open_handles++;
    /* A directory that cannot be watched only loses automatic reloads;
     * SIGHUP and POST /reload still work. */
    uv_fs_event_start(&d->ev, on_event, d->dir, 0);
  }
  *out = w;
  return 0;
}

void shadow_watch_stop(shadow_watch_t *w) {
  if (!w) return;
  uv_close((uv_handle_t *)&w->debounce, on_close);
  for (size_t j = 0; j < w->ndirs; j++)
    uv_close((uv_handle_t *)&w->dirs[j].ev, on_close);
}
