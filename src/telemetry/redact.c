/* Redaction (see redact.h): header values in records before the diff,
 * JSON values in the diff's ops after it. HMAC-SHA256 and the random
 * process key are OpenSSL's, which the daemon links for TLS already; the JSON
 * is the engine's parser, whose nodes keep their span in the text, so a mark is
 * spliced in place of a value and everything else stays byte for byte as the
 * engine wrote it. */
#include "redact.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"

#define MAX_SEGMENTS 64

typedef struct segment_s {
  char *s; /* unescaped; "*" matches anything */
  size_t n;
} segment_t;

typedef struct pointer_s {
  char *text;
  segment_t seg[MAX_SEGMENTS];
  size_t nseg;
} pointer_t;

struct shadow_redact_s {
  char **headers; /* lower case */
  size_t nheaders;
  uint64_t header_keys; /* bit name_key() of each name in headers */
  pointer_t *pointers;
  size_t npointers;
  unsigned char *key; /* redact.key, or NULL: the process's key */
  size_t key_len;
};

/* The process's key: made once, whichever worker loop marks first, and
 * the same for every config a reload brings, so marks stay comparable for
 * the life of the process. */
static unsigned char process_key[32];
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_make(void) {
  if (RAND_bytes(process_key, (int)sizeof process_key) != 1) {
    /* OpenSSL's generator has no entropy: marks must still not be a plain
     * hash, so fall back to the kernel's, which RAND_bytes reads too. */
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(process_key, 1, sizeof process_key, f) : 0;
    if (f) fclose(f);
    if (got != sizeof process_key) abort(); /* no randomness at all */
  }
}

shadow_redact_t *shadow_redact_new(void) {
  return calloc(1, sizeof(shadow_redact_t));
}

static void pointer_release(pointer_t *p) {
  free(p->text);
  for (size_t i = 0; i < p->nseg; i++)
    free(p->seg[i].s);
}

void shadow_redact_free(shadow_redact_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nheaders; i++)
    free(r->headers[i]);
  free(r->headers);
  for (size_t i = 0; i < r->npointers; i++)
    pointer_release(&r->pointers[i]);
  free(r->pointers);
  if (r->key) {
    OPENSSL_cleanse(r->key, r->key_len);
    free(r->key);
  }
  free(r);
}

/* A bit for a name's length, first and last letter (ASCII case folded),
 * spread by a multiplicative hash: with length and first letter alone,
 * Content-Type shared x-api-key's bit and Accept-Ranges authorization's,
 * so two lines of nearly every response were compared against the whole
 * list. */
static uint64_t name_key(const char *name, size_t n) {
  uint64_t first = (unsigned char)name[0] | 0x20;
  uint64_t last = (unsigned char)name[n - 1] | 0x20;
  uint64_t x = ((uint64_t)n << 16) | (first << 8) | last;
  return (uint64_t)1 << ((x * 0x9E3779B97F4A7C15ull) >> 58);
}

int shadow_redact_add_header(shadow_redact_t *r, const char *name) {
  size_t n = strlen(name);
  if (!shadow_header_name_valid(name, n)) return -EINVAL;
  for (size_t i = 0; i < r->nheaders; i++)
    if (strcasecmp(r->headers[i], name) == 0) return 0;
  char **v = realloc(r->headers, (r->nheaders + 1) * sizeof(*v));
  if (!v) return -ENOMEM;
  r->headers = v;
  char *copy = strdup(name);
  if (!copy) return -ENOMEM;
  for (char *p = copy; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  r->headers[r->nheaders++] = copy;
  r->header_keys |= name_key(copy, n);
  return 0;
}

int shadow_redact_add_defaults(shadow_redact_t *r) {
  static const char *const names[] = {"authorization", "proxy-authorization",
                                      "cookie",        "set-cookie",
                                      "x-api-key",     "x-auth-token"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    int rc = shadow_redact_add_header(r, names[i]);
    if (rc) return rc;
  }
  return 0;
}

/* Unescapes one pointer segment (~1 is '/', ~0 is '~', ~2 a NUL: field.h)
 * into a new string;
 * NULL when malformed or out of memory (*bad tells which). */
static char *unescape(const char *s, size_t n, size_t *out_len, int *bad) {
  char *o = malloc(n + 1);
  size_t k = 0;
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '~') {
      char e = i + 1 < n ? s[i + 1] : 0;
      if (e != '0' && e != '1' && e != '2') {
        free(o);
        *bad = 1;
        return NULL;
      }
      i++;
      o[k++] = e == '0' ? '~' : e == '1' ? '/' : '\0';
    } else {
      o[k++] = s[i];
    }
  }
  o[k] = '\0';
  *out_len = k;
  return o;
}

