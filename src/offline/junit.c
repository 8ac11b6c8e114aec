/* JUnit XML for replay (see junit.h). Every string in the XML comes from
 * a capture (routes, targets, JSON pointers made of body keys), so each
 * is escaped for XML 1.0: markup characters as entities (so "]]>" is
 * inert: no CDATA is used), tab, newline and carriage return as character
 * references, and what XML cannot hold at all (other C0 controls, bytes
 * that are not UTF-8, U+FFFE and U+FFFF) as the text \xNN, readable and
 * parseable. Per route, at most MAX_SHOWN failing exchanges are listed
 * in a case; per exchange, cases go to a temporary file as they come. */
#include "junit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "utf8.h"

#define MAX_ROUTES 1000
#define MAX_SHOWN 50
#define VALUE_MAX 1024

typedef struct jroute_s {
  char *name;
  uint64_t tests, failures, skipped, more;
  double seconds;
  shadow_buf_t shown; /* the failing exchanges, one a line, escaped */
  const char *first_type;
} jroute_t;

struct shadow_junit_s {
  int per_exchange;
  FILE *cases; /* per exchange: the escaped test cases */
  jroute_t *routes;
  size_t nroutes, cap;
  uint64_t tests, failures, skipped;
  double seconds;
  int oom;
};

/* Appends s[0..n) escaped for an XML attribute or text, cut at max
 * bytes of input with an ellipsis. */
static void xml_put(shadow_buf_t *b, const char *s, size_t n, size_t max) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    if (i >= max) {
      shadow_buf_puts(b, "\xe2\x80\xa6");
      return;
    }
    unsigned char c = u[i];
    size_t k = shadow_utf8_seq(u + i, n - i);
    if (k == 3 && c == 0xef && u[i + 1] == 0xbf && u[i + 2] >= 0xbe)
      k = 0; /* U+FFFE, U+FFFF: not XML characters */
    if (k == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')) {
      shadow_buf_printf(b, "\\x%02X", c);
      i++;
      continue;
    }
    switch (c) {
    case '&': shadow_buf_puts(b, "&amp;"); break;
    case '<': shadow_buf_puts(b, "&lt;"); break;
    case '>': shadow_buf_puts(b, "&gt;"); break;
    case '"': shadow_buf_puts(b, "&quot;"); break;
    case '\'': shadow_buf_puts(b, "&apos;"); break;
    case '\t': shadow_buf_puts(b, "&#9;"); break;
    case '\n': shadow_buf_puts(b, "&#10;"); break;
    case '\r': shadow_buf_puts(b, "&#13;"); break;
    default: shadow_buf_append(b, s + i, k);
    }
    i += k;
  }
}

static void xml_puts(shadow_buf_t *b, const char *s) {
  if (s) xml_put(b, s, strlen(s), VALUE_MAX);
}

shadow_junit_t *shadow_junit_new(int per_exchange) {
  shadow_junit_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->per_exchange = per_exchange;
  if (per_exchange && !(j->cases = tmpfile())) {
    free(j);
    return NULL;
  }
  return j;
}

static jroute_t *route_get(shadow_junit_t *j, const char *name) {
  if (!name || !*name) name = "(no route)";
  for (size_t i = 0; i < j->nroutes; i++)
    if (strcmp(j->routes[i].name, name) == 0) return &j->routes[i];
  if (j->nroutes >= MAX_ROUTES - 1) {
    /* The last slot takes every route past the bound. */
    name = "(other routes)";
    for (size_t i = 0; i < j->nroutes; i++)
      if (strcmp(j->routes[i].name, name) == 0) return &j->routes[i];
  }
  if (j->nroutes == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 16;
    jroute_t *v = realloc(j->routes, cap * sizeof *v);
    if (!v) return NULL;
    j->routes = v;
    j->cap = cap;
  }
  jroute_t *r = &j->routes[j->nroutes];
  memset(r, 0, sizeof *r);
  if (!(r->name = strdup(name))) return NULL;
  j->nroutes++;
  return r;
}

static int failing(shadow_junit_outcome_t o) {
  return o == SHADOW_JUNIT_DIVERGED || o == SHADOW_JUNIT_FAILED;
}

