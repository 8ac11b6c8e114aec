/* The fleet read back from the store's replies (see fleet_read.h): the
 * counts' hashes through fleet_counts, the signatures' fields regrouped by
 * id, the stream's entries, the instances' heartbeats. Touches nothing but
 * the new shadow_fleet_t. */
#include "fleet_read.h"

#include <stdlib.h>
#include <string.h>

#include "signatures.h"

/* The time a stored number says, or 0. */
double shadow_fleet_reply_num(const redisReply *x) {
  if (!x) return 0;
  if (x->type == REDIS_REPLY_INTEGER) return (double)x->integer;
  if (x->type == REDIS_REPLY_STRING) return strtod(x->str, NULL);
  return 0;
}

typedef struct sig_row_s {
  uint64_t hash;
  shadow_signature_view_t v;
} sig_row_t;

static int by_last(const void *a, const void *b) {
  const sig_row_t *x = a, *y = b;
  return x->v.last_ms < y->v.last_ms ? -1 : x->v.last_ms > y->v.last_ms;
}

/* One field of the sig hash: its id and its index in the reply. */
typedef struct sig_field_s {
  uint64_t hash;
  size_t at;
} sig_field_t;

static int by_hash(const void *a, const void *b) {
  const sig_field_t *x = a, *y = b;
  return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* The sig hash's fields, grouped by id (sorted, not searched: a thousand
 * signatures have five thousand fields), put back least recently seen
 * first so the table's recency order is the fleet's. */
static void fleet_sigs(shadow_signatures_t *sigs, const redisReply *h) {
  if (!h || h->type != REDIS_REPLY_ARRAY) return;
  size_t nf = 0, n = 0;
  sig_field_t *fields = calloc(h->elements / 2 + 1, sizeof(*fields));
  sig_row_t *rows = calloc(h->elements / 2 + 1, sizeof(*rows));
  if (!fields || !rows) {
    free(fields);
    free(rows);
    return;
  }
  for (size_t i = 0; i + 1 < h->elements; i += 2) {
    const redisReply *f = h->element[i], *v = h->element[i + 1];
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
        f->len < 18 || f->str[16] != SHADOW_FLEET_SEP)
      continue;
    fields[nf].hash = strtoull(f->str, NULL, 16);
    fields[nf++].at = i;
  }
  qsort(fields, nf, sizeof(*fields), by_hash);
  for (size_t k = 0; k < nf; k++) {
    if (n == 0 || rows[n - 1].hash != fields[k].hash)
      rows[n++].hash = fields[k].hash;
    const redisReply *f = h->element[fields[k].at];
    const redisReply *v = h->element[fields[k].at + 1];
    const char *what = f->str + 17;
    shadow_signature_view_t *sv = &rows[n - 1].v;
    if (strcmp(what, "count") == 0)
      sv->count = strtoull(v->str, NULL, 10);
    else if (strcmp(what, "first") == 0)
      sv->first_ms = strtod(v->str, NULL);
    else if (strcmp(what, "last") == 0)
      sv->last_ms = strtod(v->str, NULL);
    else if (strcmp(what, "key") == 0) {
      sv->key = v->str;
      sv->key_len = v->len;
    } else if (strcmp(what, "ex") == 0) {
      sv->exemplar = v->str;
      sv->exemplar_len = v->len;
    }
  }
  qsort(rows, n, sizeof(*rows), by_last);
  for (size_t i = 0; i < n; i++)
    if (rows[i].v.key && rows[i].v.count)
      shadow_signatures_put(sigs, &rows[i].v);
  free(fields);
  free(rows);
}

static void fleet_hash(shadow_stats_t *f, const redisReply *h, int kind) {
  if (!h || h->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < h->elements; i += 2) {
    const redisReply *k = h->element[i], *v = h->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
      continue;
    const char *name = k->str;
    size_t len = k->len;
    if (kind == SHADOW_FLEET_MAX) {
      /* "<instance>\x1f<name>": the largest over the instances. */
      const char *sep = memchr(name, SHADOW_FLEET_SEP, len);
      if (!sep) continue;
      len -= (size_t)(sep + 1 - name);
      name = sep + 1;
    }
    double d = strtod(v->str, NULL);
    uint64_t u = kind == SHADOW_FLEET_COUNT ? strtoull(v->str, NULL, 10) : 0;
    shadow_fleet_counts_add(f, kind, name, len, u, d);
  }
}

shadow_fleet_t *shadow_fleet_read(redisReply *const *r,
                                  const char *const *hook_names, size_t nhooks,
                                  size_t max_sigs, size_t log_capacity,
                                  uint64_t epoch, double now_ms) {
  shadow_fleet_t *fl = calloc(1, sizeof(*fl));
  if (!fl) return NULL;
  fl->stats = shadow_stats_new(hook_names, nhooks);
  fl->ring = shadow_ring_new(log_capacity ? log_capacity : 1);
  if (fl->stats) {
    fl->stats->signatures =
        shadow_signatures_new(max_sigs, SHADOW_SIGNATURES_BYTES);
    shadow_stats_set_loops(fl->stats, 1);
  }
  if (!fl->stats || !fl->ring || !fl->stats->signatures) {
    shadow_fleet_free(fl);
    return NULL;
  }
  shadow_stats_t *f = fl->stats;
  size_t base = 0;
  fleet_hash(f, r[base], SHADOW_FLEET_COUNT);
  fleet_hash(f, r[base + 1], SHADOW_FLEET_FLOAT);
  fleet_hash(f, r[base + 2], SHADOW_FLEET_MAX);
  shadow_fleet_counts_finish(f);
  fleet_sigs(f->signatures, r[base + 3]);
  const redisReply *log = r[base + 4];
  if (log && log->type == REDIS_REPLY_ARRAY)
    /* Newest first from XREVRANGE; the ring wants them oldest first. */
    for (size_t i = log->elements; i-- > 0;) {
      const redisReply *e = log->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
      const redisReply *kv = e->element[1];
      const char *d = NULL, *route = "";
      size_t dl = 0, rl = 0;
      for (size_t j = 0; kv->type == REDIS_REPLY_ARRAY && j + 1 < kv->elements;
           j += 2) {
        const redisReply *k = kv->element[j], *v = kv->element[j + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
          continue;
        if (strcmp(k->str, "d") == 0) {
          d = v->str;
          dl = v->len;
        } else if (strcmp(k->str, "r") == 0) {
          route = v->str;
          rl = v->len;
        }
      }
      if (d) shadow_ring_push(fl->ring, d, dl, route, rl);
    }
  const redisReply *inst = r[base + 5];
  double now = now_ms;
  if (inst && inst->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i + 1 < inst->elements; i += 2) {
      const redisReply *v = inst->element[i + 1];
      const char *p =
          v->type == REDIS_REPLY_STRING ? strstr(v->str, "\"last_ms\":") : NULL;
      if (p && now - strtod(p + 10, NULL) <= 60000) fl->instances++;
    }
  fl->epoch = epoch;
  fl->built_ms = now;
  return fl;
}
