/* The signature table (see signatures.h): a hash of the signature's text
 * finds its entry, a doubly linked list keeps the entries from the most to
 * the least recently seen, and eviction takes the list's tail. Entries
 * live in one array sized at max_entries, so the table itself never grows
 * past what it was made for. */
#include "signatures.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define NIL UINT32_MAX

typedef struct entry_s {
  char *key; /* route '\n' parts '\n' field '\n' field ... */
  size_t key_len;
  size_t route_len; /* the route is key[0..route_len) */
  uint64_t hash;
  unsigned parts;
  uint64_t count;
  double first_ms, last_ms;
  char *exemplar;
  size_t exemplar_len;
  uint32_t prev, next; /* the recency list */
  uint32_t chain;      /* the next entry in the same hash slot */
} entry_t;

struct shadow_signatures_s {
  entry_t *v;
  size_t max_entries, max_bytes;
  uint32_t *slots; /* hash slot -> first entry of its chain, or NIL */
  size_t nslots;
  uint32_t head, tail; /* most and least recently seen */
  uint32_t free_list;  /* unused entries, through chain */
  size_t len, bytes;
  uint64_t evicted;
};

shadow_signatures_t *shadow_signatures_new(size_t max_entries,
                                           size_t max_bytes) {
  if (max_entries < 1) max_entries = 1;
  shadow_signatures_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->max_entries = max_entries;
  s->max_bytes = max_bytes;
  s->nslots = 16;
  while (s->nslots < max_entries * 2)
    s->nslots *= 2;
  s->v = calloc(max_entries, sizeof(*s->v));
  s->slots = malloc(s->nslots * sizeof(*s->slots));
  if (!s->v || !s->slots) {
    shadow_signatures_free(s);
    return NULL;
  }
  for (size_t i = 0; i < s->nslots; i++)
    s->slots[i] = NIL;
  for (size_t i = 0; i < max_entries; i++)
    s->v[i].chain = i + 1 < max_entries ? (uint32_t)(i + 1) : NIL;
  s->free_list = 0;
  s->head = s->tail = NIL;
  return s;
}

void shadow_signatures_free(shadow_signatures_t *s) {
  if (!s) return;
  if (s->v)
    for (size_t i = 0; i < s->max_entries; i++) {
      free(s->v[i].key);
      free(s->v[i].exemplar);
    }
  free(s->v);
  free(s->slots);
  free(s);
}

void shadow_signatures_reset(shadow_signatures_t *s) {
  if (!s) return;
  for (size_t i = 0; i < s->max_entries; i++) {
    free(s->v[i].key);
    free(s->v[i].exemplar);
    memset(&s->v[i], 0, sizeof(s->v[i]));
    s->v[i].chain = i + 1 < s->max_entries ? (uint32_t)(i + 1) : NIL;
  }
  for (size_t i = 0; i < s->nslots; i++)
    s->slots[i] = NIL;
  s->free_list = 0;
  s->head = s->tail = NIL;
  s->len = s->bytes = 0;
  s->evicted = 0;
}

static void list_unlink(shadow_signatures_t *s, uint32_t i) {
  entry_t *e = &s->v[i];
  if (e->prev != NIL)
    s->v[e->prev].next = e->next;
  else
    s->head = e->next;
  if (e->next != NIL)
    s->v[e->next].prev = e->prev;
  else
    s->tail = e->prev;
  e->prev = e->next = NIL;
}

static void list_push_front(shadow_signatures_t *s, uint32_t i) {
  entry_t *e = &s->v[i];
  e->prev = NIL;
  e->next = s->head;
  if (s->head != NIL) s->v[s->head].prev = i;
  s->head = i;
  if (s->tail == NIL) s->tail = i;
}

/* Takes entry i out of the table and back to the free list. */
static void drop(shadow_signatures_t *s, uint32_t i) {
  entry_t *e = &s->v[i];
  uint32_t *p = &s->slots[e->hash & (s->nslots - 1)];
  while (*p != i)
    p = &s->v[*p].chain;
  *p = e->chain;
  list_unlink(s, i);
  s->bytes -= e->key_len + e->exemplar_len;
  free(e->key);
  free(e->exemplar);
  memset(e, 0, sizeof(*e));
  e->chain = s->free_list;
  s->free_list = i;
  s->len--;
}

/* Evicts the least recently seen entries, sparing keep, until one more
 * entry and extra bytes fit. */
static void make_room(shadow_signatures_t *s, uint32_t keep, size_t extra,
                      int one_more) {
  while (s->tail != NIL) {
    int full = one_more && s->len >= s->max_entries;
    int heavy = s->bytes + extra > s->max_bytes;
    if (!full && !heavy) break;
    uint32_t victim = s->tail;
    if (victim == keep) victim = s->v[victim].prev;
    if (victim == NIL) break;
    drop(s, victim);
    s->evicted++;
  }
}

