/* The diff's rules: building them from pointers (json_diff.h), their names
 * and descriptions, and the value classes the leaf rules compare by
 * (json_rules.h).
 *
 * What the rules added here mean, beside ignore, arrays and tolerance:
 *
 * - coerce (number | boolean): a string that holds a JSON number (exactly:
 *   "12", "-1.5e3", no spaces) is read as that number, "true" and "false"
 *   as booleans; then the two values compare as usual (with a tolerance at
 *   the same path, numbers within it are equal). A string that holds no
 *   number is compared as it is, so "abc" against 12 still differs.
 * - mask (uuid | hex | iso8601 | epoch | a Lua pattern): two values that
 *   both match compare equal; otherwise they compare as usual, so a value
 *   that stops matching is reported. uuid is 8-4-4-4-12 hex digits; hex is
 *   one or more hex digits; iso8601 a date, or a date and time with an
 *   optional zone; epoch a number >= 0 (or a string of digits with an
 *   optional fraction); a pattern (pattern.h) must match all of a string,
 *   or of a number as written.
 * - time (unit instant | s | ms, tolerance_ms): two values that are both
 *   instants compare by the time they name, equal within tolerance_ms. An
 *   instant is an RFC 3339 date-time with a zone (Z, z, +hh:mm, +hhmm;
 *   "T", "t" or a space between date and time; any fraction of a second,
 *   read to the microsecond; second 60 as the next minute's 0), or epoch
 *   time as a number or a string of digits: seconds, milliseconds,
 *   microseconds or nanoseconds told apart by magnitude (below 10^11,
 *   10^14, 10^17: year 5138 in seconds, 1973 in milliseconds), unless the
 *   unit says s or ms.
 * - rename (from = to): before the walk, the primary's member at from
 *   moves to to, so the candidate's value there is compared with it and
 *   neither is reported as added or removed; the other rules name paths as
 *   the candidate has them. Wildcards bind in order: with a "*" for the
 *   index in both paths, items' "email" becomes "email_address" in every
 *   element. Objects on
 *   the way to a target the primary lacks are created; where the primary
 *   already has a value at the target, or no object to hold it, the rename
 *   does not apply there (nothing is overwritten). Renames whose sources
 *   lie inside each other, or a target inside another source, are refused
 *   when they are added: the result would depend on their order. Targets
 *   are filled shallowest first, so a rename into a renamed object works. */
#include "json_rules.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pattern.h"

shadow_json_rules_t *shadow_json_rules_new(void) {
  return calloc(1, sizeof(shadow_json_rules_t));
}

static void path_free(path_t *p) {
  free(p->segs);
  free(p->store);
  memset(p, 0, sizeof *p);
}

void shadow_json_rules_free(shadow_json_rules_t *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) {
    path_free(&r->r[i].path);
    free(r->r[i].key);
    free(r->r[i].name);
    free(r->r[i].desc);
  }
  for (int i = 0; i < r->nren; i++) {
    path_free(&r->ren[i].from);
    path_free(&r->ren[i].to);
    free(r->ren[i].name);
    free(r->ren[i].desc);
  }
  free(r->names);
  free(r->segtab);
  free(r);
}