/* Splits an escaped pointer into unescaped segments. 0, -EINVAL, -ENOMEM. */
static int split(const char *ptr, size_t len, segment_t *seg, size_t *nseg) {
  *nseg = 0;
  if (len == 0) return 0; /* the whole document */
  if (ptr[0] != '/') return -EINVAL;
  size_t i = 1;
  for (;;) {
    const char *slash = memchr(ptr + i, '/', len - i);
    size_t e = slash ? (size_t)(slash - ptr) : len;
    if (*nseg >= MAX_SEGMENTS) return -EINVAL;
    int bad = 0;
    seg[*nseg].s = unescape(ptr + i, e - i, &seg[*nseg].n, &bad);
    if (!seg[*nseg].s) return bad ? -EINVAL : -ENOMEM;
    (*nseg)++;
    if (!slash) return 0;
    i = e + 1;
  }
}

int shadow_redact_add_json(shadow_redact_t *r, const char *pointer) {
  pointer_t p;
  memset(&p, 0, sizeof(p));
  int rc = split(pointer, strlen(pointer), p.seg, &p.nseg);
  if (rc == 0 && p.nseg == 0) rc = -EINVAL; /* the whole body: use ignore */
  if (rc == 0 && !(p.text = strdup(pointer))) rc = -ENOMEM;
  pointer_t *v =
      rc ? NULL : realloc(r->pointers, (r->npointers + 1) * sizeof(*v));
  if (!v) {
    pointer_release(&p);
    return rc ? rc : -ENOMEM;
  }
  r->pointers = v;
  r->pointers[r->npointers++] = p;
  return 0;
}

size_t shadow_redact_headers(const shadow_redact_t *r) {
  return r ? r->nheaders : 0;
}

size_t shadow_redact_pointers(const shadow_redact_t *r) {
  return r ? r->npointers : 0;
}

const char *shadow_redact_header(const shadow_redact_t *r, size_t i) {
  return i < r->nheaders ? r->headers[i] : NULL;
}

const char *shadow_redact_pointer(const shadow_redact_t *r, size_t i) {
  return i < r->npointers ? r->pointers[i].text : NULL;
}

int shadow_redact_set_key(shadow_redact_t *r, const char *key, size_t len) {
  if (len < SHADOW_REDACT_KEY_MIN) return -EINVAL;
  unsigned char *k = malloc(len);
  if (!k) return -ENOMEM;
  memcpy(k, key, len);
  if (r->key) {
    OPENSSL_cleanse(r->key, r->key_len);
    free(r->key);
  }
  r->key = k;
  r->key_len = len;
  return 0;
}

int shadow_redact_has_key(const shadow_redact_t *r) {
  return r && r->key != NULL;
}

void shadow_redact_mark(const shadow_redact_t *r, const char *value, size_t len,
                        char *out) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *key = r ? r->key : NULL;
  size_t key_len = r ? r->key_len : 0;
  if (!key) {
    pthread_once(&process_key_once, process_key_make);
    key = process_key;
    key_len = sizeof process_key;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  /* An empty value still has a mark: HMAC of no bytes. */
  if (!HMAC(EVP_sha256(), key, (int)key_len,
            (const unsigned char *)(len ? value : ""), len, md, &mdlen) ||
      mdlen < 8)
    memset(md, 0, 8); /* never: SHA-256 is always there */
  memcpy(out, "[redacted hmac-sha256:", 22);
  for (int i = 0; i < 8; i++) {
    out[22 + 2 * i] = hex[md[i] >> 4];
    out[23 + 2 * i] = hex[md[i] & 15];
  }
  out[38] = ']';
  out[39] = '\0';
}

/* --- headers ------------------------------------------------------------ */

static int header_redacted(const shadow_redact_t *r, const shadow_header_t *h) {
  /* Every header of every compared record comes here: most have a length
   * and first letter no redacted name has. */
  if (!h->name_len || !(r->header_keys & name_key(h->name, h->name_len)))
    return 0;
  for (size_t i = 0; i < r->nheaders; i++)
    if (shadow_header_name_is(h, r->headers[i])) return 1;
  return 0;
}

int shadow_redact_header_mark(const shadow_redact_t *r,
                              const shadow_header_t *h, char *out) {
  if (!r || !header_redacted(r, h)) return 0;
  shadow_redact_mark(r, h->value, h->value_len, out);
  return 1;
}

