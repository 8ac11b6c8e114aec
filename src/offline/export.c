/* `shadowd export` (see export.h): HAR 1.2 from capture files, and
 * `shadowd diff` fixtures from divergence records; replay writes its
 * fixtures through the same two functions. */
#include "export.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture_line.h"
#include "capture_read.h"
#include "file.h"
#include "json.h"
#include "server.h"

/* --- fixtures ------------------------------------------------------------ */

int shadow_fixture_format(shadow_buf_t *out, const shadow_record_t *rec) {
  shadow_buf_reset(out);
  const char *reason = shadow_http_reason(rec->status);
  int rc = shadow_buf_printf(out, "HTTP/1.1 %d%s%s\r\n", rec->status,
                             *reason ? " " : "", reason);
  for (size_t i = 0; !rc && i < rec->headers.n; i++) {
    const shadow_header_t *h = &rec->headers.v[i];
    /* Framing describes the bytes as they travelled, not this file. */
    if (shadow_header_is_hop(h->name, h->name_len)) continue;
    rc = shadow_buf_append(out, h->name, h->name_len) ||
         shadow_buf_puts(out, ": ") ||
         shadow_buf_append(out, h->value, h->value_len) ||
         shadow_buf_puts(out, "\r\n");
  }
  if (!rc)
    rc = shadow_buf_printf(out, "content-length: %zu\r\n\r\n", rec->body.len) ||
         shadow_buf_append(out, rec->body.data ? rec->body.data : "",
                           rec->body.len);
  return rc ? -ENOMEM : 0;
}

static int write_file(const char *path, const char *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -errno;
  int rc = fwrite(data, 1, n, f) == n ? 0 : -errno;
  if (fclose(f) != 0 && rc == 0) rc = -errno;
  return rc;
}

/* The name of a case: its id, then its route and path with everything
 * but letters, digits, '.', '_' and '-' as '_', at most 60 of them. */
static void case_name(char *out, size_t cap, uint64_t id, const char *route,
                      const char *path) {
  int k = snprintf(out, cap, "%04llu-", (unsigned long long)id);
  size_t at = k > 0 ? (size_t)k : 0, used = 0;
  const char *parts[2] = {route ? route : "", path ? path : ""};
  for (int p = 0; p < 2; p++) {
    for (const char *s = parts[p]; *s && used < 60 && at + 1 < cap; s++) {
      char c = *s;
      int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok && at > 0 && out[at - 1] == '_') continue;
      out[at++] = ok ? c : '_';
      used++;
    }
    if (p == 0 && at + 1 < cap && parts[1][0]) out[at++] = '_';
  }
  while (at > 0 && out[at - 1] == '_')
    at--;
  out[at] = '\0';
}

int shadow_fixture_write_pair(const char *dir, uint64_t id, const char *route,
                              const char *path, const shadow_buf_t *primary,
                              const shadow_buf_t *candidate, const char *record,
                              size_t record_len, char *err, size_t errlen) {
  char name[96], file[4096];
  case_name(name, sizeof(name), id, route, path);
  snprintf(file, sizeof(file), "%s/%s", dir, name);
  if (mkdir(file, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "%s: %s", file, strerror(errno));
    return -1;
  }
  static const char *const names[] = {"primary.http", "candidate.http",
                                      "divergence.json"};
  const char *data[3] = {primary->data ? primary->data : "",
                         candidate->data ? candidate->data : "", record};
  size_t len[3] = {primary->len, candidate->len, record_len};
  for (int i = 0; i < 3; i++) {
    snprintf(file, sizeof(file), "%s/%s/%s", dir, name, names[i]);
    int rc = write_file(file, data[i], len[i]);
    if (rc == 0 && i == 2) {
      /* The record ends its file with a newline, as NDJSON would. */
      FILE *f = fopen(file, "ab");
      rc = f && fputc('\n', f) != EOF ? 0 : -EIO;
      if (f) fclose(f);
    }
    if (rc) {
      snprintf(err, errlen, "%s: %s", file, strerror(-rc));
      return -1;
    }
  }
  return 0;
}

/* --- a pair from a divergence record ------------------------------------ */

/* A JSON document built from (pointer, value) pairs. */
typedef struct node_s node_t;
struct node_s {
  int kind;      /* N_UNSET, N_OBJECT, N_ARRAY, N_VALUE */
  char *key;     /* in an object */
  char *raw;     /* N_VALUE: compact JSON */
  node_t **kids; /* objects: members in order; arrays: by index */
  size_t n, cap;
};