/* Splits an RFC 6901 pointer into unescaped segments. */
static int path_parse(const char *pointer, path_t *out) {
  memset(out, 0, sizeof *out);
  size_t n = strlen(pointer);
  if (n && pointer[0] != '/') return -EINVAL;
  int nseg = 0;
  for (size_t i = 0; i < n; i++)
    nseg += pointer[i] == '/';
  if (nseg >= SHADOW_JSON_MAX_DEPTH) return -EINVAL;
  out->store = malloc(n + 1);
  out->segs = calloc((size_t)nseg + 1, sizeof(seg_t));
  if (!out->store || !out->segs) {
    path_free(out);
    return -ENOMEM;
  }
  out->nseg = nseg;
  char *o = out->store;
  size_t i = 0;
  for (int k = 0; k < nseg; k++) {
    seg_t *sg = &out->segs[k];
    i++; /* the '/' */
    sg->s = o;
    while (i < n && pointer[i] != '/') {
      char c = pointer[i++];
      if (c == '~') {
        char e = i < n ? pointer[i] : 0;
        if (e != '0' && e != '1' && e != '2') {
          path_free(out);
          return -EINVAL;
        }
        i++;
        c = e == '0' ? '~' : e == '1' ? '/' : '\0'; /* ~2: field.h */
      }
      *o++ = c;
    }
    sg->len = (size_t)(o - sg->s);
    sg->star = sg->len == 1 && sg->s[0] == '*';
    sg->idx = -1;
    if (sg->len > 0 && sg->len <= 9 && (sg->s[0] != '0' || sg->len == 1)) {
      long v = 0;
      size_t j = 0;
      for (; j < sg->len && sg->s[j] >= '0' && sg->s[j] <= '9'; j++)
        v = v * 10 + (sg->s[j] - '0');
      if (j == sg->len) sg->idx = v;
    }
  }
  return 0;
}

static char *printf_dup(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *printf_dup(const char *fmt, ...) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  int rc = shadow_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (rc) {
    shadow_buf_free(&b);
    return NULL;
  }
  return shadow_buf_steal(&b, NULL);
}

static const char *const kind_names[] = {"ignore", "arrays", "tolerance",
                                         "coerce", "mask",   "time"};

/* The segment tables (json_rules.h), rebuilt after each walk rule. */
static int segtab_rebuild(shadow_json_rules_t *r) {
  int maxseg = 0;
  for (int i = 0; i < r->n; i++)
    if (r->r[i].nseg > maxseg) maxseg = r->r[i].nseg;
  uint64_t *t = calloc((size_t)(maxseg + 1) * SHADOW_SEGTAB_ROW, sizeof *t);
  if (!t) return -ENOMEM;
  for (int i = 0; i < r->n; i++) {
    uint64_t bit = (uint64_t)1 << i;
    const rule_t *ru = &r->r[i];
    t[(size_t)ru->nseg * SHADOW_SEGTAB_ROW + SEGTAB_ENDS] |= bit;
    for (int d = 0; d < ru->nseg; d++) {
      uint64_t *row = &t[(size_t)d * SHADOW_SEGTAB_ROW];
      const seg_t *sg = &ru->segs[d];
      if (sg->star) {
        row[SEGTAB_STAR] |= bit;
        continue;
      }
      if (sg->idx >= 0) row[SEGTAB_INDEX] |= bit;
      row[SEGTAB_KEYS + shadow_segtab_bucket(sg->s, sg->len)] |= bit;
    }
  }
  free(r->segtab);
  r->segtab = t;
  r->maxseg = maxseg;
  return 0;
}

/* The names in bit order, rebuilt after each rule (there are few), and
 * the segment tables. */
static int names_rebuild(shadow_json_rules_t *r) {
  if (segtab_rebuild(r)) return -ENOMEM;
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = 0;
  for (int i = 0; i < r->n && !rc; i++)
    rc = shadow_buf_append(&b, r->r[i].name, strlen(r->r[i].name) + 1);
  for (int i = 0; i < r->nren && !rc; i++)
    rc = shadow_buf_append(&b, r->ren[i].name, strlen(r->ren[i].name) + 1);
  if (rc) {
    shadow_buf_free(&b);
    return -ENOMEM;
  }
  free(r->names);
  r->names_len = b.len;
  r->names = shadow_buf_steal(&b, NULL);
  return 0;
}

/* Takes a slot for a walk rule; the caller fills in what is its kind's,
 * then commits with rule_commit (or drops it with rule_drop). */