int shadow_redact_header_list(const shadow_redact_t *r, shadow_headers_t *in) {
  if (!r || r->nheaders == 0) return 0;
  size_t i = 0;
  while (i < in->n && !header_redacted(r, &in->v[i]))
    i++;
  if (i == in->n) return 0; /* the common case: nothing to do */
  /* Header strings live in chunks the list owns: build the list anew. */
  shadow_headers_t out = SHADOW_HEADERS_INIT;
  for (i = 0; i < in->n; i++) {
    const shadow_header_t *h = &in->v[i];
    char mark[SHADOW_REDACT_MARK_LEN + 1];
    const char *v = h->value;
    size_t vn = h->value_len;
    if (header_redacted(r, h)) {
      shadow_redact_mark(r, h->value, h->value_len, mark);
      v = mark;
      vn = SHADOW_REDACT_MARK_LEN;
    }
    if (shadow_headers_add(&out, h->name, h->name_len, v, vn)) {
      shadow_headers_free(&out);
      return -ENOMEM;
    }
  }
  shadow_headers_free(in);
  *in = out;
  return 0;
}

int shadow_redact_record(const shadow_redact_t *r, shadow_record_t *rec) {
  /* Trailers are headers sent late (gRPC's among them): the same names. */
  int rc = shadow_redact_header_list(r, &rec->headers);
  return rc ? rc : shadow_redact_header_list(r, &rec->trailers);
}

/* --- JSON in the diffs -------------------------------------------------- */

typedef struct edit_s {
  size_t start, end; /* the span replaced, in the wrapped text */
  char mark[SHADOW_REDACT_MARK_LEN + 3]; /* with its quotes */
} edit_t;

typedef struct edits_s {
  edit_t *v;
  size_t n, cap;
  const char *base;
  const shadow_redact_t *r;
  int oom;
  int document; /* a whole document: no value was cut by the value cap */
} edits_t;

static void edit_value(edits_t *e, const shadow_json_t *v) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 8;
    edit_t *nv = realloc(e->v, cap * sizeof(*nv));
    if (!nv) {
      e->oom = 1;
      return;
    }
    e->v = nv;
    e->cap = cap;
  }
  edit_t *x = &e->v[e->n++];
  x->start = (size_t)(v->raw - e->base);
  x->end = x->start + v->rawlen;
  x->mark[0] = '"';
  if (v->type == SHADOW_JSON_STRING)
    shadow_redact_mark(e->r, v->u.str, v->len, x->mark + 1);
  else
    shadow_redact_mark(e->r, v->raw, v->rawlen, x->mark + 1);
  x->mark[SHADOW_REDACT_MARK_LEN + 1] = '"';
  x->mark[SHADOW_REDACT_MARK_LEN + 2] = '\0';
}

static int seg_is(const segment_t *s, const char *k, size_t n) {
  return (s->n == 1 && s->s[0] == '*') ||
         (s->n == n && memcmp(s->s, k, n) == 0);
}

/* Marks what the pattern's segments from i on reach inside v. */
static void descend(edits_t *e, const shadow_json_t *v, const pointer_t *p,
                    size_t i) {
  if (i == p->nseg) {
    edit_value(e, v);
    return;
  }
  const segment_t *s = &p->seg[i];
  if (v->type == SHADOW_JSON_OBJECT) {
    for (uint32_t m = 0; m < v->len; m++)
      if (seg_is(s, v->u.members[m].key, v->u.members[m].klen))
        descend(e, &v->u.members[m].value, p, i + 1);
  } else if (v->type == SHADOW_JSON_ARRAY) {
    for (uint32_t m = 0; m < v->len; m++) {
      char idx[24];
      int n = snprintf(idx, sizeof(idx), "%u", m);
      if (seg_is(s, idx, (size_t)n)) descend(e, &v->u.items[m], p, i + 1);
    }
  } else if (v->type == SHADOW_JSON_STRING && v->len > 0 && !e->document) {
    /* A container cut to a string by the value cap (json_diff.h): what it
     * held cannot be told apart any more, so all of it goes. */
    edit_value(e, v);
  }
}

static const shadow_json_t *member(const shadow_json_t *obj, const char *k) {
  if (!obj || obj->type != SHADOW_JSON_OBJECT) return NULL;
  long i = shadow_json_member_find(obj, k, strlen(k));
  return i < 0 ? NULL : &obj->u.members[i].value;
}

