/* `shadowd diff [--config FILE] [--explain] [--descriptors FILE --message
 * TYPE] A B | DIR`: the same comparison the daemon makes, on files, for
 * CI pipelines and for trying rules out.
 *
 * With two files it prints the divergence record (exit 0 same, 1 differ,
 * 2 error). --explain prints instead what was reported and, for each
 * report, the rules that were tried at its path and why they did not
 * hold, and every difference a rule absorbed, with the rule: the JSON
 * rules report their own; what normalize absorbed is found by comparing
 * the pair as received with the pair normalized, and what ignore.headers
 * absorbed by comparing the normalized pair's headers without it. With a
 * directory it compares every pair NAME.primary / NAME.candidate in it
 * against its expectation (NAME.expect: "same", the default, or "differ"
 * optionally followed by the fields that must differ, one a line), prints
 * a table and how often each rule fired, and exits 0 when every pair came
 * out as expected, 1 when one did not, 2 when a pair could not be read:
 * a folder of known pairs kept next to the rules is a test of the rules.
 * With --descriptors and --message, protobuf bodies are decoded as that
 * message type, and a bare body that is not JSON is taken as protobuf
 * (content-type application/x-protobuf): two message files compare
 * field by field, by name. --path /pkg.Service/Method says which gRPC
 * call the records answer: gRPC bodies then decode with that method's
 * output type, from the config's grpc.descriptors or from --descriptors
 * (which --path alone lets stand without --message). */
#include "offline_diff.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "divergence.h"
#include "file.h"
#include "json.h"
#include "log.h"
#include "record_parse.h"
#include "script.h"

/* The rules when there is no config but --descriptors gave a schema. */
static shadow_diff_opts_t *own_opts;
/* --descriptors: bare bodies that are not JSON are protobuf messages. */
static int bare_protobuf;
/* --path: the request path gRPC replies are decoded for. */
static const char *call_path;

static int diff_at(const shadow_diff_opts_t *o, const shadow_record_t *p,
                   const shadow_record_t *c, shadow_diff_result_t *res,
                   shadow_buf_t *explain) {
  return shadow_diff_records_at(o, call_path, call_path ? strlen(call_path) : 0,
                                p, c, res, explain);
}

static const shadow_diff_opts_t *opts_of(shadow_gen_t *g) {
  return g && shadow_gen_config(g)->diff_opts ? shadow_gen_config(g)->diff_opts
                                              : own_opts;
}

static int load_record(const char *path, shadow_record_t *r) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = shadow_file_read(path, &b);
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path, strerror(-rc));
    shadow_buf_free(&b);
    return -1;
  }
  char err[256];
  int bare = b.len < 5 || memcmp(b.data, "HTTP/", 5) != 0;
  rc = shadow_record_parse(r, b.data ? b.data : "", b.len, err, sizeof(err));
  shadow_buf_free(&b);
  if (!rc && bare && bare_protobuf &&
      !shadow_headers_find(&r->headers, "content-type") &&
      shadow_headers_add(&r->headers, "content-type", 12,
                         "application/x-protobuf", 22)) {
    snprintf(err, sizeof err, "out of memory");
    rc = -ENOMEM;
  }
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path, err);
    return -1;
  }
  return 0;
}

/* One compared pair: the result and the rules' account. */
typedef struct {
  shadow_diff_result_t res;
  shadow_buf_t explain;
  int parts;
  /* With a config: the pair as received under the same rules (what
   * normalize absorbed is what differs there and not in res), the
   * normalized pair under no rule (the headers ignore.headers hid), and
   * what normalize changed on each side. */
  int normalized;     /* a normalize hook ran */
  int norm_failed[2]; /* and failed on the primary, the candidate */
  int have_raw;
  shadow_diff_result_t raw, bare, changed[2];
  shadow_buf_t raw_explain;
} outcome_t;

