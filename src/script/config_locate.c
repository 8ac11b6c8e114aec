/* shadow_config_locate (config_locate.h). The entry is named in the
 * message the way the user wrote it: a table and a key, mask["/id"], or
 * a list entry and its value, ignore.json[2] "/x", or a field, unknown
 * field renames. The file is searched for the key as a Lua string literal
 * ("..." or '...') after the table's name and an "=", else anywhere, or
 * for the field's name followed by "=". Text after "--" on a line is a
 * comment and never matches. A heuristic, and it says so by returning 0
 * when it finds nothing rather than guessing. */
#include "config_locate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* The file's bytes, NUL-terminated, or NULL. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  shadow_buf_t b = SHADOW_BUF_INIT;
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (shadow_buf_append(&b, chunk, n)) break;
  fclose(f);
  if (shadow_buf_putc(&b, '\0')) {
    shadow_buf_free(&b);
    return NULL;
  }
  return shadow_buf_steal(&b, NULL);
}

/* 1 when at (in text) lies after a "--" on its line. */
static int in_comment(const char *text, const char *at) {
  const char *ls = at;
  while (ls > text && ls[-1] != '\n')
    ls--;
  for (const char *p = ls; p + 1 < at; p++)
    if (p[0] == '-' && p[1] == '-') return 1;
  return 0;
}

static long line_of(const char *text, const char *at) {
  long line = 1;
  for (const char *p = text; p < at; p++)
    line += *p == '\n';
  return line;
}

/* The first occurrence, from from on, of word followed by optional space
 * and "=" (not "=="), as a whole word outside comments; NULL if none. */
static const char *find_field(const char *text, const char *from,
                              const char *word, size_t n) {
  for (const char *p = from; (p = strstr(p, word)) != NULL; p++) {
    if (strncmp(p, word, n) != 0) continue;
    if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
    const char *q = p + n;
    while (*q == ' ' || *q == '\t')
      q++;
    if (*q != '=' || q[1] == '=') continue;
    if (in_comment(text, p)) continue;
    return p;
  }
  return NULL;
}

/* The first string literal holding exactly key, from from on. */
static const char *find_literal(const char *text, const char *from,
                                const char *key, size_t n) {
  for (const char *p = from; *p; p++) {
    if ((*p != '"' && *p != '\'') || strncmp(p + 1, key, n) != 0 ||
        p[n + 1] != *p)
      continue;
    if (in_comment(text, p)) continue;
    return p;
  }
  return NULL;
}

/* Copies the quoted text that starts at q (q at the opening quote) into
 * out; 0 when there is none. */
static int quoted(const char *q, char *out, size_t cap) {
  if (*q != '"') return 0;
  const char *e = strchr(q + 1, '"');
  if (!e || (size_t)(e - q - 1) >= cap) return 0;
  memcpy(out, q + 1, (size_t)(e - q - 1));
  out[e - q - 1] = '\0';
  return 1;
}

long shadow_config_locate(const char *path, const char *msg) {
  if (!path || !msg) return 0;
  if (strncmp(msg, "config: ", 8) == 0) msg += 8;
  char table[64] = "", key[512] = "";
  const char *b = strstr(msg, "[\"");
  const char *u = strstr(msg, "unknown field ");
  if (u && (!b || u < b)) {
    /* unknown field name, or unknown field a.b: the last part is what is
     * written in the file. */
    const char *w = u + 14, *e = w;
    while (*e && (isalnum((unsigned char)*e) || *e == '_' || *e == '.'))
      e++;
    const char *dot = w;
    for (const char *p = w; p < e; p++)
      if (*p == '.') dot = p + 1;
    if (e == dot || (size_t)(e - dot) >= sizeof key) return 0;
    memcpy(key, dot, (size_t)(e - dot));
    key[e - dot] = '\0';
    b = NULL;
  } else if (b) {
    /* name["key"]: the word before the bracket is the table. */
    const char *w = b;
    while (w > msg && (isalnum((unsigned char)w[-1]) || w[-1] == '_'))
      w--;
    if ((size_t)(b - w) >= sizeof table || !quoted(b + 1, key, sizeof key))
      return 0;
    memcpy(table, w, (size_t)(b - w));
    table[b - w] = '\0';
  } else {
    /* name.list[n] "value": the table is the list's name. */
    const char *br = strchr(msg, '[');
    const char *q = br ? strstr(br, "] \"") : NULL;
    if (!q || !quoted(q + 2, key, sizeof key)) return 0;
    const char *w = br;
    while (w > msg && (isalnum((unsigned char)w[-1]) || w[-1] == '_'))
      w--;
    if ((size_t)(br - w) >= sizeof table) return 0;
    memcpy(table, w, (size_t)(br - w));
    table[br - w] = '\0';
  }
  char *text = slurp(path);
  if (!text) return 0;
  long line = 0;
  const char *at = NULL;
  if (!*table) {
    at = find_field(text, text, key, strlen(key));
  } else {
    const char *t = find_field(text, text, table, strlen(table));
    if (t) at = find_literal(text, t, key, strlen(key));
    if (!at) at = find_literal(text, text, key, strlen(key));
  }
  if (at) line = line_of(text, at);
  free(text);
  return line;
}
