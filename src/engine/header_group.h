/* Header lines grouped by name, in time linear-logarithmic in the head's
 * size whatever the client sent: what every layer uses where it would
 * otherwise look each line's name up among all the others (joining
 * repeated headers, dropping what Connection names), which a head of
 * thousands of short lines turns into seconds of work. Pure: no I/O. */
#ifndef SHADOW_HEADER_GROUP_H
#define SHADOW_HEADER_GROUP_H

#include <stddef.h>

#include "record.h"

#define SHADOW_HEADER_GROUP_END ((size_t)-1)

/* Links each line of h to the next line with the same name compared
 * case-insensitively: next[i] is its index, or SHADOW_HEADER_GROUP_END for
 * a name's last line; first[i] is 1 for a name's first line, else 0.
 * Both arrays hold h->n entries, allocated by the caller. 0 or -ENOMEM. */
int shadow_headers_group(const shadow_headers_t *h, size_t *next,
                         unsigned char *first);

/* The groups of one side of a pair of lists (a pair of responses):
 * next and first as above, and peer[i], for a name's first line, the
 * index of the first line of that name on the other side, or
 * SHADOW_HEADER_GROUP_END. */
typedef struct shadow_header_groups_s {
  size_t *next;
  unsigned char *first;
  size_t *peer;
} shadow_header_groups_t;

/* Groups a and b in one sort, into ga and gb (allocated here; freed with
 * shadow_header_groups_free, also after a failure). 0 or -ENOMEM. */
int shadow_headers_pair(const shadow_headers_t *a, const shadow_headers_t *b,
                        shadow_header_groups_t *ga, shadow_header_groups_t *gb);
void shadow_header_groups_free(shadow_header_groups_t *g);

/* A set of names (Connection's tokens), looked up case-insensitively in
 * O(log n) comparisons. The strings are not copied: they must outlive the
 * set. */
typedef struct shadow_name_set_s {
  struct shadow_name_span_s *v;
  size_t n, cap;
  int sorted;
} shadow_name_set_t;

#define SHADOW_NAME_SET_INIT                                                   \
  { NULL, 0, 0, 0 }

/* Adds each comma-separated, trimmed, non-empty element of a list value.
 * 0 or -ENOMEM. */
int shadow_name_set_add_list(shadow_name_set_t *s, const char *v, size_t n);
/* Sorts the set after adds, for look-ups in O(log n). 0 or -ENOMEM. */
int shadow_name_set_sort(shadow_name_set_t *s);
/* Whether name is in the set: a binary search once sorted, a scan before. */
int shadow_name_set_has(const shadow_name_set_t *s, const char *name, size_t n);
void shadow_name_set_free(shadow_name_set_t *s);

/* Case-insensitive (ASCII) order of two names: <0, 0, >0. */
int shadow_name_cmp(const char *a, size_t an, const char *b, size_t bn);

#endif