enum { N_UNSET = 0, N_OBJECT, N_ARRAY, N_VALUE };

static void node_free(node_t *x) {
  if (!x) return;
  for (size_t i = 0; i < x->n; i++)
    node_free(x->kids[i]);
  free(x->kids);
  free(x->key);
  free(x->raw);
  free(x);
}

static int is_index(const char *s, size_t n, size_t *out) {
  if (n == 0 || n > 9 || (n > 1 && s[0] == '0')) return 0;
  size_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (size_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

static int grow(node_t *x, size_t n) {
  if (n <= x->cap) return 0;
  size_t cap = x->cap ? x->cap * 2 : 4;
  while (cap < n)
    cap *= 2;
  node_t **v = realloc(x->kids, cap * sizeof(*v));
  if (!v) return -1;
  memset(v + x->cap, 0, (cap - x->cap) * sizeof(*v));
  x->kids = v;
  x->cap = cap;
  return 0;
}

/* The child of x named by segment s (unescaped), made when missing;
 * x becomes an array when s is an index and x is new. With pad, an
 * array is filled with nulls up to the index, so both sides of a pair
 * agree on the elements before it. NULL on a conflict or out of memory. */
static node_t *child(node_t *x, const char *s, size_t n) {
  size_t idx;
  if (x->kind == N_UNSET) x->kind = is_index(s, n, &idx) ? N_ARRAY : N_OBJECT;
  if (x->kind == N_ARRAY) {
    if (!is_index(s, n, &idx) || idx > 100000 || grow(x, idx + 1)) return NULL;
    if (x->n < idx + 1) x->n = idx + 1;
    if (!x->kids[idx]) x->kids[idx] = calloc(1, sizeof(node_t));
    return x->kids[idx];
  }
  if (x->kind != N_OBJECT) return NULL;
  for (size_t i = 0; i < x->n; i++)
    if (strlen(x->kids[i]->key) == n && memcmp(x->kids[i]->key, s, n) == 0)
      return x->kids[i];
  if (grow(x, x->n + 1)) return NULL;
  node_t *c = calloc(1, sizeof(node_t));
  if (!c || !(c->key = strndup(s, n))) {
    free(c);
    return NULL;
  }
  x->kids[x->n++] = c;
  return c;
}

/* Unescapes one pointer segment (~1 '/', ~0 '~', ~2 NUL: field.h) into
 * buf. */
static size_t unescape(const char *s, size_t n, char *buf, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 1 < cap; i++) {
    char e = s[i] == '~' && i + 1 < n ? s[i + 1] : 0;
    if (e == '0' || e == '1' || e == '2') {
      buf[k++] = e == '0' ? '~' : e == '1' ? '/' : '\0';
      i++;
    } else {
      buf[k++] = s[i];
    }
  }
  buf[k] = '\0';
  return k;
}

/* Walks pointer p in root, making what is missing; the node at its end,
 * or NULL. The root pointer "" is the document itself. */
static node_t *walk(node_t *root, const char *p, size_t n) {
  node_t *x = root;
  size_t i = 0;
  if (n && p[0] == '/')
    i = 1;
  else if (n)
    return NULL;
  while (n && i <= n && x) {
    const char *slash = memchr(p + i, '/', n - i);
    size_t e = slash ? (size_t)(slash - p) : n;
    char seg[1024];
    size_t sl = unescape(p + i, e - i, seg, sizeof(seg));
    x = child(x, seg, sl);
    if (!slash) break;
    i = e + 1;
  }
  return x;
}

/* The containers on p's way exist in doc, the last one of the kind its
 * last segment asks for, and an array padded with nulls up to that index:
 * both sides of a pair then agree on everything but p itself. */
static void parents(node_t *doc, const char *p, size_t n) {
  const char *last = n ? memrchr(p, '/', n) : NULL;
  if (!last) return;
  node_t *x = last == p ? doc : walk(doc, p, (size_t)(last - p));
  if (!x) return;
  char seg[1024];
  size_t sl = unescape(last + 1, n - (size_t)(last + 1 - p), seg, sizeof(seg));
  size_t idx;
  int index = is_index(seg, sl, &idx);
  if (x->kind == N_UNSET) x->kind = index ? N_ARRAY : N_OBJECT;
  if (x->kind == N_ARRAY && index && idx <= 100000 && x->n < idx &&
      grow(x, idx) == 0)
    x->n = idx;
}

static int set_value(node_t *doc, const char *p, size_t n, const char *raw,
                     size_t rawlen) {
  node_t *x = walk(doc, p, n);
  if (!x || x->kind == N_OBJECT || x->kind == N_ARRAY) return -1;
  x->kind = N_VALUE;
  free(x->raw);
  x->raw = strndup(raw, rawlen);
  return x->raw ? 0 : -1;
}

static void node_write(shadow_buf_t *b, const node_t *x) {
  if (!x || x->kind == N_UNSET) {
    shadow_buf_puts(b, "null");
    return;
  }
  if (x->kind == N_VALUE) {
    shadow_buf_puts(b, x->raw);
    return;
  }
  shadow_buf_putc(b, x->kind == N_ARRAY ? '[' : '{');
  for (size_t i = 0; i < x->n; i++) {
    if (i) shadow_buf_putc(b, ',');
    if (x->kind == N_OBJECT) {
      shadow_buf_json_string(b, x->kids[i]->key, strlen(x->kids[i]->key), 0);
      shadow_buf_putc(b, ':');
    }
    const node_t *c = x->kids[i];
    if (x->kind == N_ARRAY && (!c || c->kind == N_UNSET))
      shadow_buf_puts(b, "null");
    else
      node_write(b, c);
  }
  shadow_buf_putc(b, x->kind == N_ARRAY ? ']' : '}');
}

static const shadow_json_t *field(const shadow_json_t *obj, const char *k) {
  if (!obj || obj->type != SHADOW_JSON_OBJECT) return NULL;
  long i = shadow_json_member_find(obj, k, strlen(k));
  return i < 0 ? NULL : &obj->u.members[i].value;
}

static int str_is(const shadow_json_t *v, const char *s) {
  return v && v->type == SHADOW_JSON_STRING && v->len == strlen(s) &&
         memcmp(v->u.str, s, v->len) == 0;
}

/* Adds a header's values as the record shows them: a string, an array
 * of strings, or null (absent). */
static void add_header_values(shadow_record_t *rec, const shadow_json_t *name,
                              const shadow_json_t *v) {
  if (!v || v->type == SHADOW_JSON_NULL) return;
  if (v->type == SHADOW_JSON_STRING) {
    shadow_headers_add(&rec->headers, name->u.str, name->len,
                       v->len ? v->u.str : "", v->len);
    return;
  }
  for (uint32_t i = 0; v->type == SHADOW_JSON_ARRAY && i < v->len; i++)
    add_header_values(rec, name, &v->u.items[i]);
}

/* The body parts of a pair from the record's JSON diffs. */
static void json_bodies(const shadow_json_t *ops, node_t *pdoc, node_t *cdoc) {
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  for (uint32_t i = 0; ops && ops->type == SHADOW_JSON_ARRAY && i < ops->len;
       i++) {
    const shadow_json_t *op = &ops->u.items[i];
    const shadow_json_t *path = field(op, "path");
    if (!path || path->type != SHADOW_JSON_STRING) continue;
    const char *p = path->len ? path->u.str : "";
    if (str_is(field(op, "op"), "move")) {
      /* An element that changed place: the same marker at each place. */
      const shadow_json_t *from = field(op, "from");
      if (!from || from->type != SHADOW_JSON_STRING) continue;
      parents(pdoc, from->u.str, from->len);
      parents(cdoc, from->u.str, from->len);
      parents(pdoc, p, path->len);
      parents(cdoc, p, path->len);
      set_value(pdoc, from->u.str, from->len, "\"moved\"", 7);
      set_value(cdoc, p, path->len, "\"moved\"", 7);
      continue;
    }
    /* Both sides get the containers, so the difference is where the
     * record says it is and not higher up. */
    parents(pdoc, p, path->len);
    parents(cdoc, p, path->len);
    const shadow_json_t *pv = field(op, "primary"),
                        *cv = field(op, "candidate");
    if (pv) {
      shadow_buf_reset(&tmp);
      shadow_json_write(&tmp, pv);
      set_value(pdoc, p, path->len, tmp.data, tmp.len);
    }
    if (cv) {
      shadow_buf_reset(&tmp);
      shadow_json_write(&tmp, cv);
      set_value(cdoc, p, path->len, tmp.data, tmp.len);
    }
  }
  shadow_buf_free(&tmp);
}

/* The pair of records a divergence record describes. */
static void records_of(const shadow_json_t *d, shadow_record_t *p,
                       shadow_record_t *c) {
  const shadow_json_t *st = field(d, "status");
  const shadow_json_t *sp = field(st, "primary"), *sc = field(st, "candidate");
  p->status =
      sp && sp->type == SHADOW_JSON_NUMBER ? (int)shadow_json_number(sp) : 200;
  c->status = sc && sc->type == SHADOW_JSON_NUMBER ? (int)shadow_json_number(sc)
                                                   : p->status;
  const shadow_json_t *hd = field(field(d, "headers"), "diffs");
  for (uint32_t i = 0; hd && hd->type == SHADOW_JSON_ARRAY && i < hd->len;
       i++) {
    const shadow_json_t *h = &hd->u.items[i], *name = field(h, "name");
    if (!name || name->type != SHADOW_JSON_STRING ||
        !shadow_header_name_valid(name->u.str, name->len))
      continue;
    add_header_values(p, name, field(h, "primary"));
    add_header_values(c, name, field(h, "candidate"));
  }
  const shadow_json_t *body = field(d, "body");
  const shadow_json_t *differs = field(body, "differs");
  if (!differs || differs->type != SHADOW_JSON_TRUE) return;
  if (str_is(field(body, "kind"), "json")) {
    node_t *pdoc = calloc(1, sizeof(node_t)), *cdoc = calloc(1, sizeof(node_t));
    if (pdoc && cdoc) {
      json_bodies(field(body, "diffs"), pdoc, cdoc);
      node_write(&p->body, pdoc);
      node_write(&c->body, cdoc);
      shadow_headers_add(&p->headers, "content-type", 12, "application/json",
                         16);
      shadow_headers_add(&c->headers, "content-type", 12, "application/json",
                         16);
    }
    node_free(pdoc);
    node_free(cdoc);
  } else {
    /* The record has the bodies' lengths and digests, not their bytes:
     * two bodies that differ stand in for them. */
    shadow_buf_puts(&p->body, "(the primary's body is not in the record)\n");
    shadow_buf_puts(&c->body, "(the candidate's body is not in the record)\n");
  }
}

typedef struct fixtures_s {
  const char *dir;
  uint64_t cases, bad;
  shadow_buf_t pf, cf, rec;
} fixtures_t;

/* One record (or a grouped entry, whose exemplar is the record). */
static void fixture_of(fixtures_t *fx, const shadow_json_t *d,
                       const char *where, size_t line) {
  const shadow_json_t *ex = field(d, "exemplar");
  if (ex && ex->type == SHADOW_JSON_OBJECT) d = ex;
  if (!d || d->type != SHADOW_JSON_OBJECT || !field(d, "status")) {
    fprintf(stderr, "%s:%zu: not a divergence record: skipped\n", where, line);
    fx->bad++;
    return;
  }
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  records_of(d, &p, &c);
  const shadow_json_t *id = field(d, "id"), *route = field(d, "route"),
                      *path = field(d, "path");
  char rs[1024] = "", ps[1024] = "";
  if (route && route->type == SHADOW_JSON_STRING)
    snprintf(rs, sizeof(rs), "%.*s",
             (int)(route->len < 1000 ? route->len : 1000), route->u.str);
  if (path && path->type == SHADOW_JSON_STRING)
    snprintf(ps, sizeof(ps), "%.*s", (int)(path->len < 1000 ? path->len : 1000),
             path->u.str);
  uint64_t n = id && id->type == SHADOW_JSON_NUMBER
                   ? (uint64_t)shadow_json_number(id)
                   : fx->cases + 1;
  shadow_buf_reset(&fx->rec);
  shadow_json_write(&fx->rec, d);
  char err[256];
  if (shadow_fixture_format(&fx->pf, &p) ||
      shadow_fixture_format(&fx->cf, &c) ||
      shadow_fixture_write_pair(fx->dir, n, rs, ps, &fx->pf, &fx->cf,
                                fx->rec.data, fx->rec.len, err,
                                sizeof(err)) != 0) {
    fprintf(stderr, "shadowd export: %s\n", err);
    fx->bad++;
  } else {
    fx->cases++;
  }
  shadow_record_release(&p);
  shadow_record_release(&c);
}

static int export_fixtures(const char *dir, char **files, int n) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "shadowd export: %s: %s\n", dir, strerror(errno));
    return 2;
  }
  fixtures_t fx = {
      dir, 0, 0, SHADOW_BUF_INIT, SHADOW_BUF_INIT, SHADOW_BUF_INIT};
  int failed = 0;
  for (int i = 0; i < n; i++) {
    shadow_buf_t text = SHADOW_BUF_INIT;
    int rc = shadow_file_read(files[i], &text);
    if (rc) {
      fprintf(stderr, "shadowd export: %s: %s\n", files[i], strerror(-rc));
      shadow_buf_free(&text);
      failed = 1;
      continue;
    }
    shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
    shadow_json_t root;
    const char *t = text.data ? text.data : "";
    /* A whole document: /divergences's answer, or one record. */
    if (shadow_json_parse(&arena, t, text.len, &root, NULL, NULL) == 0) {
      const shadow_json_t *list = field(&root, "divergences");
      if (list && list->type == SHADOW_JSON_ARRAY)
        for (uint32_t k = 0; k < list->len; k++)
          fixture_of(&fx, &list->u.items[k], files[i], k + 1);
      else
        fixture_of(&fx, &root, files[i], 1);
    } else {
      /* NDJSON: one record a line. */
      size_t line = 0;
      for (const char *s = t, *end = t + text.len; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
        line++;
        shadow_json_arena_t la = SHADOW_JSON_ARENA_INIT;
        shadow_json_t rec;
        if (len && shadow_json_parse(&la, s, len, &rec, NULL, NULL) == 0) {
          fixture_of(&fx, &rec, files[i], line);
        } else if (len) {
          fprintf(stderr, "%s:%zu: not JSON: skipped\n", files[i], line);
          fx.bad++;
        }
        shadow_json_arena_free(&la);
        s = nl ? nl + 1 : end;
      }
    }
    shadow_json_arena_free(&arena);
    shadow_buf_free(&text);
  }
  fprintf(stderr, "shadowd export: %llu case%s written to %s%s\n",
          (unsigned long long)fx.cases, fx.cases == 1 ? "" : "s", dir,
          fx.bad ? " (some entries skipped, see above)" : "");
  shadow_buf_free(&fx.pf);
  shadow_buf_free(&fx.cf);
  shadow_buf_free(&fx.rec);
  return failed || fx.cases == 0 ? 2 : 0;
}

