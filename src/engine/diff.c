/* The record diff (see diff.h): status (with gRPC's grpc-status and
 * grpc-message), headers and trailers (case-insensitive names, hop-by-hop
 * and date never compared), and bodies: JSON semantically through
 * json_diff.c, protobuf turned into JSON text first (protobuf.h), gRPC
 * message by message (grpc_diff.c), other bodies by bytes, large or
 * streamed ones by digest and length; gzip and deflate are undone first,
 * within bounds. */
#include "diff.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "divergence.h"
#include "grpc.h"
#include "grpc_diff.h"
#include "header_group.h"
#include "inflate.h"
#include "json_diff.h"
#include "protobuf.h"

#define DEFAULT_DIFF_BYTES ((size_t)1 << 20)
#define DEFAULT_VALUE_MAX 256
/* Bytes of context shown on each side of the first differing offset. */
#define EXCERPT_BEFORE 16
#define EXCERPT_AFTER 24

struct shadow_diff_opts_s {
  char **ignore; /* lower-case header names never compared */
  size_t nignore;
  shadow_json_rules_t *rules;
  size_t diff_bytes;
  size_t value_max;
  shadow_pb_schema_t *pb_schema; /* with pb_message: decode by name */
  char *pb_message;
  shadow_pb_schema_t *grpc_schema; /* gRPC replies by their method's type */
};

shadow_diff_opts_t *shadow_diff_opts_new(void) {
  shadow_diff_opts_t *o = calloc(1, sizeof(*o));
  if (!o) return NULL;
  o->rules = shadow_json_rules_new();
  if (!o->rules) {
    free(o);
    return NULL;
  }
  o->diff_bytes = DEFAULT_DIFF_BYTES;
  o->value_max = DEFAULT_VALUE_MAX;
  return o;
}

void shadow_diff_opts_free(shadow_diff_opts_t *o) {
  if (!o) return;
  for (size_t i = 0; i < o->nignore; i++)
    free(o->ignore[i]);
  free(o->ignore);
  shadow_json_rules_free(o->rules);
  shadow_pb_schema_free(o->pb_schema);
  shadow_pb_schema_free(o->grpc_schema);
  free(o->pb_message);
  free(o);
}

int shadow_diff_opts_grpc(shadow_diff_opts_t *o, const void *fds, size_t len,
                          char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!o || !fds) return -EINVAL;
  shadow_pb_schema_t *s = NULL;
  int rc = shadow_pb_schema_load(&s, fds, len, err, errlen);
  if (rc) return rc;
  shadow_pb_schema_free(o->grpc_schema);
  o->grpc_schema = s;
  return 0;
}

size_t shadow_diff_opts_grpc_methods(const shadow_diff_opts_t *o) {
  return o ? shadow_pb_schema_methods(o->grpc_schema) : 0;
}

int shadow_diff_opts_protobuf(shadow_diff_opts_t *o, const void *fds,
                              size_t len, const char *message, char *err,
                              size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!o || !fds || !message || !*message) return -EINVAL;
  shadow_pb_schema_t *s = NULL;
  int rc = shadow_pb_schema_load(&s, fds, len, err, errlen);
  if (rc) return rc;
  if (!shadow_pb_schema_has(s, message)) {
    if (err && errlen)
      snprintf(err, errlen, "the descriptor set holds no message type %s",
               message);
    shadow_pb_schema_free(s);
    return -EINVAL;
  }
  char *m = shadow_bytes_dup(message, strlen(message));
  if (!m) {
    shadow_pb_schema_free(s);
    return -ENOMEM;
  }
  shadow_pb_schema_free(o->pb_schema);
  free(o->pb_message);
  o->pb_schema = s;
  o->pb_message = m;
  return 0;
}

/* RFC 9110 token characters: what a header name may be made of. */
static int is_tchar(unsigned char c) {
  return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int shadow_diff_opts_ignore_header(shadow_diff_opts_t *o, const char *name) {
  if (!o || !name || !*name) return -EINVAL;
  size_t n = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)name[i])) return -EINVAL;
  char **v = realloc(o->ignore, (o->nignore + 1) * sizeof(*v));
  if (!v) return -ENOMEM;
  o->ignore = v;
  char *copy = malloc(n + 1);
  if (!copy) return -ENOMEM;
  for (size_t i = 0; i <= n; i++)
    copy[i] = (char)tolower((unsigned char)name[i]);
  o->ignore[o->nignore++] = copy;
  return 0;
}

size_t shadow_diff_opts_ignored_headers(const shadow_diff_opts_t *o,
                                        const char *const **names) {
  if (names) *names = o ? (const char *const *)o->ignore : NULL;
  return o ? o->nignore : 0;
}

int shadow_diff_opts_ignore_json(shadow_diff_opts_t *o, const char *pointer) {
  if (!o || !pointer) return -EINVAL;
  return shadow_json_rules_ignore(o->rules, pointer);
}

