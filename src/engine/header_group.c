/* Grouping header lines by name and sets of names (see header_group.h).
 * Both sort: a hash table keyed by client-chosen names can be flooded with
 * colliding ones, a sort cannot, and its cost is bounded by the head's
 * bytes times the logarithm of its line count. */
#include "header_group.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct shadow_name_span_s {
  const char *s;
  size_t n;
  size_t i; /* the line it came from, when grouping a header list */
};

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

int shadow_name_cmp(const char *a, size_t an, const char *b, size_t bn) {
  size_t n = an < bn ? an : bn;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = lower((unsigned char)a[i]),
                  y = lower((unsigned char)b[i]);
    if (x != y) return x < y ? -1 : 1;
  }
  return an < bn ? -1 : an > bn ? 1 : 0;
}

/* The order the sorts use: by length, then case-insensitively by bytes.
 * Any total order in which equal names are adjacent serves grouping and
 * look-ups, and this one settles most comparisons on the lengths. */
static int span_cmp(const char *a, size_t an, const char *b, size_t bn) {
  if (an != bn) return an < bn ? -1 : 1;
  return shadow_name_cmp(a, an, b, bn);
}

/* Sorts v[0..n) by name (span_cmp), equal names keeping their order, with a
 * merge sort: stable and never quadratic, whatever the names. tmp holds n. */
static void sort_spans(struct shadow_name_span_s *v,
                       struct shadow_name_span_s *tmp, size_t n) {
  for (size_t width = 1; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, k = lo;
      /* Runs already in order (a name repeated line after line) are
       * taken whole: one comparison instead of one per line. */
      if (mid < hi &&
          span_cmp(v[mid].s, v[mid].n, v[mid - 1].s, v[mid - 1].n) >= 0) {
        memcpy(tmp + lo, v + lo, (hi - lo) * sizeof(*v));
        continue;
      }
      while (i < mid && j < hi) {
        /* Equal names keep their order: the left run came first. */
        if (span_cmp(v[j].s, v[j].n, v[i].s, v[i].n) < 0)
          tmp[k++] = v[j++];
        else
          tmp[k++] = v[i++];
      }
      while (i < mid)
        tmp[k++] = v[i++];
      while (j < hi)
        tmp[k++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof(*v));
  }
}

/* Up to this many lines, grouping compares each line with the first of
 * each group so far (at most SMALL_LINES^2 / 2 comparisons, most settled
 * on the lengths) on the stack: a response's usual head is grouped with
 * no allocation and no sort. Past it, the sort bounds the cost. */
#define SMALL_LINES 32

/* Puts v[0..n) in groups of equal names, each group's lines in their
 * order: all that grouping needs of the sort (groups in any order). */
static void group_small(struct shadow_name_span_s *v,
                        struct shadow_name_span_s *tmp, size_t n) {
  unsigned char taken[SMALL_LINES] = {0};
  size_t k = 0;
  for (size_t r = 0; r < n; r++) {
    if (taken[r]) continue;
    tmp[k++] = v[r];
    for (size_t j = r + 1; j < n; j++)
      if (!taken[j] && span_cmp(v[j].s, v[j].n, v[r].s, v[r].n) == 0) {
        taken[j] = 1;
        tmp[k++] = v[j];
      }
  }
  memcpy(v, tmp, n * sizeof(*v));
}

/* Groups v[0..n) (tmp holds n): by hand when small, else by the sort. */
static void group_spans(struct shadow_name_span_s *v,
                        struct shadow_name_span_s *tmp, size_t n) {
  if (n <= SMALL_LINES)
    group_small(v, tmp, n);
  else
    sort_spans(v, tmp, n);
}

int shadow_headers_group(const shadow_headers_t *h, size_t *next,
                         unsigned char *first) {
  size_t n = h->n;
  if (n == 0) return 0;
  struct shadow_name_span_s small[2 * SMALL_LINES];
  struct shadow_name_span_s *v =
      n <= SMALL_LINES ? small : malloc(2 * n * sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    v[i] = (struct shadow_name_span_s){h->v[i].name, h->v[i].name_len, i};
  group_spans(v, v + n, n);
  for (size_t k = 0; k < n; k++) {
    int same_as_prev =
        k > 0 && span_cmp(v[k].s, v[k].n, v[k - 1].s, v[k - 1].n) == 0;
    first[v[k].i] = !same_as_prev;
    next[v[k].i] = SHADOW_HEADER_GROUP_END;
    if (same_as_prev) next[v[k - 1].i] = v[k].i;
  }
  if (v != small) free(v);
  return 0;
}

/* One allocation per side (next, then peer, then first): every compared
 * pair makes two of these. */
static int groups_alloc(shadow_header_groups_t *g, size_t n) {
  size_t k = n ? n : 1;
  if (k > (SIZE_MAX - k) / (2 * sizeof(size_t))) return -ENOMEM;
  size_t *block = malloc(k * 2 * sizeof(size_t) + k);
  if (!block) return -ENOMEM;
  g->next = block;
  g->peer = block + k;
  g->first = (unsigned char *)(block + 2 * k);
  return 0;
}

void shadow_header_groups_free(shadow_header_groups_t *g) {
  free(g->next); /* the block: peer and first live in it */
  g->next = g->peer = NULL;
  g->first = NULL;
}

/* Whether a and b name the same lines in the same order: the usual pair,
 * two servers of one kind answering one request. Exact bytes first, as
 * they nearly always are. */
static int same_names(const shadow_headers_t *a, const shadow_headers_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++) {
    const shadow_header_t *x = &a->v[i], *y = &b->v[i];
    if (x->name_len != y->name_len) return 0;
    if (memcmp(x->name, y->name, x->name_len) != 0 &&
        shadow_name_cmp(x->name, x->name_len, y->name, y->name_len) != 0)
      return 0;
  }
  return 1;
}