/* --- HAR ----------------------------------------------------------------- */

static void har_string(shadow_buf_t *b, const char *s, size_t n) {
  shadow_buf_json_string(b, s ? s : "", s ? n : 0, 0);
}

static void har_headers(shadow_buf_t *b, const shadow_headers_t *h) {
  shadow_buf_puts(b, "[");
  for (size_t i = 0; i < h->n; i++) {
    if (i) shadow_buf_putc(b, ',');
    shadow_buf_puts(b, "{\"name\":");
    har_string(b, h->v[i].name, h->v[i].name_len);
    shadow_buf_puts(b, ",\"value\":");
    har_string(b, h->v[i].value, h->v[i].value_len);
    shadow_buf_putc(b, '}');
  }
  shadow_buf_puts(b, "]");
}

/* "queryString": the target's query split at & and =, as sent. */
static void har_query(shadow_buf_t *b, const char *t, size_t n) {
  shadow_buf_puts(b, "[");
  const char *q = memchr(t, '?', n);
  int first = 1;
  if (q) {
    const char *s = q + 1, *end = t + n;
    while (s < end) {
      const char *amp = memchr(s, '&', (size_t)(end - s));
      const char *e = amp ? amp : end;
      const char *eq = memchr(s, '=', (size_t)(e - s));
      if (e > s) {
        if (!first) shadow_buf_putc(b, ',');
        first = 0;
        shadow_buf_puts(b, "{\"name\":");
        har_string(b, s, (size_t)((eq ? eq : e) - s));
        shadow_buf_puts(b, ",\"value\":");
        if (eq)
          har_string(b, eq + 1, (size_t)(e - eq - 1));
        else
          shadow_buf_puts(b, "\"\"");
        shadow_buf_putc(b, '}');
      }
      s = amp ? amp + 1 : end;
    }
  }
  shadow_buf_puts(b, "]");
}