int shadow_diff_opts_array_mode(shadow_diff_opts_t *o, const char *pointer,
                                int mode, const char *key) {
  if (!o || !pointer || mode < SHADOW_ARRAY_INDEX || mode > SHADOW_ARRAY_KEY)
    return -EINVAL;
  if (mode == SHADOW_ARRAY_KEY && (!key || !*key)) return -EINVAL;
  return shadow_json_rules_array(o->rules, pointer, mode,
                                 mode == SHADOW_ARRAY_KEY ? key : NULL);
}

int shadow_diff_opts_tolerance(shadow_diff_opts_t *o, const char *pointer,
                               double tolerance) {
  /* The negated test also refuses NaN. */
  if (!o || !pointer || !(tolerance >= 0)) return -EINVAL;
  return shadow_json_rules_tolerance(o->rules, pointer, tolerance);
}

int shadow_diff_opts_rename(shadow_diff_opts_t *o, const char *from,
                            const char *to, const char **why) {
  if (!o || !from || !to) return -EINVAL;
  return shadow_json_rules_rename(o->rules, from, to, why);
}

int shadow_diff_opts_coerce(shadow_diff_opts_t *o, const char *pointer,
                            int kind) {
  if (!o || !pointer) return -EINVAL;
  return shadow_json_rules_coerce(o->rules, pointer, kind);
}

int shadow_diff_opts_mask(shadow_diff_opts_t *o, const char *pointer, int cls,
                          const char *pattern, const char **why) {
  if (!o || !pointer) return -EINVAL;
  return shadow_json_rules_mask(o->rules, pointer, cls, pattern, why);
}

int shadow_diff_opts_time(shadow_diff_opts_t *o, const char *pointer, int unit,
                          double tolerance_ms) {
  if (!o || !pointer) return -EINVAL;
  return shadow_json_rules_time(o->rules, pointer, unit, tolerance_ms);
}

const char *shadow_diff_opts_rule_name(const shadow_diff_opts_t *o,
                                       size_t bit) {
  return o ? shadow_json_rules_name(o->rules, bit) : NULL;
}

const char *shadow_diff_opts_rule_desc(const shadow_diff_opts_t *o,
                                       size_t bit) {
  return o ? shadow_json_rules_desc(o->rules, bit) : NULL;
}

const char *shadow_diff_opts_rule_names(const shadow_diff_opts_t *o,
                                        size_t *len, size_t *n) {
  return shadow_json_rules_names(o ? o->rules : NULL, len, n);
}

void shadow_diff_opts_set_diff_bytes(shadow_diff_opts_t *o, size_t n) {
  o->diff_bytes = n;
}

void shadow_diff_opts_set_value_max(shadow_diff_opts_t *o, size_t n) {
  o->value_max = n;
}

void shadow_diff_result_free(shadow_diff_result_t *res) {
  shadow_buf_free(&res->json);
  shadow_buf_free(&res->fields);
  res->parts = 0;
  res->nfields = 0;
  memset(res->hits, 0, sizeof res->hits);
}

static int add_field(shadow_diff_result_t *res, const char *prefix,
                     const char *s, size_t n) {
  if (shadow_buf_puts(&res->fields, prefix) ||
      shadow_buf_append(&res->fields, s, n) ||
      shadow_buf_append(&res->fields, "", 1))
    return -ENOMEM;
  res->nfields++;
  return 0;
}

/* ---- headers ---------------------------------------------------------- */

/* skip_encoding: SKIP_CONTENT_ENCODING, SKIP_GRPC_ENCODING bits, set when
 * the body or the messages were compared decoded. grpc-status and
 * grpc-message are compared with the status, never as headers. */
enum { SKIP_CONTENT_ENCODING = 1, SKIP_GRPC_ENCODING = 2 };

static int header_ignored(const shadow_diff_opts_t *o, const shadow_header_t *h,
                          int skip_encoding) {
  if (shadow_header_is_hop(h->name, h->name_len)) return 1;
  if (shadow_header_name_is(h, "date")) return 1;
  if ((skip_encoding & SKIP_CONTENT_ENCODING) &&
      shadow_header_name_is(h, "content-encoding"))
    return 1;
  /* What the two servers compress with and accept is negotiation, like
   * a hop's, not the reply. */
  if ((skip_encoding & SKIP_GRPC_ENCODING) &&
      (shadow_header_name_is(h, "grpc-encoding") ||
       shadow_header_name_is(h, "grpc-accept-encoding")))
    return 1;
  if (shadow_header_name_is(h, "grpc-status") ||
      shadow_header_name_is(h, "grpc-message"))
    return 1;
  for (size_t i = 0; o && i < o->nignore; i++)
    if (shadow_header_name_is(h, o->ignore[i])) return 1;
  return 0;
}

/* Lines of one name are followed through the groups of both sides
 * (header_group.h), found in one sort: a response of thousands of header
 * lines costs its size times a logarithm, not its square. */
#define END SHADOW_HEADER_GROUP_END

/* The ordered values of two chains (i on a's side, j on b's; END: none)
 * agree. */