static int rule_add(shadow_json_rules_t *r, int kind, const char *pointer,
                    rule_t **out) {
  if (!r || !pointer) return -EINVAL;
  if (r->n >= SHADOW_JSON_MAX_RULES) return -EINVAL;
  rule_t *ru = &r->r[r->n];
  memset(ru, 0, sizeof *ru);
  int rc = path_parse(pointer, &ru->path);
  if (rc) return rc;
  ru->kind = kind;
  ru->nseg = ru->path.nseg;
  ru->segs = ru->path.segs;
  ru->name = printf_dup("%s:%s", kind_names[kind], pointer);
  if (!ru->name) {
    path_free(&ru->path);
    return -ENOMEM;
  }
  *out = ru;
  return 0;
}

static void rule_drop(rule_t *ru) {
  path_free(&ru->path);
  free(ru->key);
  free(ru->name);
  free(ru->desc);
  memset(ru, 0, sizeof *ru);
}

static int rule_commit(shadow_json_rules_t *r, rule_t *ru, char *desc) {
  if (!desc) {
    rule_drop(ru);
    return -ENOMEM;
  }
  ru->desc = desc;
  r->n++;
  if (names_rebuild(r)) {
    r->n--;
    rule_drop(ru);
    return -ENOMEM;
  }
  return 0;
}

int shadow_json_rules_ignore(shadow_json_rules_t *r, const char *pointer) {
  rule_t *ru;
  int rc = rule_add(r, RULE_IGNORE, pointer, &ru);
  if (rc) return rc;
  return rule_commit(r, ru, printf_dup("ignored"));
}

int shadow_json_rules_array(shadow_json_rules_t *r, const char *pointer,
                            int mode, const char *key) {
  static const char *const modes[] = {"by index", "as a set", "as a multiset"};
  if (mode < SHADOW_ARRAY_INDEX || mode > SHADOW_ARRAY_KEY) return -EINVAL;
  if (mode == SHADOW_ARRAY_KEY && (!key || !*key)) return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_ARRAY, pointer, &ru);
  if (rc) return rc;
  ru->mode = mode;
  char *desc;
  if (mode == SHADOW_ARRAY_KEY) {
    ru->klen = strlen(key);
    ru->key = malloc(ru->klen + 1);
    if (!ru->key) {
      rule_drop(ru);
      return -ENOMEM;
    }
    memcpy(ru->key, key, ru->klen + 1);
    desc = printf_dup("elements paired by the member %s", key);
  } else {
    desc = printf_dup("compared %s", modes[mode]);
  }
  return rule_commit(r, ru, desc);
}

int shadow_json_rules_tolerance(shadow_json_rules_t *r, const char *pointer,
                                double tolerance) {
  if (!(tolerance >= 0) || isinf(tolerance)) return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_TOLERANCE, pointer, &ru);
  if (rc) return rc;
  ru->tol = tolerance;
  return rule_commit(r, ru,
                     printf_dup("numbers within %g are equal", tolerance));
}

int shadow_json_rules_coerce(shadow_json_rules_t *r, const char *pointer,
                             int kind) {
  if (kind != SHADOW_COERCE_NUMBER && kind != SHADOW_COERCE_BOOLEAN)
    return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_COERCE, pointer, &ru);
  if (rc) return rc;
  ru->mode = kind;
  return rule_commit(
      r, ru,
      printf_dup("%s",
                 kind == SHADOW_COERCE_NUMBER
                     ? "a number in a string equals the number"
                     : "\"true\"/\"false\" in a string equal the boolean"));
}

static const char *const mask_names[] = {"",        "uuid",  "hex",
                                         "iso8601", "epoch", "pattern"};