/* Loads, normalizes and compares a pair. 0, or -1 (said on stderr). */
static int compare(shadow_gen_t *g, const char *pa, const char *pc,
                   outcome_t *o) {
  shadow_record_t p, c, rp, rc_;
  shadow_record_init(&p);
  shadow_record_init(&c);
  shadow_record_init(&rp);
  shadow_record_init(&rc_);
  const shadow_diff_opts_t *opts = opts_of(g);
  int rc = -1;
  if (load_record(pa, &p) == 0 && load_record(pc, &c) == 0) {
    if (g && shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE) &&
        load_record(pa, &rp) == 0 && load_record(pc, &rc_) == 0) {
      o->normalized = 1;
      o->norm_failed[0] = shadow_script_normalize(g, 0, &p, "primary") != 0;
      o->norm_failed[1] = shadow_script_normalize(g, 0, &c, "candidate") != 0;
      o->have_raw = diff_at(opts, &rp, &rc_, &o->raw, &o->raw_explain) >= 0 &&
                    shadow_diff_records(NULL, &rp, &p, &o->changed[0]) >= 0 &&
                    shadow_diff_records(NULL, &rc_, &c, &o->changed[1]) >= 0;
    }
    o->parts = diff_at(opts, &p, &c, &o->res, &o->explain);
    if (o->parts >= 0 && opts && diff_at(NULL, &p, &c, &o->bare, NULL) < 0)
      o->parts = -ENOMEM;
    if (o->parts < 0)
      fprintf(stderr, "shadowd diff: %s: %s\n", pa, strerror(-o->parts));
    else
      rc = 0;
  }
  shadow_record_release(&p);
  shadow_record_release(&c);
  shadow_record_release(&rp);
  shadow_record_release(&rc_);
  return rc;
}

static void outcome_free(outcome_t *o) {
  shadow_diff_result_free(&o->res);
  shadow_buf_free(&o->explain);
  shadow_diff_result_free(&o->raw);
  shadow_diff_result_free(&o->bare);
  shadow_diff_result_free(&o->changed[0]);
  shadow_diff_result_free(&o->changed[1]);
  shadow_buf_free(&o->raw_explain);
}

/* ---- explaining -------------------------------------------------------- */

static const shadow_json_t *member(const shadow_json_t *o, const char *key) {
  if (!o || o->type != SHADOW_JSON_OBJECT) return NULL;
  long i = shadow_json_member_find(o, key, strlen(key));
  return i < 0 ? NULL : &o->u.members[i].value;
}

/* A string member as text (NUL-terminated copy in buf), or "". */
static const char *text_of(const shadow_json_t *o, const char *key, char *buf,
                           size_t cap) {
  const shadow_json_t *v = member(o, key);
  buf[0] = '\0';
  if (v && v->type == SHADOW_JSON_STRING)
    snprintf(buf, cap, "%.*s", (int)v->len, v->u.str);
  return buf;
}

static void put_value(FILE *f, const shadow_json_t *v) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  if (!v)
    shadow_buf_puts(&b, "(none)");
  else
    shadow_json_write(&b, v);
  fwrite(b.data ? b.data : "", 1, b.len, f);
  shadow_buf_free(&b);
}

/* A rule's name as the config writes it: coerce:/qty is coerce["/qty"],
 * ignore:/x is ignore.json "/x". */
static void put_rule(FILE *f, const char *name) {
  const char *colon = strchr(name, ':');
  if (!colon) {
    fputs(name, f);
    return;
  }
  int k = (int)(colon - name);
  if (k == 6 && strncmp(name, "ignore", 6) == 0)
    fprintf(f, "ignore.json \"%s\"", colon + 1);
  else
    fprintf(f, "%.*s[\"%s\"]", k, name, colon + 1);
}

/* 1 when path is at or under prefix, by JSON Pointer segments. */
static int under(const char *path, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

typedef struct {
  shadow_json_arena_t arena;
  shadow_json_t *lines;
  size_t n;
} lines_t;

/* Parses the explain lines. Lines that do not parse are skipped: they are
 * the engine's own output. */
static void lines_read(lines_t *l, const shadow_buf_t *ex) {
  memset(l, 0, sizeof *l);
  size_t count = 0;
  for (size_t i = 0; i < ex->len; i++)
    count += ex->data[i] == '\n';
  l->lines = calloc(count + 1, sizeof *l->lines);
  if (!l->lines) return;
  const char *p = ex->data, *end = ex->data + ex->len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (shadow_json_parse(&l->arena, p, len, &l->lines[l->n], NULL, NULL) == 0)
      l->n++;
    p = nl ? nl + 1 : NULL;
  }
}

