/* Formats one divergence record (the shape the README shows) from the diff
 * result and what the dispatcher knows about the request. Pure. */
#ifndef SHADOW_DIVERGENCE_H
#define SHADOW_DIVERGENCE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "diff.h"

/* A hard cap on one formatted record; see divergence.c for how it is met. */
#define SHADOW_DIVERGENCE_MAX_BYTES (64 * 1024)

typedef struct shadow_divergence_meta_s {
  uint64_t id;
  double time_ms;    /* Unix epoch, milliseconds */
  const char *route; /* NULL-able strings, NUL-terminated */
  const char *method;
  const char *path;                /* path and query as the client sent it */
  const char *key;                 /* sampling key, NULL when none */
  double primary_ms, candidate_ms; /* to the last byte; < 0: unknown */
  double primary_first_ms, candidate_first_ms; /* to the first byte */
  const char *const *noise; /* NULL-terminated list, or NULL */
} shadow_divergence_meta_t;

/* Appends {"id":..,"time":..,...,"latency_ms":{..}} to out. */
int shadow_divergence_format(shadow_buf_t *out,
                             const shadow_divergence_meta_t *meta,
                             const shadow_diff_result_t *res);

#endif