int shadow_json_rules_mask(shadow_json_rules_t *r, const char *pointer, int cls,
                           const char *pattern, const char **why) {
  if (why) *why = NULL;
  if (cls < SHADOW_MASK_UUID || cls > SHADOW_MASK_PATTERN) return -EINVAL;
  size_t plen = 0;
  if (cls == SHADOW_MASK_PATTERN) {
    if (!pattern) return -EINVAL;
    plen = strlen(pattern);
    if (shadow_pattern_check(pattern, plen, why)) return -EINVAL;
  }
  rule_t *ru;
  int rc = rule_add(r, RULE_MASK, pointer, &ru);
  if (rc) return rc;
  ru->mode = cls;
  char *desc;
  if (cls == SHADOW_MASK_PATTERN) {
    ru->key = malloc(plen + 1);
    if (!ru->key) {
      rule_drop(ru);
      return -ENOMEM;
    }
    memcpy(ru->key, pattern, plen + 1);
    ru->klen = plen;
    desc = printf_dup("values matching the pattern %s are equal", pattern);
  } else {
    desc = printf_dup("values that are both %s are equal", mask_names[cls]);
  }
  return rule_commit(r, ru, desc);
}

int shadow_json_rules_time(shadow_json_rules_t *r, const char *pointer,
                           int unit, double tolerance_ms) {
  static const char *const units[] = {"seconds or milliseconds by size",
                                      "seconds", "milliseconds"};
  if (unit < SHADOW_TIME_INSTANT || unit > SHADOW_TIME_MS) return -EINVAL;
  if (!(tolerance_ms >= 0) || tolerance_ms > 1e15) return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_TIME, pointer, &ru);
  if (rc) return rc;
  ru->mode = unit;
  ru->tol = floor(tolerance_ms * 1000 + 0.5);
  return rule_commit(r, ru,
                     printf_dup("instants (RFC 3339, or epoch %s) equal "
                                "within %g ms",
                                units[unit], tolerance_ms));
}

/* ---- renames ---------------------------------------------------------- */

