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

/* A header list's names sorted once, for lists of names to be looked up
 * in it (Connection's tokens): each look-up is a binary search among the
 * lines, so thousands of tokens cost their size times log n, and nothing
 * is sorted per token. The list's strings are not copied. */
typedef struct shadow_header_index_s {
  struct shadow_name_span_s *v; /* the lines, sorted by name */
  unsigned char *marked;        /* per sorted position: its name was marked */
  size_t n;
} shadow_header_index_t;

/* 0 or -ENOMEM (x is then safe to free). */
int shadow_header_index_build(shadow_header_index_t *x,
                              const shadow_headers_t *h);
/* For each comma-separated, trimmed, non-empty element of list, sets
 * mark[i] = 1 for every line i of the list x indexes with that name. */
void shadow_header_index_mark(shadow_header_index_t *x, const char *list,
                              size_t n, unsigned char *mark);
void shadow_header_index_free(shadow_header_index_t *x);

/* Case-insensitive (ASCII) order of two names: <0, 0, >0. */
int shadow_name_cmp(const char *a, size_t an, const char *b, size_t bn);

#endif