static void lines_free(lines_t *l) {
  shadow_json_arena_free(&l->arena);
  free(l->lines);
}

static int kind_is(const shadow_json_t *line, const char *kind) {
  char k[32];
  return strcmp(text_of(line, "kind", k, sizeof k), kind) == 0;
}

/* 1 when field is one of res's differing fields. */
static int has_field(const shadow_diff_result_t *res, const char *field) {
  const char *f = res->fields.data;
  for (size_t i = 0; i < res->nfields && f; i++, f += strlen(f) + 1)
    if (strcmp(f, field) == 0) return 1;
  return 0;
}

/* The parts of a result as one JSON object, parsed into arena. */
static int parts_parse(shadow_json_arena_t *arena,
                       const shadow_diff_result_t *res, shadow_buf_t *text,
                       shadow_json_t *out) {
  shadow_buf_putc(text, '{');
  shadow_buf_append(text, res->json.data ? res->json.data : "", res->json.len);
  shadow_buf_putc(text, '}');
  return shadow_json_parse(arena, text->data, text->len, out, NULL, NULL);
}

/* The header diff named name (lower case) in parsed parts, or NULL. */
static const shadow_json_t *header_entry(const shadow_json_t *parts,
                                         const char *name) {
  const shadow_json_t *hd = member(member(parts, "headers"), "diffs");
  char a[512];
  for (uint32_t i = 0; hd && hd->type == SHADOW_JSON_ARRAY && i < hd->len; i++)
    if (strcmp(text_of(&hd->u.items[i], "name", a, sizeof a), name) == 0)
      return &hd->u.items[i];
  return NULL;
}

/* Prints " p ~ c" for field as it differed in the raw comparison. */
static void raw_values(FILE *f, const shadow_json_t *parts, const lines_t *l,
                       const char *field) {
  const shadow_json_t *pv = NULL, *cv = NULL;
  char a[512];
  if (strcmp(field, "status") == 0) {
    pv = member(member(parts, "status"), "primary");
    cv = member(member(parts, "status"), "candidate");
  } else if (strncmp(field, "header:", 7) == 0) {
    const shadow_json_t *h = header_entry(parts, field + 7);
    pv = member(h, "primary");
    cv = member(h, "candidate");
  } else if (strncmp(field, "body:", 5) == 0) {
    for (size_t i = 0; i < l->n && !pv && !cv; i++)
      if (kind_is(&l->lines[i], "reported") &&
          strcmp(text_of(&l->lines[i], "path", a, sizeof a), field + 5) == 0) {
        pv = member(&l->lines[i], "primary");
        cv = member(&l->lines[i], "candidate");
      }
  } else if (strcmp(field, "body") == 0) {
    fprintf(f, " (%s)", text_of(member(parts, "body"), "summary", a, sizeof a));
    return;
  }
  if (!pv && !cv) return;
  fputs(": ", f);
  put_value(f, pv);
  fputs(" ~ ", f);
  put_value(f, cv);
}

/* What normalize did to each side, and what it and ignore.headers
 * absorbed (the JSON rules report their own). Prints when f is not NULL;
 * returns how many differences were absorbed. */