int shadow_headers_pair(const shadow_headers_t *a, const shadow_headers_t *b,
                        shadow_header_groups_t *ga,
                        shadow_header_groups_t *gb) {
  size_t na = a->n, n = a->n + b->n;
  *ga = (shadow_header_groups_t){NULL, NULL, NULL};
  *gb = (shadow_header_groups_t){NULL, NULL, NULL};
  if (groups_alloc(ga, a->n) || groups_alloc(gb, b->n)) return -ENOMEM;
  if (n == 0) return 0;
  if (same_names(a, b)) {
    /* Grouping one side groups both, line i with line i: half the lines
     * to group, and no comparison across the sides. */
    if (shadow_headers_group(a, ga->next, ga->first)) return -ENOMEM;
    for (size_t i = 0; i < na; i++) {
      gb->next[i] = ga->next[i];
      gb->first[i] = ga->first[i];
      ga->peer[i] = gb->peer[i] = ga->first[i] ? i : SHADOW_HEADER_GROUP_END;
    }
    return 0;
  }
  struct shadow_name_span_s small[2 * SMALL_LINES];
  struct shadow_name_span_s *v =
      n <= SMALL_LINES ? small : malloc(2 * n * sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const shadow_header_t *h = i < na ? &a->v[i] : &b->v[i - na];
    v[i] = (struct shadow_name_span_s){h->name, h->name_len, i};
  }
  /* Stable: within one name, a's lines (earlier in v) come before b's. */
  group_spans(v, v + n, n);
  size_t k = 0;
  while (k < n) {
    size_t end = k + 1;
    while (end < n && span_cmp(v[end].s, v[end].n, v[k].s, v[k].n) == 0)
      end++;
    size_t first_a = SHADOW_HEADER_GROUP_END, first_b = first_a;
    size_t last_a = first_a, last_b = first_a;
    for (size_t j = k; j < end; j++) {
      int in_a = v[j].i < na;
      size_t i = in_a ? v[j].i : v[j].i - na;
      shadow_header_groups_t *g = in_a ? ga : gb;
      size_t *first = in_a ? &first_a : &first_b;
      size_t *last = in_a ? &last_a : &last_b;
      g->next[i] = SHADOW_HEADER_GROUP_END;
      g->first[i] = *first == SHADOW_HEADER_GROUP_END;
      g->peer[i] = SHADOW_HEADER_GROUP_END;
      if (*last != SHADOW_HEADER_GROUP_END) g->next[*last] = i;
      if (*first == SHADOW_HEADER_GROUP_END) *first = i;
      *last = i;
    }
    if (first_a != SHADOW_HEADER_GROUP_END) ga->peer[first_a] = first_b;
    if (first_b != SHADOW_HEADER_GROUP_END) gb->peer[first_b] = first_a;
    k = end;
  }
  if (v != small) free(v);
  return 0;
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

int shadow_header_index_build(shadow_header_index_t *x,
                              const shadow_headers_t *h) {
  size_t n = h->n;
  x->n = 0;
  x->marked = NULL;
  x->v = malloc((2 * n + 1) * sizeof(*x->v));
  x->marked = calloc(n + 1, 1);
  if (!x->v || !x->marked) return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    x->v[i] = (struct shadow_name_span_s){h->v[i].name, h->v[i].name_len, i};
  sort_spans(x->v, x->v + n, n);
  x->n = n;
  return 0;
}

/* Marks the lines named s, once per name. */
static void mark_name(shadow_header_index_t *x, const char *s, size_t n,
                      unsigned char *mark) {
  size_t lo = 0, hi = x->n;
  while (lo < hi) { /* the first line not ordered before s */
    size_t mid = lo + (hi - lo) / 2;
    if (span_cmp(x->v[mid].s, x->v[mid].n, s, n) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == x->n || x->marked[lo] ||
      span_cmp(x->v[lo].s, x->v[lo].n, s, n) != 0)
    return;
  x->marked[lo] = 1; /* a name repeated in the list costs no more */
  for (size_t k = lo; k < x->n && span_cmp(x->v[k].s, x->v[k].n, s, n) == 0;
       k++)
    mark[x->v[k].i] = 1;
}

void shadow_header_index_mark(shadow_header_index_t *x, const char *v, size_t n,
                              unsigned char *mark) {
  size_t i = 0;
  while (i < n) {
    const char *comma = memchr(v + i, ',', n - i);
    size_t j = comma ? (size_t)(comma - v) : n;
    size_t a = i, b = j;
    while (a < b && is_ows(v[a]))
      a++;
    while (b > a && is_ows(v[b - 1]))
      b--;
    if (b > a) mark_name(x, v + a, b - a, mark);
    i = j + 1;
  }
}

void shadow_header_index_free(shadow_header_index_t *x) {
  free(x->v);
  free(x->marked);
  x->v = NULL;
  x->marked = NULL;
  x->n = 0;
}