/* The op at path: marks its values where a pattern reaches them. */
static void redact_op(const shadow_redact_t *r, edits_t *e,
                      const shadow_json_t *op) {
  const shadow_json_t *path = member(op, "path");
  if (!path || path->type != SHADOW_JSON_STRING) return;
  segment_t seg[MAX_SEGMENTS];
  size_t nseg = 0;
  if (split(path->u.str, path->len, seg, &nseg)) {
    for (size_t i = 0; i < nseg; i++)
      free(seg[i].s);
    e->oom = 1; /* a path the engine wrote is always a pointer */
    return;
  }
  static const char *const sides[] = {"primary", "candidate", "value"};
  for (size_t k = 0; k < r->npointers; k++) {
    const pointer_t *p = &r->pointers[k];
    size_t common = nseg < p->nseg ? nseg : p->nseg, i = 0;
    while (i < common && seg_is(&p->seg[i], seg[i].s, seg[i].n))
      i++;
    if (i < common) continue;
    for (size_t s = 0; s < 3; s++) {
      const shadow_json_t *v = member(op, sides[s]);
      if (v) descend(e, v, p, p->nseg <= nseg ? p->nseg : nseg);
    }
  }
  for (size_t i = 0; i < nseg; i++)
    free(seg[i].s);
}

static int by_start(const void *a, const void *b) {
  const edit_t *x = a, *y = b;
  if (x->start != y->start) return x->start < y->start ? -1 : 1;
  return x->end > y->end ? -1 : x->end < y->end; /* the wider one first */
}

int shadow_redact_diff(const shadow_redact_t *r, shadow_diff_result_t *res) {
  if (!r || r->npointers == 0 || !(res->parts & SHADOW_PART_BODY) ||
      !res->json.len)
    return 0;
  /* The parts are members without their braces: wrap them to parse. */
  shadow_buf_t text = SHADOW_BUF_INIT, out = SHADOW_BUF_INIT;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  edits_t e = {0};
  int rc = 0;
  if (shadow_buf_putc(&text, '{') ||
      shadow_buf_append(&text, res->json.data, res->json.len) ||
      shadow_buf_putc(&text, '}')) {
    rc = -ENOMEM;
    goto done;
  }
  shadow_json_t root;
  if (shadow_json_parse(&arena, text.data, text.len, &root, NULL, NULL)) {
    rc = 0; /* never: the engine writes valid JSON; leave it as it is */
    goto done;
  }
  e.base = text.data;
  e.r = r;
  const shadow_json_t *diffs = member(member(&root, "body"), "diffs");
  if (!diffs || diffs->type != SHADOW_JSON_ARRAY) goto done;
  for (uint32_t i = 0; i < diffs->len; i++)
    redact_op(r, &e, &diffs->u.items[i]);
  if (e.oom) {
    rc = -ENOMEM;
    goto done;
  }
  if (e.n == 0) goto done;
  qsort(e.v, e.n, sizeof(*e.v), by_start);
  /* Splice, skipping the edits inside one already made (the outermost
   * value is marked whole). Without the wrapping braces. */
  size_t at = 1, stop = text.len - 1;
  for (size_t i = 0; i < e.n; i++) {
    if (e.v[i].start < at) continue;
    if (shadow_buf_append(&out, text.data + at, e.v[i].start - at) ||
        shadow_buf_puts(&out, e.v[i].mark)) {
      rc = -ENOMEM;
      goto done;
    }
    at = e.v[i].end;
  }
  if (shadow_buf_append(&out, text.data + at, stop - at)) {
    rc = -ENOMEM;
    goto done;
  }
  shadow_buf_free(&res->json);
  res->json = out;
  out = (shadow_buf_t)SHADOW_BUF_INIT;
done:
  free(e.v);
  shadow_json_arena_free(&arena);
  shadow_buf_free(&text);
  shadow_buf_free(&out);
  return rc;
}

/* --- JSON documents ----------------------------------------------------- */

int shadow_redact_json(const shadow_redact_t *r, const char *text, size_t len,
                       shadow_buf_t *out) {
  if (!r || r->npointers == 0) return 0;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  edits_t e = {0};
  int rc = 0;
  shadow_json_t root;
  int prc = shadow_json_parse(&arena, text, len, &root, NULL, NULL);
  if (prc) {
    rc = prc;
    goto done;
  }
  e.base = text;
  e.r = r;
  e.document = 1;
  for (size_t k = 0; k < r->npointers; k++)
    descend(&e, &root, &r->pointers[k], 0);
  if (e.oom) {
    rc = -ENOMEM;
    goto done;
  }
  if (e.n == 0) goto done;
  qsort(e.v, e.n, sizeof(*e.v), by_start);
  shadow_buf_reset(out);
  size_t at = 0;
  for (size_t i = 0; i < e.n; i++) {
    if (e.v[i].start < at) continue; /* inside a value marked whole */
    if (shadow_buf_append(out, text + at, e.v[i].start - at) ||
        shadow_buf_puts(out, e.v[i].mark)) {
      rc = -ENOMEM;
      goto done;
    }
    at = e.v[i].end;
  }
  rc = shadow_buf_append(out, text + at, len - at) ? -ENOMEM : 1;
done:
  free(e.v);
  shadow_json_arena_free(&arena);
  return rc;
}