static size_t absorbed_before(FILE *f, const outcome_t *o, const char *indent) {
  size_t absorbed = 0;
  static const char *const side[2] = {"primary", "candidate"};
  if (o->normalized && f)
    for (int k = 0; k < 2; k++) {
      if (o->norm_failed[k]) {
        fprintf(f,
                "%snormalize failed on the %s: it was compared as "
                "received\n",
                indent, side[k]);
        continue;
      }
      if (!o->have_raw) continue;
      const shadow_diff_result_t *ch = &o->changed[k];
      if (!ch->nfields) {
        fprintf(f, "%snormalize left the %s as received\n", indent, side[k]);
        continue;
      }
      fprintf(f, "%snormalize changed the %s:", indent, side[k]);
      const char *x = ch->fields.data;
      for (size_t i = 0; i < ch->nfields && x; i++, x += strlen(x) + 1)
        fprintf(f, "%s %s", i ? "," : "", x);
      fputc('\n', f);
    }
  if (o->have_raw) {
    shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
    shadow_buf_t text = SHADOW_BUF_INIT;
    shadow_json_t parts;
    int parsed = parts_parse(&arena, &o->raw, &text, &parts) == 0;
    lines_t l;
    lines_read(&l, &o->raw_explain);
    const char *x = o->raw.fields.data;
    for (size_t i = 0; i < o->raw.nfields && x; i++, x += strlen(x) + 1) {
      if (has_field(&o->res, x)) continue;
      absorbed++;
      if (!f) continue;
      /* As the other lines name it: header NAME, a bare pointer. */
      if (strncmp(x, "header:", 7) == 0)
        fprintf(f, "%sabsorbed  header %s", indent, x + 7);
      else
        fprintf(f, "%sabsorbed  %s", indent,
                strncmp(x, "body:", 5) == 0 ? x + 5 : x);
      if (parsed) raw_values(f, &parts, &l, x);
      fputs("  by normalize: different as received, the same once "
            "normalized\n",
            f);
    }
    lines_free(&l);
    shadow_buf_free(&text);
    shadow_json_arena_free(&arena);
  }
  /* Headers that differ in the normalized pair under no rule but are not
   * reported under the config's: ignore.headers is the one header rule. */
  if (o->bare.nfields) {
    shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
    shadow_buf_t text = SHADOW_BUF_INIT;
    shadow_json_t parts;
    if (parts_parse(&arena, &o->bare, &text, &parts) == 0) {
      const shadow_json_t *hd = member(member(&parts, "headers"), "diffs");
      for (uint32_t i = 0; hd && hd->type == SHADOW_JSON_ARRAY && i < hd->len;
           i++) {
        char name[512], field[520];
        text_of(&hd->u.items[i], "name", name, sizeof name);
        snprintf(field, sizeof field, "header:%s", name);
        if (has_field(&o->res, field)) continue;
        absorbed++;
        if (!f) continue;
        fprintf(f, "%sabsorbed  header %s: ", indent, name);
        put_value(f, member(&hd->u.items[i], "primary"));
        fputs(" ~ ", f);
        put_value(f, member(&hd->u.items[i], "candidate"));
        fprintf(f, "  by ignore.headers \"%s\": never compared\n", name);
      }
    }
    shadow_buf_free(&text);
    shadow_json_arena_free(&arena);
  }
  return absorbed;
}

/* Prints what was reported (status, headers, body ops with the rules
 * tried) and what the rules absorbed. Returns how many were absorbed. */
