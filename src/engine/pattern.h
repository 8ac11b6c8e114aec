/* Lua patterns in C, for mask rules: the engine has no Lua, and a mask is
 * checked on every value at its path, so it must not call into a VM.
 * Single-character classes (. %a %c %d %g %l %p %s %u %w %x and their
 * upper-case complements, %-escapes, [sets] with ranges and ^), the
 * quantifiers * + - ?, the anchors ^ and $, and captures (which match as
 * if they were not there). %b, %f and back-references are refused when
 * the pattern is checked. A pattern matches a value only as a whole: the
 * match is anchored at both ends. Pure. */
#ifndef SHADOW_PATTERN_H
#define SHADOW_PATTERN_H

#include <stddef.h>

/* Patterns longer than this are refused, so a match stays cheap. */
#define SHADOW_PATTERN_MAX 256

/* 0 when p[0, n) is a pattern this matcher runs; otherwise -EINVAL and
 * *why (when not NULL) says what is wrong, in the words Lua would use. */
int shadow_pattern_check(const char *p, size_t n, const char **why);

/* 1 when the whole of s[0, sn) matches the checked pattern p[0, pn), 0
 * when it does not, or when the match would take more than a bounded
 * number of steps (a pathological pattern on a long value). */
int shadow_pattern_match(const char *p, size_t pn, const char *s, size_t sn);

#endif