static const char *type_of(shadow_junit_outcome_t o) {
  return o == SHADOW_JUNIT_DIVERGED ? "divergence" : "candidate_error";
}

/* "file:line: METHOD target: what", escaped. */
static void where(shadow_buf_t *b, const shadow_junit_case_t *c) {
  xml_puts(b, c->file);
  shadow_buf_printf(b, ":%llu: ", (unsigned long long)c->line);
  xml_puts(b, c->method);
  shadow_buf_putc(b, ' ');
  xml_put(b, c->target ? c->target : "", c->target ? c->target_len : 0,
          VALUE_MAX);
}

static void what(shadow_buf_t *b, const shadow_junit_case_t *c) {
  shadow_buf_puts(b, c->outcome == SHADOW_JUNIT_DIVERGED ? "differs in "
                     : c->outcome == SHADOW_JUNIT_FAILED ? "candidate failed: "
                                                         : "skipped: ");
  xml_puts(b, c->detail);
}

static int add_exchange(shadow_junit_t *j, const shadow_junit_case_t *c) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  shadow_buf_puts(&b, "    <testcase classname=\"");
  xml_puts(&b, c->route && *c->route ? c->route : "(no route)");
  shadow_buf_puts(&b, "\" name=\"");
  xml_puts(&b, c->method);
  shadow_buf_putc(&b, ' ');
  xml_put(&b, c->target ? c->target : "", c->target ? c->target_len : 0,
          VALUE_MAX);
  shadow_buf_puts(&b, " (");
  xml_puts(&b, c->file);
  shadow_buf_printf(&b, ":%llu)\" file=\"", (unsigned long long)c->line);
  xml_puts(&b, c->file);
  shadow_buf_printf(&b, "\" line=\"%llu\" time=\"%.3f\"",
                    (unsigned long long)c->line, c->seconds);
  if (c->outcome == SHADOW_JUNIT_PASSED) {
    shadow_buf_puts(&b, "/>\n");
  } else if (c->outcome == SHADOW_JUNIT_SKIPPED) {
    shadow_buf_puts(&b, "><skipped message=\"");
    xml_puts(&b, c->detail);
    shadow_buf_puts(&b, "\"/></testcase>\n");
  } else {
    shadow_buf_printf(&b, ">\n      <failure type=\"%s\" message=\"",
                      type_of(c->outcome));
    what(&b, c);
    shadow_buf_puts(&b, "\">");
    where(&b, c);
    shadow_buf_puts(&b, ": ");
    what(&b, c);
    shadow_buf_puts(&b, "</failure>\n    </testcase>\n");
  }
  int rc = b.data && fwrite(b.data, 1, b.len, j->cases) == b.len ? 0 : -1;
  shadow_buf_free(&b);
  return rc;
}

int shadow_junit_add(shadow_junit_t *j, const shadow_junit_case_t *c) {
  j->tests++;
  j->seconds += c->seconds;
  j->failures += failing(c->outcome);
  j->skipped += c->outcome == SHADOW_JUNIT_SKIPPED;
  if (j->per_exchange) {
    if (add_exchange(j, c) != 0) j->oom = 1;
    return j->oom ? -1 : 0;
  }
  jroute_t *r = route_get(j, c->route);
  if (!r) {
    j->oom = 1;
    return -1;
  }
  r->tests++;
  r->seconds += c->seconds;
  r->skipped += c->outcome == SHADOW_JUNIT_SKIPPED;
  if (!failing(c->outcome)) return 0;
  if (!r->failures) r->first_type = type_of(c->outcome);
  r->failures++;
  if (r->failures > MAX_SHOWN) {
    r->more++;
    return 0;
  }
  where(&r->shown, c);
  shadow_buf_puts(&r->shown, ": ");
  what(&r->shown, c);
  shadow_buf_putc(&r->shown, '\n');
  return 0;
}