static size_t explain(FILE *f, const outcome_t *o, const char *indent) {
  shadow_buf_t rec = SHADOW_BUF_INIT;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t parts;
  shadow_buf_putc(&rec, '{');
  shadow_buf_append(&rec, o->res.json.data ? o->res.json.data : "",
                    o->res.json.len);
  shadow_buf_putc(&rec, '}');
  char a[512], b[512];
  size_t reported = 0, absorbed = absorbed_before(f, o, indent);
  if (shadow_json_parse(&arena, rec.data, rec.len, &parts, NULL, NULL) == 0) {
    const shadow_json_t *st = member(&parts, "status");
    const shadow_json_t *d = member(st, "differs");
    if (d && d->type == SHADOW_JSON_TRUE) {
      fprintf(f, "%sreported  status ", indent);
      put_value(f, member(st, "primary"));
      fputs(" -> ", f);
      put_value(f, member(st, "candidate"));
      fputc('\n', f);
      reported++;
    }
    const shadow_json_t *hd = member(member(&parts, "headers"), "diffs");
    for (uint32_t i = 0; hd && hd->type == SHADOW_JSON_ARRAY && i < hd->len;
         i++) {
      const shadow_json_t *h = &hd->u.items[i];
      fprintf(f, "%sreported  header %s: ", indent,
              text_of(h, "name", a, sizeof a));
      put_value(f, member(h, "primary"));
      fputs(" -> ", f);
      put_value(f, member(h, "candidate"));
      fputc('\n', f);
      reported++;
    }
    const shadow_json_t *body = member(&parts, "body");
    d = member(body, "differs");
    text_of(body, "kind", a, sizeof a);
    if (d && d->type == SHADOW_JSON_TRUE && strcmp(a, "json") != 0) {
      fprintf(f, "%sreported  body (%s): %s\n", indent, a,
              text_of(body, "summary", b, sizeof b));
      reported++;
    }
  }
  lines_t l;
  lines_read(&l, &o->explain);
  for (size_t i = 0; i < l.n; i++) {
    const shadow_json_t *e = &l.lines[i];
    if (!kind_is(e, "reported")) continue;
    reported++;
    text_of(e, "path", a, sizeof a);
    fprintf(f, "%sreported  %s %s", indent, text_of(e, "op", b, sizeof b), a);
    if (member(e, "from"))
      fprintf(f, " from %s", text_of(e, "from", b, sizeof b));
    if (member(e, "primary") || member(e, "candidate")) {
      fputs(": ", f);
      put_value(f, member(e, "primary"));
      fputs(" -> ", f);
      put_value(f, member(e, "candidate"));
    }
    fputc('\n', f);
    int tried = 0;
    const shadow_json_t *t = member(e, "tried");
    for (uint32_t k = 0; t && t->type == SHADOW_JSON_ARRAY && k < t->len; k++) {
      fprintf(f, "%s            tried ", indent);
      put_rule(f, text_of(&t->u.items[k], "rule", b, sizeof b));
      fprintf(f, ": %s\n", text_of(&t->u.items[k], "why", b, sizeof b));
      tried++;
    }
    /* A rename tried here: its target holds this path. */
    for (size_t j = 0; j < l.n; j++) {
      char to[512];
      if (!kind_is(&l.lines[j], "renamed") ||
          !under(a, text_of(&l.lines[j], "path", to, sizeof to)))
        continue;
      fprintf(f, "%s            tried ", indent);
      put_rule(f, text_of(&l.lines[j], "rule", b, sizeof b));
      fprintf(f, ": renamed from %s, and still different\n",
              text_of(&l.lines[j], "from", b, sizeof b));
      tried++;
    }
    if (!tried)
      fprintf(f, "%s            tried no rule: none names this path\n", indent);
  }
  for (size_t i = 0; i < l.n; i++) {
    const shadow_json_t *e = &l.lines[i];
    char rule[512];
    text_of(e, "rule", rule, sizeof rule);
    if (kind_is(e, "absorbed")) {
      fprintf(f, "%sabsorbed  %s", indent, text_of(e, "path", a, sizeof a));
      if (member(e, "primary") || member(e, "candidate")) {
        fputs(": ", f);
        put_value(f, member(e, "primary"));
        fputs(" ~ ", f);
        put_value(f, member(e, "candidate"));
      }
      fputs("  by ", f);
      put_rule(f, rule);
      fprintf(f, ": %s\n", text_of(e, "why", b, sizeof b));
      absorbed++;
    } else if (kind_is(e, "renamed") || kind_is(e, "not_renamed")) {
      int applied = kind_is(e, "renamed");
      text_of(e, "path", a, sizeof a);
      int still = 0;
      for (size_t j = 0; applied && j < l.n; j++) {
        char p[512];
        if (kind_is(&l.lines[j], "reported") &&
            under(text_of(&l.lines[j], "path", p, sizeof p), a))
          still = 1;
      }
      if (still) continue; /* shown as tried under the reports */
      fprintf(f, "%s%s %s -> %s  by ", indent,
              applied ? "absorbed " : "not renamed",
              text_of(e, "from", b, sizeof b), a);
      put_rule(f, rule);
      if (applied)
        fputs(": the same value under the new name\n", f);
      else
        fprintf(f, ": %s\n", text_of(e, "why", b, sizeof b));
      absorbed += (size_t)applied;
    }
  }
  if (!reported && !absorbed)
    fprintf(f, "%sthe same, and no rule was needed\n", indent);
  lines_free(&l);
  shadow_json_arena_free(&arena);
  shadow_buf_free(&rec);
  return absorbed;
}

/* ---- one pair ---------------------------------------------------------- */

