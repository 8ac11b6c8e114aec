/* The NDJSON sink's writer (see sink.h). Two buffers: pushes append to the
 * queue under the mutex; the writer swaps the queue for its own empty
 * buffer, lets go of the mutex, and writes. So a push waits at most for a
 * memcpy or a swap, never for write(2), rename(2) or open(2), which happen
 * only on the writer's thread. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "caches.h"
#include "clock.h"

/* The writer wakes early once this much is queued, so a burst is written
 * in large pieces and the queue rarely nears its cap. */
#define WAKE_BYTES (256u << 10)

const char *const shadow_sink_error_names[SHADOW_SINK_ERR_COUNT] = {
    "open", "write", "rotate", "queue_full"};

struct shadow_sink_s {
  uv_mutex_t mu;
  uv_cond_t wake, done;
  uv_thread_t thread;
  char *path;
  size_t queue_bytes;
  unsigned flush_ms;
  /* Under mu. */
  shadow_buf_t queue;
  uint64_t queued_lines;
  uint64_t max_bytes;
  unsigned keep;
  int stop, reopen, flush;
  uint64_t pushed, handled; /* lines pushed, and handled by the writer */
  shadow_sink_status_t st;
  /* The writer's own. */
  int fd;
};

static void set_error(shadow_sink_t *s, int reason, const char *what, int e) {
  uv_mutex_lock(&s->mu);
  s->st.errors[reason]++;
  snprintf(s->st.last_error, sizeof(s->st.last_error), "%s %s: %s", what,
           s->path, strerror(e));
  s->st.last_error_ms = shadow_wall_ms();
  uv_mutex_unlock(&s->mu);
}

static int open_file(shadow_sink_t *s) {
  if (s->fd >= 0) return 0;
  int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    set_error(s, SHADOW_SINK_ERR_OPEN, "cannot open", errno);
    return -1;
  }
  struct stat sb;
  uint64_t size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
  s->fd = fd;
  uv_mutex_lock(&s->mu);
  s->st.open = 1;
  s->st.file_bytes = size;
  uv_mutex_unlock(&s->mu);
  return 0;
}

static void close_file(shadow_sink_t *s) {
  if (s->fd < 0) return;
  close(s->fd);
  s->fd = -1;
  uv_mutex_lock(&s->mu);
  s->st.open = 0;
  uv_mutex_unlock(&s->mu);
}

/* file.<keep-1> -> file.<keep>, ..., file -> file.1, then a new file. */
static void rotate(shadow_sink_t *s, unsigned keep) {
  close_file(s);
  size_t n = strlen(s->path) + 16;
  char *from = malloc(n), *to = malloc(n);
  int failed = 0;
  if (from && to && keep > 0) {
    snprintf(to, n, "%s.%u", s->path, keep);
    unlink(to); /* the oldest goes */
    for (unsigned i = keep; i > 1; i--) {
      snprintf(from, n, "%s.%u", s->path, i - 1);
      snprintf(to, n, "%s.%u", s->path, i);
      if (rename(from, to) != 0 && errno != ENOENT) failed = errno;
    }
    snprintf(to, n, "%s.1", s->path);
    if (rename(s->path, to) != 0 && errno != ENOENT) failed = errno;
  } else if (keep == 0) {
    if (unlink(s->path) != 0 && errno != ENOENT) failed = errno;
  }
  free(from);
  free(to);
  if (failed) set_error(s, SHADOW_SINK_ERR_ROTATE, "cannot rotate", failed);
  uv_mutex_lock(&s->mu);
  s->st.rotations++;
  s->st.file_bytes = 0;
  uv_mutex_unlock(&s->mu);
}

static uint64_t count_lines(const char *p, size_t n) {
  uint64_t k = 0;
  for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
    k++;
  return k;
}

/* Writes p[0..n) whole or fails: a short write is continued; a failed one
 * drops the rest of this piece (counted), so one bad moment does not keep
 * the queue growing. Returns the bytes written. */