static const char *header_or(const shadow_headers_t *h, const char *name,
                             const char *dflt, size_t *len) {
  const shadow_header_t *x = shadow_headers_find(h, name);
  *len = x ? x->value_len : strlen(dflt);
  return x ? x->value : dflt;
}

/* A body as HAR text: itself when UTF-8, else base64 with encoding. */
static void har_text(shadow_buf_t *b, const shadow_buf_t *body, int content) {
  const char *d = body->data ? body->data : "";
  if (shadow_capture_utf8_valid(d, body->len)) {
    shadow_buf_puts(b, ",\"text\":");
    har_string(b, d, body->len);
    return;
  }
  shadow_buf_puts(b, ",\"text\":\"");
  shadow_capture_base64(b, d, body->len);
  shadow_buf_puts(b, content ? "\",\"encoding\":\"base64\""
                             : "\",\"comment\":\"base64\"");
}

static void har_entry(shadow_buf_t *b, const shadow_capture_entry_t *e) {
  size_t hl, ctl;
  const char *host = header_or(&e->headers, "host", "localhost", &hl);
  double total = e->total_ms >= 0 ? e->total_ms : 0;
  double wait = e->first_byte_ms >= 0 ? e->first_byte_ms : total;
  if (wait > total) total = wait;
  shadow_buf_puts(b, "{\"startedDateTime\":");
  har_string(b, e->time, strlen(e->time));
  shadow_buf_printf(b, ",\"time\":%.3f,\"request\":{\"method\":", total);
  har_string(b, e->method.data, e->method.len);
  shadow_buf_printf(b, ",\"url\":\"%s://", e->tls ? "https" : "http");
  /* Inside the quotes already: the host and target, escaped. */
  shadow_buf_t url = SHADOW_BUF_INIT;
  shadow_buf_append(&url, host, hl);
  shadow_buf_append(&url, e->target.data, e->target.len);
  shadow_buf_t q = SHADOW_BUF_INIT;
  har_string(&q, url.data, url.len);
  shadow_buf_append(b, q.data + 1, q.len - 1);
  shadow_buf_free(&q);
  shadow_buf_free(&url);
  shadow_buf_puts(b, ",\"httpVersion\":\"HTTP/1.1\",\"cookies\":[],"
                     "\"headers\":");
  har_headers(b, &e->headers);
  shadow_buf_puts(b, ",\"queryString\":");
  har_query(b, e->target.data, e->target.len);
  if (e->body.len) {
    const char *ct = header_or(&e->headers, "content-type",
                               "application/octet-stream", &ctl);
    shadow_buf_puts(b, ",\"postData\":{\"mimeType\":");
    har_string(b, ct, ctl);
    shadow_buf_puts(b, ",\"params\":[]");
    har_text(b, &e->body, 0);
    shadow_buf_puts(b, "}");
  }
  shadow_buf_printf(b, ",\"headersSize\":-1,\"bodySize\":%zu},", e->body.len);
  const shadow_record_t *r = &e->response;
  uint64_t size = shadow_record_body_len(r);
  const char *reason = shadow_http_reason(r->status);
  shadow_buf_printf(b,
                    "\"response\":{\"status\":%d,\"statusText\":\"%s\","
                    "\"httpVersion\":\"HTTP/1.1\",\"cookies\":[],\"headers\":",
                    r->status, reason);
  har_headers(b, &r->headers);
  const char *ct = header_or(&r->headers, "content-type", "", &ctl);
  shadow_buf_printf(
      b, ",\"content\":{\"size\":%llu,\"mimeType\":", (unsigned long long)size);
  har_string(b, ct, ctl);
  har_text(b, &r->body, 1);
  if (r->body_cut)
    shadow_buf_printf(b,
                      ",\"comment\":\"the first %zu of %llu bytes were "
                      "captured\"",
                      r->body.len, (unsigned long long)size);
  size_t ll;
  const char *loc = header_or(&r->headers, "location", "", &ll);
  shadow_buf_puts(b, "},\"redirectURL\":");
  har_string(b, loc, ll);
  shadow_buf_printf(b, ",\"headersSize\":-1,\"bodySize\":%llu},",
                    (unsigned long long)size);
  shadow_buf_printf(b,
                    "\"cache\":{},\"timings\":{\"blocked\":-1,\"dns\":-1,"
                    "\"connect\":-1,\"send\":0,\"wait\":%.3f,\"receive\":%.3f,"
                    "\"ssl\":-1},\"_shadow\":{\"id\":%llu,\"route\":",
                    wait, total - wait, (unsigned long long)e->id);
  if (e->has_route)
    har_string(b, e->route.data, e->route.len);
  else
    shadow_buf_puts(b, "null");
  shadow_buf_puts(b, ",\"key\":");
  if (e->has_key)
    har_string(b, e->key.data, e->key.len);
  else
    shadow_buf_puts(b, "null");
  shadow_buf_puts(b, "}}");
}