static int one_pair(shadow_gen_t *g, const char *pa, const char *pc,
                    int explaining) {
  outcome_t o;
  memset(&o, 0, sizeof o);
  int code = 2;
  if (compare(g, pa, pc, &o) == 0) {
    if (explaining) {
      size_t absorbed = explain(stdout, &o, "");
      printf("%s; %zu difference%s absorbed by rules\n",
             o.parts ? "they differ" : "they agree", absorbed,
             absorbed == 1 ? "" : "s");
    } else {
      /* No request behind a file pair: route, method, path are null. */
      shadow_divergence_meta_t m = {.id = 1,
                                    .time_ms = shadow_wall_ms(),
                                    .primary_ms = -1,
                                    .candidate_ms = -1,
                                    .primary_first_ms = -1,
                                    .candidate_first_ms = -1};
      shadow_buf_t out = SHADOW_BUF_INIT;
      shadow_divergence_format(&out, &m, &o.res);
      printf("%s\n", out.data ? out.data : "{}");
      shadow_buf_free(&out);
    }
    code = o.parts ? 1 : 0;
  }
  outcome_free(&o);
  return code;
}

/* ---- a directory of pairs ---------------------------------------------- */

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The NAMEs of DIR/NAME.primary, sorted; NULL with *n 0 when none. */
static char **pair_names(const char *dir, size_t *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  char **names = NULL;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= 8 || strcmp(e->d_name + len - 8, ".primary") != 0) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      char **v = realloc(names, cap * sizeof *v);
      if (!v) break;
      names = v;
    }
    names[*n] = strndup(e->d_name, len - 8);
    if (names[*n]) (*n)++;
  }
  closedir(d);
  if (*n) qsort(names, *n, sizeof *names, by_name);
  return names;
}

typedef struct {
  int differ;    /* expected to differ */
  char **fields; /* when given: exactly these must differ */
  size_t nfields;
} expect_t;

static void expect_free(expect_t *x) {
  for (size_t i = 0; i < x->nfields; i++)
    free(x->fields[i]);
  free(x->fields);
}