static void put_route(FILE *f, const jroute_t *r) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  shadow_buf_puts(&b, "    <testcase classname=\"shadowd replay\" name=\"");
  xml_puts(&b, r->name);
  shadow_buf_printf(&b, "\" time=\"%.3f\"", r->seconds);
  if (r->failures) {
    shadow_buf_printf(&b,
                      ">\n      <failure type=\"%s\" message=\"%llu of %llu "
                      "exchanges diverged or failed\">",
                      r->first_type, (unsigned long long)r->failures,
                      (unsigned long long)r->tests);
    shadow_buf_append(&b, r->shown.data ? r->shown.data : "", r->shown.len);
    if (r->more)
      shadow_buf_printf(&b, "... and %llu more\n", (unsigned long long)r->more);
    shadow_buf_puts(&b, "</failure>\n    </testcase>\n");
  } else if (r->skipped == r->tests) {
    shadow_buf_puts(&b, "><skipped message=\"no exchange compared: the live "
                        "primary failed\"/></testcase>\n");
  } else {
    shadow_buf_puts(&b, "/>\n");
  }
  fwrite(b.data ? b.data : "", 1, b.len, f);
  shadow_buf_free(&b);
}

int shadow_junit_write(shadow_junit_t *j, const char *path, const char *error,
                       const char *const *properties) {
  FILE *f = fopen(path, "w");
  if (!f) return -errno;
  uint64_t tests = j->per_exchange ? j->tests : j->nroutes, failures = 0,
           skipped = 0;
  if (j->per_exchange) {
    failures = j->failures;
    skipped = j->skipped;
  } else {
    for (size_t i = 0; i < j->nroutes; i++) {
      failures += j->routes[i].failures > 0;
      skipped +=
          !j->routes[i].failures && j->routes[i].skipped == j->routes[i].tests;
    }
  }
  int errors = error != NULL;
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<testsuites name=\"shadowd replay\" tests=\"%llu\" "
          "failures=\"%llu\" errors=\"%d\" skipped=\"%llu\" time=\"%.3f\">\n"
          "  <testsuite name=\"shadowd replay\" tests=\"%llu\" "
          "failures=\"%llu\" errors=\"%d\" skipped=\"%llu\" time=\"%.3f\">\n",
          (unsigned long long)(tests + errors), (unsigned long long)failures,
          errors, (unsigned long long)skipped, j->seconds,
          (unsigned long long)(tests + errors), (unsigned long long)failures,
          errors, (unsigned long long)skipped, j->seconds);
  shadow_buf_t b = SHADOW_BUF_INIT;
  if (properties && properties[0]) {
    shadow_buf_puts(&b, "    <properties>\n");
    for (size_t i = 0; properties[i] && properties[i + 1]; i += 2) {
      shadow_buf_puts(&b, "      <property name=\"");
      xml_puts(&b, properties[i]);
      shadow_buf_puts(&b, "\" value=\"");
      xml_puts(&b, properties[i + 1]);
      shadow_buf_puts(&b, "\"/>\n");
    }
    shadow_buf_puts(&b, "    </properties>\n");
  }
  fwrite(b.data ? b.data : "", 1, b.len, f);
  shadow_buf_free(&b);
  if (j->per_exchange) {
    char chunk[65536];
    size_t n;
    rewind(j->cases);
    while ((n = fread(chunk, 1, sizeof chunk, j->cases)) > 0)
      fwrite(chunk, 1, n, f);
  } else {
    for (size_t i = 0; i < j->nroutes; i++)
      put_route(f, &j->routes[i]);
  }
  if (error) {
    shadow_buf_puts(&b, "    <testcase classname=\"shadowd replay\" "
                        "name=\"replay\">\n      <error type=\"nothing_"
                        "compared\" message=\"");
    xml_puts(&b, error);
    shadow_buf_puts(&b, "\"/>\n    </testcase>\n");
    fwrite(b.data ? b.data : "", 1, b.len, f);
    shadow_buf_free(&b);
  }
  if (j->oom)
    fputs("    <system-err>out of memory: some cases are counted but not "
          "listed</system-err>\n",
          f);
  fputs("  </testsuite>\n</testsuites>\n", f);
  int rc = ferror(f) ? -EIO : 0;
  if (fclose(f) != 0 && !rc) rc = -errno;
  return rc;
}

void shadow_junit_free(shadow_junit_t *j) {
  if (!j) return;
  if (j->cases) fclose(j->cases);
  for (size_t i = 0; i < j->nroutes; i++) {
    free(j->routes[i].name);
    shadow_buf_free(&j->routes[i].shown);
  }
  free(j->routes);
  free(j);
}