static int export_har(const char *out_path, char **files, int n,
                      size_t max_line) {
  shadow_capture_reader_t rd;
  char *err = NULL;
  if (shadow_capture_reader_open(&rd, (const char *const *)files, (size_t)n,
                                 &err) != 0) {
    fprintf(stderr, "shadowd export: %s\n", err);
    free(err);
    return 2;
  }
  rd.max_line = max_line;
  FILE *out = out_path ? fopen(out_path, "w") : stdout;
  if (!out) {
    fprintf(stderr, "shadowd export: %s: %s\n", out_path, strerror(errno));
    shadow_capture_reader_close(&rd);
    return 2;
  }
  shadow_capture_entry_t e;
  shadow_capture_entry_init(&e);
  shadow_buf_t b = SHADOW_BUF_INIT;
  fprintf(out,
          "{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":"
          "\"shadowd\",\"version\":\"%s\"},\"pages\":[],\"entries\":[",
          SHADOW_VERSION);
  uint64_t entries = 0, bad = 0;
  int code = 0;
  const char *line;
  size_t len;
  int rc;
  while ((rc = shadow_capture_reader_next(&rd, &line, &len, &err)) > 0) {
    if (rc == 2) { /* read past, never held */
      fprintf(stderr,
              "%s:%llu: a line of %zu bytes, longer than --max-line-bytes "
              "%zu (shadowd export --max-line-bytes N reads it): skipped\n",
              rd.path, (unsigned long long)rd.line, len,
              max_line ? max_line : (size_t)SHADOW_CAPTURE_MAX_LINE);
      bad++;
      continue;
    }
    if (!len) continue;
    char why[256];
    if (shadow_capture_parse(line, len, &e, why, sizeof(why)) != 0) {
      fprintf(stderr, "%s:%llu: %s: skipped\n", rd.path,
              (unsigned long long)rd.line, why);
      bad++;
      continue;
    }
    shadow_buf_reset(&b);
    if (entries++) shadow_buf_putc(&b, ',');
    har_entry(&b, &e);
    fwrite(b.data, 1, b.len, out);
  }
  if (rc < 0) {
    fprintf(stderr, "shadowd export: %s\n", err);
    free(err);
    code = 2;
  }
  fprintf(out, "]}}\n");
  if (out != stdout && fclose(out) != 0) code = 2;
  if (out == stdout) fflush(stdout);
  fprintf(stderr, "shadowd export: %llu entr%s written%s\n",
          (unsigned long long)entries, entries == 1 ? "y" : "ies",
          bad ? ", some lines skipped (see above)" : "");
  if (entries == 0) code = 2;
  shadow_buf_free(&b);
  shadow_capture_entry_release(&e);
  shadow_capture_reader_close(&rd);
  return code;
}