static size_t write_all(shadow_sink_t *s, const char *p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(s->fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : ENOSPC;
      set_error(s, SHADOW_SINK_ERR_WRITE, "cannot write", e);
      /* A line cut by the failure is ended, so the file stays one
       * record a line once the disk has room again. */
      if (done > 0 && p[done - 1] != '\n') {
        ssize_t ignored = write(s->fd, "\n", 1); /* counted above */
        (void)ignored;
      }
      uv_mutex_lock(&s->mu);
      s->st.dropped += count_lines(p + done, n - done);
      uv_mutex_unlock(&s->mu);
      close_file(s); /* a reopen may find room, or a new file */
      break;
    }
    done += (size_t)w;
  }
  return done;
}

/* Writes a batch of whole lines, rotating between lines so no file grows
 * past max_bytes (unless one line alone is larger). */
static void write_batch(shadow_sink_t *s, const char *p, size_t n,
                        uint64_t max_bytes, unsigned keep) {
  while (n > 0) {
    if (open_file(s) != 0) {
      uv_mutex_lock(&s->mu);
      s->st.dropped += count_lines(p, n);
      uv_mutex_unlock(&s->mu);
      return;
    }
    uv_mutex_lock(&s->mu);
    uint64_t size = s->st.file_bytes;
    uv_mutex_unlock(&s->mu);
    size_t take = n;
    if (max_bytes > 0 && size + n > max_bytes) {
      /* The longest run of whole lines that fits; a line larger than
       * max_bytes alone goes into a file of its own. */
      size_t room = size < max_bytes ? (size_t)(max_bytes - size) : 0;
      const char *nl = memchr(p, '\n', n);
      size_t first = nl ? (size_t)(nl - p) + 1 : n;
      take = 0;
      while (take < n) {
        nl = memchr(p + take, '\n', n - take);
        size_t end = nl ? (size_t)(nl - p) + 1 : n;
        if (end > room) break;
        take = end;
      }
      if (take == 0 && size > 0) {
        rotate(s, keep);
        continue;
      }
      if (take == 0) take = first;
    }
    size_t w = write_all(s, p, take);
    uv_mutex_lock(&s->mu);
    s->st.bytes += w;
    s->st.file_bytes += w;
    s->st.lines += count_lines(p, w);
    uv_mutex_unlock(&s->mu);
    if (w < take) return; /* the rest of the batch was counted dropped */
    p += take;
    n -= take;
  }
}

static void writer(void *arg) {
  shadow_sink_t *s = arg;
  shadow_buf_t batch = SHADOW_BUF_INIT;
  /* Opened at once, so /stats tells of a bad path before any record;
   * after that a closed file is opened again when there is something to
   * write, so a directory made later, or room on the disk, is picked up. */
  open_file(s);
  uv_mutex_lock(&s->mu);
  for (;;) {
    if (!s->stop && !s->reopen && !s->flush && s->queue.len < WAKE_BYTES)
      uv_cond_timedwait(&s->wake, &s->mu, (uint64_t)s->flush_ms * 1000000);
    shadow_buf_t t = s->queue;
    s->queue = batch;
    batch = t;
    uint64_t lines = s->queued_lines;
    s->queued_lines = 0;
    s->st.queued = 0;
    int stop = s->stop, reopen = s->reopen;
    s->reopen = s->flush = 0;
    uint64_t max_bytes = s->max_bytes;
    unsigned keep = s->keep;
    uv_mutex_unlock(&s->mu);

    if (reopen) {
      /* Before the batch: what is still queued goes to the new file,
       * which is what a logrotate that moved the old one expects. */
      close_file(s);
      uv_mutex_lock(&s->mu);
      s->st.reopens++;
      uv_mutex_unlock(&s->mu);
      open_file(s);
    }
    if (batch.len) write_batch(s, batch.data, batch.len, max_bytes, keep);
    shadow_buf_reset(&batch);
    uv_mutex_lock(&s->mu);
    s->handled += lines;
    uv_cond_broadcast(&s->done);
    if (stop && s->queue.len == 0) break;
  }
  uv_mutex_unlock(&s->mu);
  shadow_buf_free(&batch);
  close_file(s);
  shadow_engine_caches_clear(); /* what this thread kept ends with it */
}