/* The signature's text: the route, the parts and the fields, one a line
 * (a route cannot hold a newline: the route hook's result is a header-
 * safe string, and fields are names and JSON Pointers). */
static int key_text(shadow_buf_t *b, const char *route, unsigned parts,
                    const char *fields, size_t nfields) {
  int rc = shadow_buf_puts(b, route ? route : "");
  rc |= shadow_buf_putc(b, '\n');
  rc |= shadow_buf_put_u64(b, parts); /* once per divergence: no printf */
  const char *f = fields;
  size_t i = 0;
  for (; i < nfields && i < SHADOW_SIGNATURE_FIELDS_MAX && f; i++) {
    rc |= shadow_buf_putc(b, '\n');
    rc |= shadow_buf_puts(b, f);
    f += strlen(f) + 1;
  }
  if (i < nfields) {
    rc |= shadow_buf_puts(b, "\n+");
    rc |= shadow_buf_put_u64(b, nfields - i);
    rc |= shadow_buf_puts(b, " more");
  }
  return rc ? -ENOMEM : 0;
}

int shadow_signatures_add(shadow_signatures_t *s, const char *route,
                          unsigned parts, const char *fields, size_t nfields,
                          double time_ms, const char *json, size_t len) {
  shadow_buf_t k = SHADOW_BUF_INIT;
  if (key_text(&k, route, parts, fields, nfields)) {
    shadow_buf_free(&k);
    return -ENOMEM;
  }
  uint64_t h = XXH3_64bits(k.data, k.len);
  uint32_t i = s->slots[h & (s->nslots - 1)];
  while (i != NIL && !(s->v[i].hash == h && s->v[i].key_len == k.len &&
                       memcmp(s->v[i].key, k.data, k.len) == 0))
    i = s->v[i].chain;
  int rc = 0;
  if (i == NIL) {
    make_room(s, NIL, k.len + len, 1);
    if (s->free_list == NIL) {
      shadow_buf_free(&k);
      return -ENOMEM; /* max_entries of 0 cannot happen: see new */
    }
    i = s->free_list;
    entry_t *e = &s->v[i];
    s->free_list = e->chain;
    e->hash = h;
    e->parts = parts;
    e->route_len = route ? strlen(route) : 0;
    e->first_ms = time_ms;
    e->key = shadow_buf_steal(&k, &e->key_len);
    uint32_t *slot = &s->slots[h & (s->nslots - 1)];
    e->chain = *slot;
    *slot = i;
    e->prev = e->next = NIL;
    list_push_front(s, i);
    s->len++;
    s->bytes += e->key_len;
  } else {
    shadow_buf_free(&k);
    list_unlink(s, i);
    list_push_front(s, i);
    entry_t *e = &s->v[i];
    if (len > e->exemplar_len) make_room(s, i, len - e->exemplar_len, 0);
  }
  entry_t *e = &s->v[i];
  e->count++;
  e->last_ms = time_ms;
  char *copy = malloc(len + 1);
  if (copy) {
    memcpy(copy, json, len);
    copy[len] = '\0';
    s->bytes -= e->exemplar_len;
    free(e->exemplar);
    e->exemplar = copy;
    e->exemplar_len = len;
    s->bytes += len;
  } else {
    rc = -ENOMEM; /* the count stands; the older exemplar stays */
  }
  return rc;
}

void shadow_signatures_each(const shadow_signatures_t *s,
                            void (*fn)(void *ud,
                                       const shadow_signature_view_t *v),
                            void *ud) {
  for (uint32_t i = s->tail; i != NIL; i = s->v[i].prev) {
    const entry_t *e = &s->v[i];
    shadow_signature_view_t v = {e->key,      e->key_len,     e->hash,
                                 e->count,    e->first_ms,    e->last_ms,
                                 e->exemplar, e->exemplar_len};
    fn(ud, &v);
  }
}