/* NAME.expect: absent is "same". 0, or -1 with why. */
static int expect_read(const char *path, expect_t *x, const char **why) {
  memset(x, 0, sizeof *x);
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = shadow_file_read(path, &b);
  if (rc == -ENOENT) return 0;
  if (rc) {
    *why = strerror(-rc);
    shadow_buf_free(&b);
    return -1;
  }
  shadow_buf_putc(&b, '\0');
  char *save = NULL;
  int first = 1;
  rc = 0;
  for (char *line = strtok_r(b.data, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    while (*line == ' ' || *line == '\t')
      line++;
    size_t n = strlen(line);
    while (n &&
           (line[n - 1] == ' ' || line[n - 1] == '\r' || line[n - 1] == '\t'))
      line[--n] = '\0';
    if (!n || line[0] == '#') continue;
    if (first) {
      first = 0;
      if (strcmp(line, "same") == 0 || strcmp(line, "0") == 0) {
        x->differ = 0;
      } else if (strcmp(line, "differ") == 0 || strcmp(line, "1") == 0) {
        x->differ = 1;
      } else {
        *why = "the first line must be \"same\" or \"differ\"";
        rc = -1;
        break;
      }
      continue;
    }
    if (!x->differ) {
      *why = "fields are listed only after \"differ\"";
      rc = -1;
      break;
    }
    char **v = realloc(x->fields, (x->nfields + 1) * sizeof *v);
    if (!v) break;
    x->fields = v;
    x->fields[x->nfields++] = strdup(line);
  }
  shadow_buf_free(&b);
  return rc;
}

/* 1 when the result's fields are exactly the expected ones. */
static int fields_match(const shadow_diff_result_t *res, const expect_t *x) {
  size_t n = 0;
  const char *f = res->fields.data;
  for (size_t i = 0; i < res->nfields && f; i++, f += strlen(f) + 1) {
    int found = 0;
    for (size_t k = 0; k < x->nfields; k++)
      found |= strcmp(f, x->fields[k]) == 0;
    if (!found) return 0;
    n++;
  }
  return n == x->nfields;
}

/* The differing fields, joined by ", ", cut to fit a table cell. */
static void fields_text(const shadow_diff_result_t *res, char *out,
                        size_t cap) {
  out[0] = '\0';
  const char *f = res->fields.data;
  size_t len = 0;
  for (size_t i = 0; i < res->nfields && f; i++, f += strlen(f) + 1) {
    int w = snprintf(out + len, cap - len, "%s%s", i ? ", " : "", f);
    if (w < 0 || (size_t)w >= cap - len) {
      if (cap > 4) strcpy(out + cap - 4, "...");
      return;
    }
    len += (size_t)w;
  }
}

static int dir_mode(shadow_gen_t *g, const char *dir, int explaining) {
  size_t n = 0;
  char **names = pair_names(dir, &n);
  if (!n) {
    fprintf(stderr,
            "shadowd diff: %s holds no NAME.primary / NAME.candidate pairs\n",
            dir);
    free(names);
    return 2;
  }
  const shadow_diff_opts_t *opts = opts_of(g);
  /* How many pairs each rule fired in, by bit. */
  size_t fired[SHADOW_JSON_RULE_BITS];
  memset(fired, 0, sizeof fired);
  size_t ok = 0, bad = 0, errors = 0;
  outcome_t *outs = calloc(n, sizeof *outs);
  int *loaded = calloc(n, sizeof *loaded);
  if (!outs || !loaded) {
    free(outs);
    free(loaded);
    for (size_t i = 0; i < n; i++)
      free(names[i]);
    free(names);
    fprintf(stderr, "shadowd diff: out of memory\n");
    return 2;
  }
  printf("%-28s %-7s %-7s %-9s %s\n", "pair", "expect", "got", "absorbed",
         "differing fields");
  for (size_t i = 0; i < n; i++) {
    char pa[4096], pc[4096], pe[4096];
    snprintf(pa, sizeof pa, "%s/%s.primary", dir, names[i]);
    snprintf(pc, sizeof pc, "%s/%s.candidate", dir, names[i]);
    snprintf(pe, sizeof pe, "%s/%s.expect", dir, names[i]);
    expect_t x;
    const char *why = NULL;
    if (expect_read(pe, &x, &why) != 0) {
      printf("%-28s error: %s: %s\n", names[i], pe, why);
      errors++;
      continue;
    }
    if (compare(g, pa, pc, &outs[i]) != 0) {
      printf("%-28s error: see above\n", names[i]);
      errors++;
      expect_free(&x);
      continue;
    }
    loaded[i] = 1;
    outcome_t *o = &outs[i];
    lines_t l;
    lines_read(&l, &o->explain);
    size_t absorbed = absorbed_before(NULL, o, "");
    for (size_t k = 0; k < l.n; k++)
      absorbed +=
          kind_is(&l.lines[k], "absorbed") || kind_is(&l.lines[k], "renamed");
    lines_free(&l);
    for (size_t bit = 0; bit < SHADOW_JSON_RULE_BITS; bit++)
      fired[bit] += o->res.hits[bit / 64] >> (bit % 64) & 1;
    int differs = o->parts > 0;
    int as_expected = differs == x.differ &&
                      (!x.differ || !x.nfields || fields_match(&o->res, &x));
    char fields[80];
    fields_text(&o->res, fields, sizeof fields);
    printf("%-28s %-7s %-7s %-9zu %s%s\n", names[i],
           x.differ ? "differ" : "same", differs ? "differ" : "same", absorbed,
           fields, as_expected ? "" : "   <- NOT AS EXPECTED");
    if (as_expected)
      ok++;
    else
      bad++;
    expect_free(&x);
  }
  printf("\n%zu pair%s: %zu as expected, %zu not, %zu could not be read\n", n,
         n == 1 ? "" : "s", ok, bad, errors);
  size_t nrules = 0;
  shadow_diff_opts_rule_names(opts, NULL, &nrules);
  if (nrules) {
    printf("\n%-36s %s\n", "rule", "pairs it decided something in");
    for (size_t bit = 0; bit < SHADOW_JSON_RULE_BITS; bit++) {
      const char *name = shadow_diff_opts_rule_name(opts, bit);
      if (!name) continue;
      printf("%-36s %zu%s\n", name, fired[bit],
             fired[bit] ? ""
                        : " (never fired: a dead rule, or a pair missing)");
    }
  }
  if (explaining)
    for (size_t i = 0; i < n; i++) {
      if (!loaded[i]) continue;
      printf("\n== %s\n", names[i]);
      explain(stdout, &outs[i], "  ");
    }
  for (size_t i = 0; i < n; i++) {
    outcome_free(&outs[i]);
    free(names[i]);
  }
  free(outs);
  free(loaded);
  free(names);
  return errors ? 2 : bad ? 1 : 0;
}

/* ---- the command ------------------------------------------------------- */

/* --descriptors FILE --message TYPE: the schema protobuf bodies are read
 * with, added to the config's rules (or to rules of our own). 0, or -1
 * (said on stderr). */
static int load_descriptors(shadow_gen_t *g, const char *path,
                            const char *message) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = shadow_file_read(path, &b);
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path, strerror(-rc));
    shadow_buf_free(&b);
    return -1;
  }
  shadow_diff_opts_t *o = g ? shadow_gen_config(g)->diff_opts : NULL;
  if (!o) o = own_opts = shadow_diff_opts_new();
  char err[256] = "out of memory";
  rc = !o        ? -ENOMEM
       : message ? shadow_diff_opts_protobuf(o, b.data ? b.data : "", b.len,
                                             message, err, sizeof err)
                 : shadow_diff_opts_grpc(o, b.data ? b.data : "", b.len, err,
                                         sizeof err);
  shadow_buf_free(&b);
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path,
            rc == -ENOMEM ? "out of memory" : err);
    return -1;
  }
  bare_protobuf = message != NULL;
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: shadowd diff [--config FILE] [--explain] PRIMARY_FILE "
          "CANDIDATE_FILE\n"
          "       shadowd diff [--config FILE] [--explain] DIR   (pairs "
          "NAME.primary, NAME.candidate [, NAME.expect])\n"
          "                    [--descriptors FILE.pb --message pkg.Type]: "
          "protobuf bodies by field name\n"
          "                    [--path /pkg.Service/Method]: gRPC replies "
          "by that method's output type\n");
}