int shadow_sink_new(const shadow_sink_opts_t *o, shadow_sink_t **out) {
  shadow_sink_t *s = calloc(1, sizeof(*s));
  if (!s) return -ENOMEM;
  s->path = strdup(o->path);
  if (!s->path) {
    free(s);
    return -ENOMEM;
  }
  s->fd = -1;
  s->max_bytes = o->max_bytes;
  s->keep = o->keep;
  s->queue_bytes = o->queue_bytes ? o->queue_bytes : SHADOW_SINK_QUEUE_BYTES;
  s->flush_ms = o->flush_ms ? o->flush_ms : SHADOW_SINK_FLUSH_MS;
  uv_mutex_init(&s->mu);
  uv_cond_init(&s->wake);
  uv_cond_init(&s->done);
  int rc = uv_thread_create(&s->thread, writer, s);
  if (rc) {
    uv_cond_destroy(&s->wake);
    uv_cond_destroy(&s->done);
    uv_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void shadow_sink_close(shadow_sink_t *s) {
  if (!s) return;
  uv_mutex_lock(&s->mu);
  s->stop = 1;
  uv_cond_signal(&s->wake);
  uv_mutex_unlock(&s->mu);
  uv_thread_join(&s->thread);
  uv_cond_destroy(&s->wake);
  uv_cond_destroy(&s->done);
  uv_mutex_destroy(&s->mu);
  shadow_buf_free(&s->queue);
  free(s->path);
  free(s);
}

void shadow_sink_push(shadow_sink_t *s, const char *line, size_t len) {
  uv_mutex_lock(&s->mu);
  s->pushed++;
  if (s->queue.len + len + 1 > s->queue_bytes ||
      shadow_buf_reserve(&s->queue, len + 1)) {
    s->st.errors[SHADOW_SINK_ERR_QUEUE]++;
    s->st.dropped++;
    s->handled++;
  } else {
    shadow_buf_append(&s->queue, line, len);
    shadow_buf_putc(&s->queue, '\n');
    s->queued_lines++;
    s->st.queued = s->queue.len;
    if (s->queue.len >= WAKE_BYTES) uv_cond_signal(&s->wake);
  }
  uv_mutex_unlock(&s->mu);
}

void shadow_sink_flush(shadow_sink_t *s) {
  uv_mutex_lock(&s->mu);
  s->flush = 1;
  uv_cond_signal(&s->wake);
  uv_mutex_unlock(&s->mu);
}

void shadow_sink_reopen(shadow_sink_t *s) {
  uv_mutex_lock(&s->mu);
  s->reopen = 1;
  uv_cond_signal(&s->wake);
  uv_mutex_unlock(&s->mu);
}

void shadow_sink_configure(shadow_sink_t *s, uint64_t max_bytes,
                           unsigned keep) {
  uv_mutex_lock(&s->mu);
  s->max_bytes = max_bytes;
  s->keep = keep;
  uv_mutex_unlock(&s->mu);
}

const char *shadow_sink_path(const shadow_sink_t *s) {
  return s->path;
}

void shadow_sink_status(shadow_sink_t *s, shadow_sink_status_t *out) {
  uv_mutex_lock(&s->mu);
  *out = s->st;
  uv_mutex_unlock(&s->mu);
}

void shadow_sink_sync(shadow_sink_t *s) {
  uv_mutex_lock(&s->mu);
  uint64_t target = s->pushed;
  s->flush = 1;
  uv_cond_signal(&s->wake);
  while (s->handled < target)
    uv_cond_wait(&s->done, &s->mu);
  uv_mutex_unlock(&s->mu);
}