int shadow_signatures_put(shadow_signatures_t *s,
                          const shadow_signature_view_t *v) {
  /* The key's first line is the route, its second the parts. */
  const char *nl = memchr(v->key, '\n', v->key_len);
  if (!nl) return -EINVAL;
  uint64_t h = XXH3_64bits(v->key, v->key_len);
  uint32_t i = s->slots[h & (s->nslots - 1)];
  while (i != NIL && !(s->v[i].hash == h && s->v[i].key_len == v->key_len &&
                       memcmp(s->v[i].key, v->key, v->key_len) == 0))
    i = s->v[i].chain;
  if (i == NIL) {
    make_room(s, NIL, v->key_len + v->exemplar_len, 1);
    if (s->free_list == NIL) return -ENOMEM;
    char *key = shadow_bytes_dup(v->key, v->key_len);
    if (!key) return -ENOMEM;
    i = s->free_list;
    entry_t *e = &s->v[i];
    s->free_list = e->chain;
    e->hash = h;
    e->parts = (unsigned)strtoul(nl + 1, NULL, 10);
    e->route_len = (size_t)(nl - v->key);
    e->key = key;
    e->key_len = v->key_len;
    uint32_t *slot = &s->slots[h & (s->nslots - 1)];
    e->chain = *slot;
    *slot = i;
    e->prev = e->next = NIL;
    list_push_front(s, i);
    s->len++;
    s->bytes += e->key_len;
  } else {
    list_unlink(s, i);
    list_push_front(s, i);
  }
  entry_t *e = &s->v[i];
  e->count = v->count;
  e->first_ms = v->first_ms;
  e->last_ms = v->last_ms;
  if (v->exemplar) {
    char *copy = shadow_bytes_dup(v->exemplar, v->exemplar_len);
    if (!copy) return -ENOMEM;
    s->bytes -= e->exemplar_len;
    free(e->exemplar);
    e->exemplar = copy;
    e->exemplar_len = v->exemplar_len;
    s->bytes += v->exemplar_len;
  }
  return 0;
}

size_t shadow_signatures_len(const shadow_signatures_t *s) {
  return s->len;
}

uint64_t shadow_signatures_evicted(const shadow_signatures_t *s) {
  return s->evicted;
}

size_t shadow_signatures_bytes(const shadow_signatures_t *s) {
  return s->bytes;
}

size_t shadow_signatures_max(const shadow_signatures_t *s) {
  return s->max_entries;
}

static void put_time(shadow_buf_t *b, double ms) {
  if (!isfinite(ms) || ms < 0) ms = 0;
  int64_t total = (int64_t)ms;
  time_t secs = (time_t)(total / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  shadow_buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                    tm.tm_min, tm.tm_sec, (int)(total % 1000));
}

static void render_entry(shadow_buf_t *out, const entry_t *e) {
  static const char *const names[3] = {"status", "headers", "body"};
  shadow_buf_printf(out,
                    "{\"signature\":\"%016" PRIx64 "\",\"route\":", e->hash);
  shadow_buf_json_string(out, e->key, e->route_len, 0);
  shadow_buf_puts(out, ",\"parts\":[");
  int first = 1;
  for (int p = 0; p < 3; p++)
    if (e->parts & (1u << p)) {
      shadow_buf_printf(out, "%s\"%s\"", first ? "" : ",", names[p]);
      first = 0;
    }
  shadow_buf_puts(out, "],\"fields\":[");
  /* The fields are the key's lines after the route and the parts. */
  const char *p =
      memchr(e->key + e->route_len + 1, '\n', e->key_len - e->route_len - 1);
  const char *end = e->key + e->key_len;
  first = 1;
  while (p && p < end) {
    const char *f = p + 1;
    const char *nl = memchr(f, '\n', (size_t)(end - f));
    const char *fe = nl ? nl : end;
    if (!first) shadow_buf_putc(out, ',');
    first = 0;
    shadow_buf_json_string(out, f, (size_t)(fe - f), 0);
    p = nl;
  }
  shadow_buf_printf(out, "],\"count\":%" PRIu64 ",\"first_seen\":", e->count);
  put_time(out, e->first_ms);
  shadow_buf_puts(out, ",\"last_seen\":");
  put_time(out, e->last_ms);
  shadow_buf_puts(out, ",\"exemplar\":");
  if (e->exemplar)
    shadow_buf_append(out, e->exemplar, e->exemplar_len);
  else
    shadow_buf_puts(out, "null");
  shadow_buf_putc(out, '}');
}

int shadow_signatures_render(const shadow_signatures_t *s, shadow_buf_t *out,
                             size_t limit, const char *route,
                             size_t route_len) {
  size_t shown = 0, total = 0;
  shadow_buf_puts(out, "{\"divergences\":[");
  for (uint32_t i = s->head; i != NIL; i = s->v[i].next) {
    const entry_t *e = &s->v[i];
    if (route &&
        (e->route_len != route_len || memcmp(e->key, route, route_len) != 0))
      continue;
    total++;
    if (shown >= limit) continue;
    if (shown++) shadow_buf_putc(out, ',');
    render_entry(out, e);
  }
  return shadow_buf_printf(out, "],\"total\":%zu,\"evicted\":%" PRIu64 "}",
                           total, s->evicted);
}