static int seg_same(const seg_t *a, const seg_t *b) {
  return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* 1 when every path p names is inside (or is) one that q names: p's
 * segments lead q's, a "*" on either side matching anything. */
static int path_under(const path_t *p, const path_t *q) {
  if (q->nseg > p->nseg) return 0;
  for (int i = 0; i < q->nseg; i++)
    if (!p->segs[i].star && !q->segs[i].star &&
        !seg_same(&p->segs[i], &q->segs[i]))
      return 0;
  return 1;
}

static int path_equal(const path_t *p, const path_t *q) {
  if (p->nseg != q->nseg) return 0;
  for (int i = 0; i < p->nseg; i++)
    if (!seg_same(&p->segs[i], &q->segs[i])) return 0;
  return 1;
}

static int stars_of(const path_t *p) {
  int n = 0;
  for (int i = 0; i < p->nseg; i++)
    n += p->segs[i].star;
  return n;
}

static int refuse(const char **why, const char *text) {
  if (why) *why = text;
  return -EINVAL;
}

/* The rename's conflicts with the others, in words. */
static int rename_conflict(const shadow_json_rules_t *r, const rename_t *n,
                           const char **why) {
  if (n->from.nseg == 0 || n->to.nseg == 0)
    return refuse(why, "a rename moves an object member, and neither path "
                       "may be the whole document");
  if (n->stars != stars_of(&n->to))
    return refuse(why, "both paths must hold as many * as each other, which "
                       "bind in order");
  if (path_equal(&n->from, &n->to))
    return refuse(why, "it renames a path to itself");
  if (path_under(&n->from, &n->to) || path_under(&n->to, &n->from))
    return refuse(why, "one of its paths lies inside the other");
  for (int i = 0; i < r->nren; i++) {
    const rename_t *o = &r->ren[i];
    if (path_under(&n->from, &o->from) || path_under(&o->from, &n->from))
      return refuse(why, "its source and another rename's source lie inside "
                         "each other; name the inner one by the path it "
                         "has after the outer rename");
    if (path_under(&n->to, &o->from) || path_under(&o->to, &n->from))
      return refuse(why, "a target lies inside another rename's source, "
                         "which moves away");
    if (path_equal(&n->to, &o->to))
      return refuse(why, "another rename has the same target");
  }
  return 0;
}

int shadow_json_rules_rename(shadow_json_rules_t *r, const char *from,
                             const char *to, const char **why) {
  if (why) *why = NULL;
  if (!r || !from || !to || r->nren >= SHADOW_JSON_MAX_RENAMES) return -EINVAL;
  rename_t *n = &r->ren[r->nren];
  memset(n, 0, sizeof *n);
  int rc = path_parse(from, &n->from);
  if (!rc) rc = path_parse(to, &n->to);
  if (!rc) {
    n->stars = stars_of(&n->from);
    rc = rename_conflict(r, n, why);
  }
  if (!rc) {
    n->name = printf_dup("rename:%s", from);
    n->desc = printf_dup("compared with the candidate's %s", to);
    if (!n->name || !n->desc) rc = -ENOMEM;
  }
  if (!rc) {
    r->nren++;
    rc = names_rebuild(r);
    if (rc) r->nren--;
  }
  if (rc) {
    path_free(&n->from);
    path_free(&n->to);
    free(n->name);
    free(n->desc);
    memset(n, 0, sizeof *n);
  }
  return rc;
}

int shadow_json_rules_renames(const shadow_json_rules_t *r) {
  return r && r->nren > 0;
}

const char *shadow_json_rules_name(const shadow_json_rules_t *r, size_t bit) {
  if (!r) return NULL;
  if (bit < (size_t)r->n) return r->r[bit].name;
  if (bit >= 64 && bit - 64 < (size_t)r->nren) return r->ren[bit - 64].name;
  return NULL;
}

const char *shadow_json_rules_desc(const shadow_json_rules_t *r, size_t bit) {
  if (!r) return NULL;
  if (bit < (size_t)r->n) return r->r[bit].desc;
  if (bit >= 64 && bit - 64 < (size_t)r->nren) return r->ren[bit - 64].desc;
  return NULL;
}

const char *shadow_json_rules_names(const shadow_json_rules_t *r, size_t *len,
                                    size_t *n) {
  if (len) *len = r ? r->names_len : 0;
  if (n) *n = r ? (size_t)(r->n + r->nren) : 0;
  return r && r->names ? r->names : "";
}

/* ---- value classes ---------------------------------------------------- */

int shadow_rules_coerce(shadow_json_arena_t *a, const shadow_json_t *v,
                        int kind, shadow_json_t *out) {
  *out = *v;
  if (v->type != SHADOW_JSON_STRING) return 0;
  if (kind == SHADOW_COERCE_NUMBER) {
    /* Most strings that hold no number say so at their first byte. */
    char c = v->len ? v->u.str[0] : 'x';
    if (c != '-' && (c < '0' || c > '9')) return 0;
    int rc = shadow_json_parse_number(a, v->u.str, v->len, out);
    if (rc == 0) return 1;
    *out = *v;
    return rc == -ENOMEM ? rc : 0;
  }
  if (v->len == 4 && memcmp(v->u.str, "true", 4) == 0) {
    out->type = SHADOW_JSON_TRUE;
    return 1;
  }
  if (v->len == 5 && memcmp(v->u.str, "false", 5) == 0) {
    out->type = SHADOW_JSON_FALSE;
    return 1;
  }
  return 0;
}

/* 1 for the hex digits: masks test every character of every value. */
static const unsigned char hex_table[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1,
    ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1};

static int digit(char c) {
  return c >= '0' && c <= '9';
}

/* n decimal digits at s, as a number; -1 when they are not all digits. */
static long digits(const char *s, size_t n) {
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!digit(s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* 1 when the n bytes at s are all hex digits, and-ed without a branch
 * each: masks test every byte of every value at their path. */
static int hex_run(const char *s, size_t n) {
  unsigned ok = 1;
  for (size_t i = 0; i < n; i++)
    ok &= hex_table[(unsigned char)s[i]];
  return (int)ok;
}

static int is_uuid(const char *s, size_t n) {
  return n == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' &&
         s[23] == '-' &&
         hex_run(s, 8) & hex_run(s + 9, 4) & hex_run(s + 14, 4) &
             hex_run(s + 19, 4) & hex_run(s + 24, 12);
}

static int is_hex(const char *s, size_t n) {
  return n > 0 && hex_run(s, n);
}

/* Digits with at most one '.' between digits: epoch time in a string. */
static int is_decimal(const char *s, size_t n) {
  size_t i = 0, d = 0;
  while (i < n && digit(s[i]))
    i++, d++;
  if (d == 0) return 0;
  if (i < n && s[i] == '.') {
    size_t f = ++i;
    while (i < n && digit(s[i]))
      i++;
    if (i == f) return 0;
  }
  return i == n;
}

static int leap(long y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(long y, long m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar:
 * whole 400-year eras (146097 days each) from 0000-03-01, then the day
 * of the era, counting years from March so the leap day comes last. */
static long days_from_civil(long y, long m, long d) {
  y -= m <= 2;
  long era = (y >= 0 ? y : y - 399) / 400;
  long yoe = y - era * 400;
  long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

typedef struct {
  long y, mo, d, h, mi, sec;
  long us;  /* fraction of the second */
  long off; /* zone offset in seconds east */
  int time; /* a time of day was given */
  int zone; /* a zone was given */
  int frac; /* a fraction was given */
} stamp_t;

/* Reads an ISO 8601 extended date [time [zone]] from the whole of s: the
 * mask class takes what this accepts, a time rule the subset with a time
 * and a zone that RFC 3339 defines. */
static int stamp_parse(const char *s, size_t n, stamp_t *t) {
  memset(t, 0, sizeof *t);
  if (n < 10 || s[4] != '-' || s[7] != '-') return 0;
  t->y = digits(s, 4);
  t->mo = digits(s + 5, 2);
  t->d = digits(s + 8, 2);
  if (t->y < 0 || t->mo < 1 || t->mo > 12 || t->d < 1 ||
      t->d > month_days(t->y, t->mo))
    return 0;
  if (n == 10) return 1;
  size_t i = 10;
  if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return 0;
  i++;
  if (n < i + 5 || s[i + 2] != ':') return 0;
  t->h = digits(s + i, 2);
  t->mi = digits(s + i + 3, 2);
  if (t->h < 0 || t->h > 23 || t->mi < 0 || t->mi > 59) return 0;
  t->time = 1;
  i += 5;
  if (i < n && s[i] == ':') {
    if (n < i + 3) return 0;
    t->sec = digits(s + i + 1, 2);
    if (t->sec < 0 || t->sec > 60) return 0; /* 60: a leap second */
    i += 3;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
      size_t f = ++i;
      long scale = 100000;
      while (i < n && digit(s[i])) {
        t->us += (s[i] - '0') * scale;
        scale /= 10;
        i++;
      }
      if (i == f) return 0;
      t->frac = 1;
    }
  }
  if (i == n) return 1;
  if (s[i] == 'Z' || s[i] == 'z') {
    t->zone = 1;
    return i + 1 == n;
  }
  if (s[i] != '+' && s[i] != '-') return 0;
  int neg = s[i] == '-';
  i++;
  long oh, om = 0;
  if (n - i == 5 && s[i + 2] == ':') {
    oh = digits(s + i, 2);
    om = digits(s + i + 3, 2);
  } else if (n - i == 4) {
    oh = digits(s + i, 2);
    om = digits(s + i + 2, 2);
  } else if (n - i == 2) {
    oh = digits(s + i, 2);
  } else {
    return 0;
  }
  if (oh < 0 || oh > 23 || om < 0 || om > 59) return 0;
  t->off = (oh * 3600 + om * 60) * (neg ? -1 : 1);
  t->zone = 1;
  return 1;
}

int shadow_rules_rfc3339(const char *s, size_t n, int64_t *us) {
  stamp_t t;
  /* RFC 3339 needs seconds; stamp_parse leaves sec 0 without them, so
   * look for the second colon. */
  if (!stamp_parse(s, n, &t) || !t.time || !t.zone || n < 19 || s[16] != ':')
    return 0;
  int64_t sec = (int64_t)days_from_civil(t.y, t.mo, t.d) * 86400 + t.h * 3600 +
                t.mi * 60 + t.sec - t.off;
  *us = sec * 1000000 + t.us;
  return 1;
}

/* A normalized number (json.h: digits * 10^exp) in microseconds, scale
 * the power of ten from its unit to microseconds. 0 when it does not fit. */
static int scaled(const shadow_json_t *v, int scale, int64_t *out) {
  long e = (long)v->exp + scale;
  long nd = (long)v->len;
  if (nd == 0) {
    *out = 0;
    return 1;
  }
  if (nd + e > 18) return 0;
  int64_t x = 0;
  long keep = e >= 0 ? nd : nd + e;
  for (long i = 0; i < keep; i++)
    x = x * 10 + (v->u.digits[i] - '0');
  for (long i = 0; i < e; i++)
    x *= 10;
  if (e < 0 && keep >= 0 && keep < nd && v->u.digits[keep] >= '5') x++;
  *out = v->neg ? -x : x;
  return 1;
}

static int epoch_us(const shadow_json_t *v, int unit, int64_t *us) {
  int scale;
  if (unit == SHADOW_TIME_S) {
    scale = 6;
  } else if (unit == SHADOW_TIME_MS) {
    scale = 3;
  } else {
    /* Digits before the point tell the unit. */
    long whole = (long)v->len + v->exp;
    scale = whole <= 11 ? 6 : whole <= 14 ? 3 : whole <= 17 ? 0 : -3;
  }
  return scaled(v, scale, us);
}

int shadow_rules_instant(const shadow_json_t *v, int unit, int64_t *us) {
  if (v->type == SHADOW_JSON_NUMBER) return epoch_us(v, unit, us);
  if (v->type != SHADOW_JSON_STRING) return 0;
  if (shadow_rules_rfc3339(v->u.str, v->len, us)) return 1;
  if (!is_decimal(v->u.str, v->len) || v->len > 40) return 0;
  /* Epoch time in a string: normalized by hand, no arena needed. */
  char buf[40];
  size_t nd = 0;
  long exp = 0;
  int point = 0;
  for (size_t i = 0; i < v->len; i++) {
    char c = v->u.str[i];
    if (c == '.') {
      point = 1;
      continue;
    }
    if (nd == 0 && c == '0') {
      if (point) exp--;
      continue;
    }
    buf[nd++] = c;
    if (point) exp--;
  }
  while (nd && buf[nd - 1] == '0') {
    nd--;
    exp++;
  }
  shadow_json_t n;
  memset(&n, 0, sizeof n);
  n.type = SHADOW_JSON_NUMBER;
  n.len = (uint32_t)nd;
  n.exp = nd ? (int32_t)exp : 0;
  n.u.digits = buf;
  return epoch_us(&n, unit, us);
}

int shadow_rules_mask_match(const shadow_json_t *v, int cls, const char *pat,
                            size_t patlen) {
  if (cls == SHADOW_MASK_EPOCH) {
    if (v->type == SHADOW_JSON_NUMBER) return !v->neg;
    return v->type == SHADOW_JSON_STRING && is_decimal(v->u.str, v->len);
  }
  if (cls == SHADOW_MASK_PATTERN && v->type == SHADOW_JSON_NUMBER)
    return shadow_pattern_match(pat, patlen, v->raw, v->rawlen);
  if (v->type != SHADOW_JSON_STRING) return 0;
  const char *s = v->u.str;
  size_t n = v->len;
  stamp_t t;
  switch (cls) {
  case SHADOW_MASK_UUID: return is_uuid(s, n);
  case SHADOW_MASK_HEX: return is_hex(s, n);
  case SHADOW_MASK_ISO8601: return stamp_parse(s, n, &t);
  case SHADOW_MASK_PATTERN: return shadow_pattern_match(pat, patlen, s, n);
  default: return 0;
  }
}
