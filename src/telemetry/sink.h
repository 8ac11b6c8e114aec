/* The NDJSON sink (log.file): divergence records, one a line, written by a
 * thread of its own so the event loops never wait for a disk. A push
 * copies the line into memory and returns; the writer takes what is queued
 * at least once a second (and as soon as a good amount is waiting), writes
 * it, rotates the file by size (file -> file.1 -> ... -> file.<keep>), and
 * reopens it when asked (SIGUSR1, after an outside logrotate moved it).
 * Nothing here is fatal: a file that cannot be opened or written (a full
 * disk, a missing directory) is counted by reason, its last error is kept
 * for /stats, and the writer tries again on its next round; lines that
 * arrive while the queue is full are dropped and counted. */
#ifndef SHADOW_SINK_H
#define SHADOW_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct shadow_sink_s shadow_sink_t;

typedef struct shadow_sink_opts_s {
  const char *path;
  uint64_t max_bytes; /* rotate past this size; 0: never */
  unsigned keep;      /* rotated files kept */
  size_t queue_bytes; /* lines waiting beyond this are dropped */
  unsigned flush_ms;  /* the writer's longest wait between rounds */
} shadow_sink_opts_t;

/* The defaults of log.max_bytes and log.keep, and the sink's own. No
 * rotation unless asked for: rotating deletes the oldest records, which a
 * config should say it wants. */
#define SHADOW_SINK_MAX_BYTES 0
#define SHADOW_SINK_KEEP 5
#define SHADOW_SINK_QUEUE_BYTES (8u << 20)
#define SHADOW_SINK_FLUSH_MS 1000

/* Why a line did not reach the disk, for shadow_sink_errors_total. */
enum {
  SHADOW_SINK_ERR_OPEN = 0, /* the file could not be opened */
  SHADOW_SINK_ERR_WRITE,    /* a write failed (a full disk) */
  SHADOW_SINK_ERR_ROTATE,   /* a rename while rotating failed */
  SHADOW_SINK_ERR_QUEUE,    /* the queue was full: lines dropped */
  SHADOW_SINK_ERR_COUNT
};

typedef struct shadow_sink_status_s {
  uint64_t lines, bytes; /* written */
  uint64_t dropped;      /* lines lost to errors or a full queue */
  uint64_t errors[SHADOW_SINK_ERR_COUNT];
  uint64_t rotations, reopens;
  uint64_t file_bytes; /* the current file's size */
  size_t queued;       /* bytes waiting */
  int open;            /* the file is open */
  char last_error[160];
  double last_error_ms; /* wall clock; 0 when none */
} shadow_sink_status_t;

/* The name of each SHADOW_SINK_ERR_* reason. */
extern const char *const shadow_sink_error_names[SHADOW_SINK_ERR_COUNT];

/* Starts the writer for opts (path copied). Opening the file happens on
 * the writer's thread: a path that cannot be opened is an error counted
 * there, not here. 0, or -ENOMEM or a libuv error. */
int shadow_sink_new(const shadow_sink_opts_t *opts, shadow_sink_t **out);
/* Writes what is queued, stops the writer and frees it. NULL is fine. */
void shadow_sink_close(shadow_sink_t *s);

/* Queues one line (a newline is added). Never blocks on the disk. */
void shadow_sink_push(shadow_sink_t *s, const char *line, size_t len);
/* Asks the writer to write what is queued now. */
void shadow_sink_flush(shadow_sink_t *s);
/* Asks the writer to close and reopen the file (after what is queued). */
void shadow_sink_reopen(shadow_sink_t *s);
/* New rotation settings for the same path (a reload). */
void shadow_sink_configure(shadow_sink_t *s, uint64_t max_bytes, unsigned keep);
const char *shadow_sink_path(const shadow_sink_t *s);
void shadow_sink_status(shadow_sink_t *s, shadow_sink_status_t *out);
/* Waits until everything pushed so far has been handled (written or
 * counted as an error): for tests and shutdown. */
void shadow_sink_sync(shadow_sink_t *s);

#endif
