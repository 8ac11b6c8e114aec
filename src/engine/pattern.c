/* The Lua pattern subset of pattern.h: a backtracking matcher in the
 * shape Lua's own has (a loop over pattern items, recursion only where a
 * quantifier must try several lengths), with a step budget so that a
 * pattern such as "a*a*a*a*b" on a long value gives up instead of taking
 * exponential time. Written for this engine from the Lua manual's
 * description of patterns. Pure. */
#include "pattern.h"

#include <errno.h>
#include <string.h>

/* Past this many steps a match is abandoned (and counts as no match). */
#define MAX_STEPS 100000L

typedef struct {
  const char *s_end, *p_end;
  long steps;
} matcher_t;

static int is_lower(int c) {
  return c >= 'a' && c <= 'z';
}
static int is_upper(int c) {
  return c >= 'A' && c <= 'Z';
}
static int is_digit(int c) {
  return c >= '0' && c <= '9';
}
static int is_alpha(int c) {
  return is_lower(c) || is_upper(c);
}
static int is_alnum(int c) {
  return is_alpha(c) || is_digit(c);
}
static int is_space(int c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}
static int is_cntrl(int c) {
  return c < 32 || c == 127;
}
static int is_punct(int c) {
  return c > 32 && c < 127 && !is_alnum(c);
}
static int is_xdigit(int c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* c against the class letter cl (%a, %D, ...); a letter that names no
 * class, or any other character, stands for itself. */
static int class_match(int c, int cl) {
  int r;
  switch (cl | 0x20) {
  case 'a': r = is_alpha(c); break;
  case 'c': r = is_cntrl(c); break;
  case 'd': r = is_digit(c); break;
  case 'g': r = c > 32 && c < 127; break;
  case 'l': r = is_lower(c); break;
  case 'p': r = is_punct(c); break;
  case 's': r = is_space(c); break;
  case 'u': r = is_upper(c); break;
  case 'w': r = is_alnum(c); break;
  case 'x': r = is_xdigit(c); break;
  default: return cl == c;
  }
  return is_upper(cl) ? !r : r;
}

/* [p, ec) is a set: p at '[', ec at its closing ']'. */
static int set_match(int c, const char *p, const char *ec) {
  int sig = 1;
  if (p[1] == '^') {
    sig = 0;
    p++;
  }
  while (++p < ec) {
    if (*p == '%' && p + 1 < ec) {
      p++;
      if (class_match(c, (unsigned char)*p)) return sig;
    } else if (p + 2 < ec && p[1] == '-') {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return sig;
      p += 2;
    } else if ((unsigned char)*p == c) {
      return sig;
    }
  }
  return !sig;
}

/* The end of the single-character class at p (checked: never past the
 * end of the pattern). */
static const char *class_end(const matcher_t *m, const char *p) {
  if (*p == '%') return p + 2;
  if (*p != '[') return p + 1;
  p++;
  if (*p == '^') p++;
  do {
    if (*p++ == '%' && p < m->p_end) p++;
  } while (p < m->p_end && *p != ']');
  return p + 1;
}

static int single_match(int c, const char *p, const char *ep) {
  switch (*p) {
  case '.': return 1;
  case '%': return class_match(c, (unsigned char)p[1]);
  case '[': return set_match(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

static const char *do_match(matcher_t *m, const char *s, const char *p);

static const char *max_expand(matcher_t *m, const char *s, const char *p,
                              const char *ep) {
  size_t i = 0;
  while (s + i < m->s_end && single_match((unsigned char)s[i], p, ep))
    i++;
  for (;;) {
    const char *r = do_match(m, s + i, ep + 1);
    if (r || i == 0) return r;
    i--;
  }
}

static const char *min_expand(matcher_t *m, const char *s, const char *p,
                              const char *ep) {
  for (;;) {
    const char *r = do_match(m, s, ep + 1);
    if (r) return r;
    if (s < m->s_end && single_match((unsigned char)*s, p, ep))
      s++;
    else
      return NULL;
  }
}

/* The end of a match of [p, p_end) at s that reaches the end of the
 * value, or NULL. */
static const char *do_match(matcher_t *m, const char *s, const char *p) {
  for (;;) {
    if (++m->steps > MAX_STEPS) return NULL;
    if (p == m->p_end) return s == m->s_end ? s : NULL;
    if (*p == '(' || *p == ')') {
      p++; /* captures do not change what matches */
      continue;
    }
    if (*p == '$' && p + 1 == m->p_end) return s == m->s_end ? s : NULL;
    const char *ep = class_end(m, p);
    int ok = s < m->s_end && single_match((unsigned char)*s, p, ep);
    if (ep < m->p_end) {
      switch (*ep) {
      case '?':
        if (ok) {
          const char *r = do_match(m, s + 1, ep + 1);
          if (r) return r;
        }
        p = ep + 1;
        continue;
      case '+': return ok ? max_expand(m, s + 1, p, ep) : NULL;
      case '*': return max_expand(m, s, p, ep);
      case '-': return min_expand(m, s, p, ep);
      default: break;
      }
    }
    if (!ok) return NULL;
    s++;
    p = ep;
  }
}

static int bad(const char **why, const char *text) {
  if (why) *why = text;
  return -EINVAL;
}

int shadow_pattern_check(const char *p, size_t n, const char **why) {
  if (why) *why = NULL;
  if (n > SHADOW_PATTERN_MAX)
    return bad(why, "longer than 256 bytes, which mask patterns are not");
  int depth = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '%') {
      if (i + 1 >= n) return bad(why, "malformed pattern (ends with '%')");
      char e = p[i + 1];
      if (e == 'b' || e == 'f' || is_digit((unsigned char)e))
        return bad(why, "uses %b, %f or a back-reference, which mask "
                        "patterns do not support");
      i++;
    } else if (c == '[') {
      size_t j = i + 1;
      if (j < n && p[j] == '^') j++;
      /* The first character of a set is itself, even a ']'. */
      do {
        if (j >= n) return bad(why, "malformed pattern (missing ']')");
        if (p[j++] == '%') {
          if (j >= n) return bad(why, "malformed pattern (missing ']')");
          j++;
        }
      } while (j >= n || p[j] != ']');
      i = j;
    } else if (c == '(') {
      depth++;
    } else if (c == ')') {
      if (--depth < 0) return bad(why, "invalid pattern capture");
    }
  }
  if (depth) return bad(why, "unfinished capture");
  return 0;
}

int shadow_pattern_match(const char *p, size_t pn, const char *s, size_t sn) {
  matcher_t m = {s + sn, p + pn, 0};
  if (pn && *p == '^') p++; /* every match is anchored anyway */
  return do_match(&m, s, p) != NULL;
}