int shadow_offline_diff_main(int argc, char **argv) {
  const char *config = NULL, *descriptors = NULL, *message = NULL;
  const char *files[2] = {NULL, NULL};
  int nfiles = 0, explaining = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      config = argv[i] + 9;
    } else if (strcmp(argv[i], "--explain") == 0) {
      explaining = 1;
    } else if (strcmp(argv[i], "--descriptors") == 0 && i + 1 < argc) {
      descriptors = argv[++i];
    } else if (strcmp(argv[i], "--message") == 0 && i + 1 < argc) {
      message = argv[++i];
    } else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
      call_path = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "shadowd diff: unknown option %s\n", argv[i]);
      return 2;
    } else if (nfiles < 2) {
      files[nfiles++] = argv[i];
    } else {
      nfiles++;
    }
  }
  struct stat st;
  int is_dir = nfiles == 1 && stat(files[0], &st) == 0 && S_ISDIR(st.st_mode);
  if (nfiles != 2 && !is_dir) {
    usage();
    return 2;
  }
  if (!descriptors != !message && !(descriptors && call_path)) {
    fprintf(stderr, "shadowd diff: --descriptors and --message go together "
                    "(a descriptor set from protoc --descriptor_set_out=FILE "
                    "--include_imports, and a message type in it), or "
                    "--descriptors and --path\n");
    return 2;
  }
  shadow_gen_t *g = NULL;
  if (config) {
    char *err = NULL;
    if (shadow_script_load(config, &g, &err) != 0) {
      fprintf(stderr, "shadowd diff: %s\n", err);
      free(err);
      return 2;
    }
  }
  if (descriptors && load_descriptors(g, descriptors, message) != 0) {
    shadow_gen_unref(g);
    shadow_diff_opts_free(own_opts);
    own_opts = NULL;
    return 2;
  }
  int code = is_dir ? dir_mode(g, files[0], explaining)
                    : one_pair(g, files[0], files[1], explaining);
  shadow_gen_unref(g);
  shadow_diff_opts_free(own_opts);
  own_opts = NULL;
  return code;
}