/* --- the command line ---------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: shadowd export --har [--out FILE] "
             "[--max-line-bytes N[K|M|G]] CAPTURE_FILE...\n"
             "       shadowd export --fixtures DIR DIVERGENCES_FILE...\n");
}

int shadow_export_main(int argc, char **argv) {
  static const struct option opts[] = {
      {"har", no_argument, NULL, 'H'},
      {"fixtures", required_argument, NULL, 'F'},
      {"out", required_argument, NULL, 'o'},
      {"max-line-bytes", required_argument, NULL, 'L'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int har = 0, c;
  const char *fixtures = NULL, *out = NULL;
  size_t max_line = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+HF:o:L:h", opts, NULL)) != -1) {
    switch (c) {
    case 'H': har = 1; break;
    case 'L':
      if (shadow_capture_size_parse(optarg, &max_line) != 0) {
        fprintf(stderr, "shadowd export: --max-line-bytes takes a size from "
                        "1K to 16G (N, NK, NM or NG)\n");
        return 2;
      }
      break;
    case 'F': fixtures = optarg; break;
    case 'o': out = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (har == !!fixtures || optind >= argc) {
    usage(stderr);
    return 2;
  }
  if (har) return export_har(out, argv + optind, argc - optind, max_line);
  return export_fixtures(fixtures, argv + optind, argc - optind);
}