static int chains_equal(const shadow_headers_t *a, const size_t *an, size_t i,
                        const shadow_headers_t *b, const size_t *bn, size_t j) {
  while (i != END && j != END) {
    const shadow_header_t *x = &a->v[i], *y = &b->v[j];
    if (x->value_len != y->value_len ||
        memcmp(x->value, y->value, x->value_len) != 0)
      return 0;
    i = an[i];
    j = bn[j];
  }
  return i == j;
}

/* Writes one side's values: null, a string, or an array when several. */
static int write_values(shadow_buf_t *b, const shadow_headers_t *hs,
                        const size_t *next, size_t i, size_t max) {
  if (i == END) return shadow_buf_puts(b, "null");
  int many = next[i] != END;
  if (many && shadow_buf_putc(b, '[')) return -ENOMEM;
  for (size_t k = i; k != END; k = next[k]) {
    const shadow_header_t *x = &hs->v[k];
    if ((k != i && shadow_buf_putc(b, ',')) ||
        shadow_buf_json_string(b, x->value, x->value_len, max))
      return -ENOMEM;
  }
  return many ? shadow_buf_putc(b, ']') : 0;
}

/* One header's difference; pi and ci are the first lines of its name on
 * each side (END: none there). */
static int header_diff(shadow_buf_t *b, shadow_diff_result_t *res,
                       const char *prefix, const shadow_header_t *h,
                       const shadow_headers_t *p,
                       const shadow_header_groups_t *gp, size_t pi,
                       const shadow_headers_t *c,
                       const shadow_header_groups_t *gc, size_t ci, size_t max,
                       size_t *n) {
  char lower[256];
  size_t ln = h->name_len < sizeof(lower) ? h->name_len : sizeof(lower) - 1;
  for (size_t i = 0; i < ln; i++)
    lower[i] = (char)tolower((unsigned char)h->name[i]);
  if ((*n)++ && shadow_buf_putc(b, ',')) return -ENOMEM;
  if (shadow_buf_puts(b, "{\"name\":") ||
      shadow_buf_json_string(b, lower, ln, max) ||
      shadow_buf_puts(b, ",\"primary\":") ||
      write_values(b, p, gp->next, pi, max) ||
      shadow_buf_puts(b, ",\"candidate\":") ||
      write_values(b, c, gc->next, ci, max) || shadow_buf_putc(b, '}'))
    return -ENOMEM;
  return add_field(res, prefix, lower, ln);
}

/* Compares the header lists p and c (the headers, or the trailers: prefix
 * "header:" or "trailer:" names the fields). */
static int diff_headers(const shadow_diff_opts_t *o, const shadow_headers_t *p,
                        const shadow_headers_t *c, int skip_encoding,
                        const char *prefix, shadow_diff_result_t *res,
                        shadow_buf_t *b) {
  size_t max = o ? o->value_max : DEFAULT_VALUE_MAX;
  size_t n = 0;
  int rc = 0;
  shadow_header_groups_t gp, gc;
  if (shadow_headers_pair(p, c, &gp, &gc)) {
    rc = -ENOMEM;
    goto out;
  }
  /* Names in the primary's order first, then those only the candidate has. */
  for (size_t i = 0; i < p->n && rc == 0; i++) {
    const shadow_header_t *h = &p->v[i];
    if (!gp.first[i] || header_ignored(o, h, skip_encoding)) continue;
    if (chains_equal(p, gp.next, i, c, gc.next, gp.peer[i])) continue;
    rc = header_diff(b, res, prefix, h, p, &gp, i, c, &gc, gp.peer[i], max, &n);
  }
  for (size_t i = 0; i < c->n && rc == 0; i++) {
    const shadow_header_t *h = &c->v[i];
    if (!gc.first[i] || gc.peer[i] != END) continue; /* handled above */
    if (header_ignored(o, h, skip_encoding)) continue;
    rc = header_diff(b, res, prefix, h, p, &gp, END, c, &gc, i, max, &n);
  }
out:
  shadow_header_groups_free(&gp);
  shadow_header_groups_free(&gc);
  return rc ? rc : (int)(n > 0);
}

#undef END

/* ---- bodies ----------------------------------------------------------- */

/* The first value of a header, trimmed, or NULL. */
static const char *header_value(const shadow_record_t *r, const char *name,
                                size_t *len) {
  const shadow_header_t *h = shadow_headers_find(&r->headers, name);
  if (!h) return NULL;
  const char *s = h->value;
  size_t n = h->value_len;
  while (n && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  *len = n;
  return s;
}

/* application/json or any type/subtype+json, parameters allowed. */
static int is_json_type(const char *s, size_t n) {
  if (!s) return 0;
  const char *semi = memchr(s, ';', n);
  if (semi) n = (size_t)(semi - s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  if (n == 16 && strncasecmp(s, "application/json", 16) == 0) return 1;
  return n > 5 && memchr(s, '/', n) && strncasecmp(s + n - 5, "+json", 5) == 0;
}

/* application/x-protobuf or application/protobuf, parameters allowed.
 * (gRPC's application/grpc+proto frames its messages: not a bare one.) */
static int is_protobuf_type(const char *s, size_t n) {
  if (!s) return 0;
  const char *semi = memchr(s, ';', n);
  if (semi) n = (size_t)(semi - s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  return (n == 22 && strncasecmp(s, "application/x-protobuf", 22) == 0) ||
         (n == 20 && strncasecmp(s, "application/protobuf", 20) == 0);
}

/* What a record's content type says, read once a pair (every part of the
 * comparison asks). */
typedef struct body_type_s {
  int grpc; /* SHADOW_GRPC_* */
  int protobuf;
  int json;
} body_type_t;

static void body_type(const shadow_record_t *r, body_type_t *t) {
  size_t n = 0;
  const char *s = header_value(r, "content-type", &n);
  t->grpc = s ? shadow_grpc_content_type(s, n) : SHADOW_GRPC_NOT;
  t->protobuf = is_protobuf_type(s, n);
  t->json = is_json_type(s, n);
}

static int grpc_encoding(const shadow_record_t *r) {
  size_t n = 0;
  const char *s = header_value(r, "grpc-encoding", &n);
  return shadow_grpc_encoding(s, n);
}

enum { CODING_NONE, CODING_GZIP, CODING_DEFLATE, CODING_OTHER };

static int body_coding(const shadow_record_t *r) {
  size_t n;
  const char *s = header_value(r, "content-encoding", &n);
  if (!s || n == 0) return CODING_NONE;
  if ((n == 4 && strncasecmp(s, "gzip", 4) == 0) ||
      (n == 6 && strncasecmp(s, "x-gzip", 6) == 0))
    return CODING_GZIP;
  if (n == 7 && strncasecmp(s, "deflate", 7) == 0) return CODING_DEFLATE;
  if (n == 8 && strncasecmp(s, "identity", 8) == 0) return CODING_NONE;
  return CODING_OTHER; /* br, zstd, a list of codings: compared as sent */
}

typedef struct body_view_s {
  const char *data;
  size_t len;
  int coded;   /* the record's content-encoding could be undone */
  int too_big; /* inflating stopped at the limit: data is the coded bytes */
  int cut;     /* only a prefix was kept: compare total and digest */
  uint64_t total;
  shadow_digest_t digest;
  shadow_buf_t scratch;
} body_view_t;

static int body_view(const shadow_record_t *r, size_t limit, body_view_t *v) {
  v->data = r->body.data ? r->body.data : "";
  v->len = r->body.len;
  v->coded = 1;
  v->too_big = 0;
  v->cut = r->body_cut;
  if (v->cut) {
    /* The bytes as they travelled are all there is to compare, so the
     * content-encoding header is compared too. */
    v->total = r->body_total;
    v->digest = r->body_digest;
    v->coded = 0;
    return 0;
  }
  int coding = body_coding(r);
  if (coding == CODING_NONE) return 0;
  if (coding == CODING_OTHER) {
    v->coded = 0;
    return 0;
  }
  /* gzip: 16 + 15 asks zlib for the gzip wrapper. deflate: RFC 9110 means
   * the zlib wrapper, but servers send raw deflate often enough to try. */
  int rc = shadow_inflate_bounded(
      v->data, v->len, coding == CODING_GZIP ? 31 : 15, limit, &v->scratch);
  if (rc == SHADOW_INFLATE_BAD && coding == CODING_DEFLATE) {
    shadow_buf_reset(&v->scratch);
    rc = shadow_inflate_bounded(v->data, v->len, -15, limit, &v->scratch);
  }
  if (rc < 0) return rc;
  if (rc == SHADOW_INFLATE_OK) {
    v->data = v->scratch.data ? v->scratch.data : "";
    v->len = v->scratch.len;
  } else if (rc == SHADOW_INFLATE_TOO_BIG) {
    v->too_big = 1;
  } else {
    v->coded = 0; /* corrupt: compare the bytes as they came */
  }
  return 0;
}

/* A side's whole length and digest: kept from streaming, or computed. */
static void view_digest(const body_view_t *v, uint64_t *len, char hex[33]) {
  if (v->cut) {
    *len = v->total;
    shadow_digest_hex(v->digest, hex);
  } else {
    *len = v->len;
    shadow_digest_hex(shadow_digest_of(v->data, v->len), hex);
  }
}

/* A readable, bounded excerpt: printable ASCII as is, the rest escaped. */
static int excerpt(shadow_buf_t *b, const char *s, size_t n, size_t off) {
  size_t from = off > EXCERPT_BEFORE ? off - EXCERPT_BEFORE : 0;
  size_t to = off + EXCERPT_AFTER < n ? off + EXCERPT_AFTER : n;
  int rc = shadow_buf_putc(b, '"');
  for (size_t i = from; !rc && i < to; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\n')
      rc = shadow_buf_puts(b, "\\n");
    else if (ch == '\r')
      rc = shadow_buf_puts(b, "\\r");
    else if (ch == '\t')
      rc = shadow_buf_puts(b, "\\t");
    else if (ch == '\\' || ch == '"')
      rc = shadow_buf_printf(b, "\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f)
      rc = shadow_buf_printf(b, "\\x%02x", ch);
    else
      rc = shadow_buf_putc(b, (char)ch);
  }
  return rc ? rc : shadow_buf_putc(b, '"');
}

static int bytes_summary(shadow_buf_t *s, const body_view_t *p,
                         const body_view_t *c) {
  size_t min = p->len < c->len ? p->len : c->len, off = 0;
  while (off < min && p->data[off] == c->data[off])
    off++;
  if (shadow_buf_printf(s,
                        "bodies differ at byte %zu (primary %zu bytes, "
                        "candidate %zu bytes): primary ",
                        off, p->len, c->len) ||
      excerpt(s, p->data, p->len, off) || shadow_buf_puts(s, ", candidate ") ||
      excerpt(s, c->data, c->len, off))
    return -ENOMEM;
  return 0;
}

static int digest_summary(shadow_buf_t *s, const body_view_t *p,
                          const body_view_t *c, int *differs) {
  char hp[33], hc[33];
  uint64_t lp, lc;
  view_digest(p, &lp, hp);
  view_digest(c, &lc, hc);
  *differs = lp != lc || strcmp(hp, hc) != 0;
  if (!*differs) return 0;
  return shadow_buf_printf(s,
                           "bodies differ by digest: primary %" PRIu64
                           " bytes%s xxh3-128 %s, "
                           "candidate %" PRIu64 " bytes%s xxh3-128 %s",
                           lp, p->too_big ? " (compressed)" : "", hp, lc,
                           c->too_big ? " (compressed)" : "", hc);
}

/* Re-labels the JSON diff's pointers as "body:<pointer>" fields. */
static int add_json_fields(shadow_diff_result_t *res, const shadow_buf_t *f) {
  size_t i = 0;
  while (i < f->len) {
    size_t n = strnlen(f->data + i, f->len - i);
    int rc = add_field(res, "body:", f->data + i, n);
    if (rc) return rc;
    i += n + 1;
  }
  return 0;
}

/* The message type a gRPC reply to the call at path decodes with: the
 * method's output type from grpc.descriptors, else the one type given
 * for protobuf bodies (shadowd diff --message), else none (by number). */
static const char *grpc_msg_type(const shadow_diff_opts_t *o, const char *path,
                                 size_t path_len,
                                 const shadow_pb_schema_t **schema) {
  *schema = NULL;
  if (!o) return NULL;
  if (o->grpc_schema && path) {
    const char *q = memchr(path, '?', path_len);
    size_t n = q ? (size_t)(q - path) : path_len;
    const char *t = shadow_pb_schema_method_output(o->grpc_schema, path, n);
    if (t) {
      *schema = o->grpc_schema;
      return t;
    }
  }
  if (o->pb_schema && o->pb_message) {
    *schema = o->pb_schema;
    return o->pb_message;
  }
  return NULL;
}

/* gRPC bodies (either side application/grpc*, the other gRPC, JSON or
 * protobuf) compared message by message (grpc_diff.c). Returns 0 with
 * *parsed set, or 0 with *parsed clear when a side's framing is bad (the
 * summary says why, the caller adds the bytes'), or -ENOMEM. */
static int diff_grpc(const shadow_diff_opts_t *o, const char *path,
                     size_t path_len, const shadow_record_t *p,
                     const shadow_record_t *c, const body_type_t *tp,
                     const body_type_t *tc, const body_view_t *vp,
                     const body_view_t *vc, shadow_grpc_pair_t *x,
                     shadow_diff_result_t *res, int *parsed) {
  shadow_grpc_side_t sp = {vp->data, vp->len, tp->grpc, tp->protobuf,
                           grpc_encoding(p)};
  shadow_grpc_side_t sc = {vc->data, vc->len, tc->grpc, tc->protobuf,
                           grpc_encoding(c)};
  x->rules = o ? o->rules : NULL;
  x->value_max = o ? o->value_max : DEFAULT_VALUE_MAX;
  x->ops_max_bytes = SHADOW_DIVERGENCE_MAX_BYTES;
  x->limit = o ? o->diff_bytes : DEFAULT_DIFF_BYTES;
  x->msg_type = grpc_msg_type(o, path, path_len, &x->schema);
  *parsed = 0;
  int rc = shadow_grpc_diff(x, &sp, &sc);
  if (rc == -EINVAL) {
    shadow_buf_reset(x->ops);
    shadow_buf_reset(x->fields);
    shadow_buf_reset(x->extra);
    return shadow_buf_puts(x->summary, "; ");
  }
  if (rc) return rc;
  *parsed = 1;
  memcpy(res->hits, x->hits, sizeof res->hits);
  return add_json_fields(res, x->fields);
}

static int diff_body(const shadow_diff_opts_t *o, const char *path,
                     size_t path_len, const shadow_record_t *p,
                     const shadow_record_t *c, const body_type_t *kp,
                     const body_type_t *kc, body_view_t *vp, body_view_t *vc,
                     shadow_diff_result_t *res, shadow_buf_t *b,
                     shadow_buf_t *explain) {
  size_t limit = o ? o->diff_bytes : DEFAULT_DIFF_BYTES;
  /* Protobuf is compared as the JSON tree it decodes to, against a
   * protobuf or a JSON body alike (the migration case). */
  int ppb = kp->protobuf, cpb = kc->protobuf;
  int pjs = kp->json, cjs = kc->json;
  int pg = kp->grpc, cg = kc->grpc;
  int both_json = (ppb || pjs) && (cpb || cjs);
  int grpc = (pg || cg) && (pg || ppb || pjs) && (cg || cpb || cjs);
  const char *kind =
      grpc ? (pg == SHADOW_GRPC_JSON || pjs) && (cg == SHADOW_GRPC_JSON || cjs)
                 ? "json"
                 : "protobuf"
      : !both_json ? "bytes"
      : ppb || cpb ? "protobuf"
                   : "json";
  shadow_buf_t summary = SHADOW_BUF_INIT, ops = SHADOW_BUF_INIT;
  shadow_buf_t fields = SHADOW_BUF_INIT, extra = SHADOW_BUF_INIT;
  shadow_buf_t tp = SHADOW_BUF_INIT, tc = SHADOW_BUF_INIT;
  int differs = 0, truncated = 0, rc = 0;

  if (vp->cut || vc->cut || vp->too_big || vc->too_big || vp->len > limit ||
      vc->len > limit) {
    kind = "digest";
    rc = digest_summary(&summary, vp, vc, &differs);
    if (!rc && differs) rc = add_field(res, "body", "", 0);
  } else if (vp->len == vc->len && memcmp(vp->data, vc->data, vp->len) == 0 &&
             !((both_json || grpc) && o &&
               shadow_json_rules_renames(o->rules))) {
    /* Identical bytes agree under every rule but a rename, which may find
     * that the candidate still has the old name. */
    differs = 0;
  } else {
    int parsed = 0;
    if (grpc) {
      shadow_grpc_pair_t x;
      memset(&x, 0, sizeof x);
      x.explain = explain;
      x.ops = &ops;
      x.fields = &fields;
      x.summary = &summary;
      x.extra = &extra;
      rc = diff_grpc(o, path, path_len, p, c, kp, kc, vp, vc, &x, res, &parsed);
      differs = parsed && x.nops > 0;
      truncated = parsed && x.truncated;
    } else if (both_json) {
      char err[128] = "";
      shadow_json_diff_out_t out;
      memset(&out, 0, sizeof(out));
      out.ops = &ops;
      out.fields = &fields;
      out.value_max = o ? o->value_max : DEFAULT_VALUE_MAX;
      out.ops_max_bytes = SHADOW_DIVERGENCE_MAX_BYTES;
      out.explain = explain;
      const shadow_pb_schema_t *schema = o ? o->pb_schema : NULL;
      const char *type = o ? o->pb_message : NULL;
      const char *pd = vp->data, *cd = vc->data;
      size_t pl = vp->len, cl = vc->len;
      if (ppb) {
        rc = shadow_pb_to_json(pd, pl, schema, type, &tp);
        pd = tp.data ? tp.data : "{}";
        pl = tp.data ? tp.len : 2;
      }
      if (!rc && cpb) {
        rc = shadow_pb_to_json(cd, cl, schema, type, &tc);
        cd = tc.data ? tc.data : "{}";
        cl = tc.data ? tc.len : 2;
      }
      if (!rc)
        rc = shadow_json_diff(pd, pl, cd, cl, o ? o->rules : NULL, &out, err,
                              sizeof(err));
      if (rc == 0) {
        parsed = 1;
        memcpy(res->hits, out.hits, sizeof res->hits);
        differs = out.nops > 0;
        truncated = out.truncated;
        if (differs)
          rc = shadow_buf_put_u64(&summary, out.nops) ||
                       shadow_buf_puts(&summary, out.nops == 1
                                                     ? " field differs"
                                                     : " fields differ")
                   ? -ENOMEM
                   : 0;
        if (!rc) rc = add_json_fields(res, &fields);
      } else if (rc == -EINVAL) {
        rc = 0; /* a side is not JSON after all: compare bytes */
        shadow_buf_reset(&ops);
      }
    }
    if (!rc && !parsed) {
      kind = "bytes";
      differs = 1;
      rc = bytes_summary(&summary, vp, vc);
      if (!rc) rc = add_field(res, "body", "", 0);
    }
  }
  res->body_kind = kind[0] == 'd'   ? SHADOW_BODY_DIGEST
                   : kind[0] == 'b' ? SHADOW_BODY_BYTES
                   : kind[0] == 'p' ? SHADOW_BODY_PROTOBUF
                                    : SHADOW_BODY_JSON;
  if (!rc && (shadow_buf_puts(b, differs ? "\"body\":{\"differs\":true,"
                                         : "\"body\":{\"differs\":false,") ||
              shadow_buf_puts(b, "\"kind\":\"") || shadow_buf_puts(b, kind) ||
              shadow_buf_puts(b, "\",\"summary\":") ||
              shadow_buf_json_string(b, summary.data ? summary.data : "",
                                     summary.len, 0) ||
              shadow_buf_puts(b, ",\"diffs\":[") ||
              shadow_buf_append(b, ops.data ? ops.data : "", ops.len) ||
              shadow_buf_putc(b, ']') ||
              (truncated && shadow_buf_puts(b, ",\"truncated\":true")) ||
              shadow_buf_append(b, extra.data ? extra.data : "", extra.len) ||
              shadow_buf_putc(b, '}')))
    rc = -ENOMEM;
  shadow_buf_free(&extra);
  shadow_buf_free(&summary);
  shadow_buf_free(&ops);
  shadow_buf_free(&fields);
  shadow_buf_free(&tp);
  shadow_buf_free(&tc);
  return rc ? rc : differs;
}

/* ---- records ---------------------------------------------------------- */

/* key, then v in decimal (a status: printf's machinery is not needed). */
static int put_int(shadow_buf_t *b, const char *key, int v) {
  if (shadow_buf_puts(b, key)) return -ENOMEM;
  if (v < 0 && shadow_buf_putc(b, '-')) return -ENOMEM;
  return shadow_buf_put_u64(b, v < 0 ? 0 - (uint64_t)(int64_t)v : (uint64_t)v);
}

int shadow_diff_records(const shadow_diff_opts_t *o, const shadow_record_t *p,
                        const shadow_record_t *c, shadow_diff_result_t *res) {
  return shadow_diff_records_explain(o, p, c, res, NULL);
}

int shadow_diff_records_explain(const shadow_diff_opts_t *o,
                                const shadow_record_t *p,
                                const shadow_record_t *c,
                                shadow_diff_result_t *res,
                                shadow_buf_t *explain) {
  return shadow_diff_records_at(o, NULL, 0, p, c, res, explain);
}

/* grpc-status or grpc-message of a record: from its trailers, else from
 * its headers (a trailers-only response). */
static const shadow_header_t *grpc_field(const shadow_record_t *r,
                                         const char *name) {
  const shadow_header_t *h = shadow_headers_find(&r->trailers, name);
  return h ? h : shadow_headers_find(&r->headers, name);
}

static void trimmed(const shadow_header_t *h, const char **s, size_t *n) {
  *s = h->value;
  *n = h->value_len;
  while (*n && (**s == ' ' || **s == '\t'))
    (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
    (*n)--;
}

static int grpc_same(const shadow_header_t *a, const shadow_header_t *b) {
  if (!a || !b) return a == b;
  const char *x, *y;
  size_t xn, yn;
  trimmed(a, &x, &xn);
  trimmed(b, &y, &yn);
  return xn == yn && memcmp(x, y, xn) == 0;
}

/* null, a number for a status of digits, else a string. */
static int put_grpc(shadow_buf_t *b, const shadow_header_t *h, int status,
                    size_t max) {
  if (!h) return shadow_buf_puts(b, "null");
  const char *s;
  size_t n;
  trimmed(h, &s, &n);
  int digits = status && n > 0 && n < 10;
  for (size_t i = 0; digits && i < n; i++)
    digits = s[i] >= '0' && s[i] <= '9';
  if (digits) return shadow_buf_append(b, s, n);
  return shadow_buf_json_string(b, s, n, max);
}

/* The status part's gRPC members: ,"grpc":{...} and, when either side has
 * one, ,"grpc_message":{...}. *differs is set when they disagree. */
static int grpc_status(const shadow_diff_opts_t *o, const shadow_record_t *p,
                       const shadow_record_t *c, int grpc, shadow_buf_t *b,
                       int *differs) {
  size_t max = o ? o->value_max : DEFAULT_VALUE_MAX;
  *differs = 0;
  /* Plain HTTP pairs (no gRPC type, no trailers) stop here. */
  if (!p->trailers.n && !c->trailers.n && !grpc) return 0;
  const shadow_header_t *ps = grpc_field(p, "grpc-status");
  const shadow_header_t *cs = grpc_field(c, "grpc-status");
  const shadow_header_t *pm = grpc_field(p, "grpc-message");
  const shadow_header_t *cm = grpc_field(c, "grpc-message");
  if (!ps && !cs && !pm && !cm && !grpc) return 0;
  *differs = !grpc_same(ps, cs) || !grpc_same(pm, cm);
  if (shadow_buf_puts(b, ",\"grpc\":{\"primary\":") ||
      put_grpc(b, ps, 1, max) || shadow_buf_puts(b, ",\"candidate\":") ||
      put_grpc(b, cs, 1, max) || shadow_buf_putc(b, '}'))
    return -ENOMEM;
  if (!pm && !cm) return 0;
  if (shadow_buf_puts(b, ",\"grpc_message\":{\"primary\":") ||
      put_grpc(b, pm, 0, max) || shadow_buf_puts(b, ",\"candidate\":") ||
      put_grpc(b, cm, 0, max) || shadow_buf_putc(b, '}'))
    return -ENOMEM;
  return 0;
}

int shadow_diff_records_at(const shadow_diff_opts_t *o, const char *path,
                           size_t path_len, const shadow_record_t *p,
                           const shadow_record_t *c, shadow_diff_result_t *res,
                           shadow_buf_t *explain) {
  size_t limit = o ? o->diff_bytes : DEFAULT_DIFF_BYTES;
  body_view_t vp, vc;
  shadow_buf_t hb = SHADOW_BUF_INIT, bb = SHADOW_BUF_INIT;
  shadow_buf_t gb = SHADOW_BUF_INIT, tb = SHADOW_BUF_INIT;
  memset(&vp, 0, sizeof(vp));
  memset(&vc, 0, sizeof(vc));
  shadow_buf_reset(&res->json);
  shadow_buf_reset(&res->fields);
  res->parts = 0;
  res->nfields = 0;
  memset(res->hits, 0, sizeof res->hits);

  body_type_t tp, tc;
  body_type(p, &tp);
  body_type(c, &tc);
  int grpc_differs = 0;
  int rc = grpc_status(o, p, c, tp.grpc || tc.grpc, &gb, &grpc_differs);
  int status_differs = p->status != c->status || grpc_differs;
  if (!rc && status_differs) rc = add_field(res, "status", "", 0);
  if (!rc) rc = body_view(p, limit, &vp);
  if (!rc) rc = body_view(c, limit, &vc);
  /* When both bodies were decoded, content-encoding only says how the
   * bytes travelled, so a candidate that compresses differently is not a
   * divergence by itself; nor is grpc-encoding when both sides' messages
   * were (a message that could not be is in the body part's notes). */
  int skip = (vp.coded && vc.coded ? SKIP_CONTENT_ENCODING : 0) |
             (tp.grpc && tc.grpc ? SKIP_GRPC_ENCODING : 0);
  /* The body part of a usual record at once, not by doubling from 64. */
  if (!rc) rc = shadow_buf_reserve(&bb, 496);
  int hd =
      rc ? rc
         : diff_headers(o, &p->headers, &c->headers, skip, "header:", res, &hb);
  int has_trailers = p->trailers.n || c->trailers.n;
  int td = hd < 0 || !has_trailers ? hd
                                   : diff_headers(o, &p->trailers, &c->trailers,
                                                  skip, "trailer:", res, &tb);
  int bd = td < 0 ? td
                  : diff_body(o, path, path_len, p, c, &tp, &tc, &vp, &vc, res,
                              &bb, explain);
  if (hd < 0 || td < 0 || bd < 0) {
    rc = hd < 0 ? hd : td < 0 ? td : bd;
  } else {
    res->parts = (status_differs ? SHADOW_PART_STATUS : 0) |
                 (hd || td ? SHADOW_PART_HEADERS : 0) |
                 (bd ? SHADOW_PART_BODY : 0);
    shadow_buf_t *j = &res->json;
    if (shadow_buf_puts(j, status_differs ? "\"status\":{\"differs\":true,"
                                          : "\"status\":{\"differs\":false,") ||
        put_int(j, "\"primary\":", p->status) ||
        put_int(j, ",\"candidate\":", c->status) ||
        shadow_buf_append(j, gb.data ? gb.data : "", gb.len) ||
        shadow_buf_puts(j,
                        hd ? "},\"headers\":{\"differs\":true,\"diffs\":["
                           : "},\"headers\":{\"differs\":false,\"diffs\":[") ||
        shadow_buf_append(&res->json, hb.data ? hb.data : "", hb.len) ||
        shadow_buf_puts(&res->json, "]},") ||
        (has_trailers &&
         (shadow_buf_printf(&res->json,
                            "\"trailers\":{\"differs\":%s,\"diffs\":[",
                            td ? "true" : "false") ||
          shadow_buf_append(&res->json, tb.data ? tb.data : "", tb.len) ||
          shadow_buf_puts(&res->json, "]},"))) ||
        shadow_buf_append(&res->json, bb.data ? bb.data : "", bb.len))
      rc = -ENOMEM;
  }
  shadow_buf_free(&gb);
  shadow_buf_free(&tb);
  shadow_buf_free(&vp.scratch);
  shadow_buf_free(&vc.scratch);
  shadow_buf_free(&hb);
  shadow_buf_free(&bb);
  if (rc < 0) {
    shadow_buf_reset(&res->json);
    res->parts = 0;
    return rc;
  }
  return (int)res->parts;
}
