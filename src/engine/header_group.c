/* Grouping header lines by name and sets of names (see header_group.h).
 * Both sort: a hash table keyed by client-chosen names can be flooded with
 * colliding ones, a sort cannot, and its cost is bounded by the head's
 * bytes times the logarithm of its line count. */
#include "header_group.h"

#include <errno.h>
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

/* Sorts v[0..n) by name, equal names keeping their order, with a merge
 * sort: stable and never quadratic, whatever the names. tmp holds n. */
static void sort_spans(struct shadow_name_span_s *v,
                       struct shadow_name_span_s *tmp, size_t n) {
  for (size_t width = 1; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        /* Equal names keep their order: the left run came first. */
        if (shadow_name_cmp(v[j].s, v[j].n, v[i].s, v[i].n) < 0)
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

int shadow_headers_group(const shadow_headers_t *h, size_t *next,
                         unsigned char *first) {
  size_t n = h->n;
  if (n == 0) return 0;
  struct shadow_name_span_s *v = malloc(2 * n * sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    v[i] = (struct shadow_name_span_s){h->v[i].name, h->v[i].name_len, i};
  sort_spans(v, v + n, n);
  for (size_t k = 0; k < n; k++) {
    int same_as_prev =
        k > 0 && shadow_name_cmp(v[k].s, v[k].n, v[k - 1].s, v[k - 1].n) == 0;
    first[v[k].i] = !same_as_prev;
    next[v[k].i] = SHADOW_HEADER_GROUP_END;
    if (same_as_prev) next[v[k - 1].i] = v[k].i;
  }
  free(v);
  return 0;
}

static int groups_alloc(shadow_header_groups_t *g, size_t n) {
  size_t k = n ? n : 1;
  g->next = malloc(k * sizeof(*g->next));
  g->first = malloc(k);
  g->peer = malloc(k * sizeof(*g->peer));
  return g->next && g->first && g->peer ? 0 : -ENOMEM;
}

void shadow_header_groups_free(shadow_header_groups_t *g) {
  free(g->next);
  free(g->first);
  free(g->peer);
  g->next = g->peer = NULL;
  g->first = NULL;
}

int shadow_headers_pair(const shadow_headers_t *a, const shadow_headers_t *b,
                        shadow_header_groups_t *ga,
                        shadow_header_groups_t *gb) {
  size_t na = a->n, n = a->n + b->n;
  *ga = (shadow_header_groups_t){NULL, NULL, NULL};
  *gb = (shadow_header_groups_t){NULL, NULL, NULL};
  if (groups_alloc(ga, a->n) || groups_alloc(gb, b->n)) return -ENOMEM;
  if (n == 0) return 0;
  struct shadow_name_span_s *v = malloc(2 * n * sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const shadow_header_t *h = i < na ? &a->v[i] : &b->v[i - na];
    v[i] = (struct shadow_name_span_s){h->name, h->name_len, i};
  }
  /* Stable: within one name, a's lines (earlier in v) come before b's. */
  sort_spans(v, v + n, n);
  size_t k = 0;
  while (k < n) {
    size_t end = k + 1;
    while (end < n && shadow_name_cmp(v[end].s, v[end].n, v[k].s, v[k].n) == 0)
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
  free(v);
  return 0;
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

int shadow_name_set_add_list(shadow_name_set_t *s, const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    size_t a = i, b = j;
    while (a < b && is_ows(v[a]))
      a++;
    while (b > a && is_ows(v[b - 1]))
      b--;
    if (b > a) {
      if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct shadow_name_span_s *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv) return -ENOMEM;
        s->v = nv;
        s->cap = cap;
      }
      s->v[s->n++] = (struct shadow_name_span_s){v + a, b - a, 0};
      s->sorted = 0;
    }
    i = j + 1;
  }
  return 0;
}

int shadow_name_set_sort(shadow_name_set_t *s) {
  if (s->sorted || s->n < 2) {
    s->sorted = 1;
    return 0;
  }
  struct shadow_name_span_s *tmp = malloc(s->n * sizeof(*tmp));
  if (!tmp) return -ENOMEM;
  sort_spans(s->v, tmp, s->n);
  free(tmp);
  s->sorted = 1;
  return 0;
}

int shadow_name_set_has(const shadow_name_set_t *s, const char *name,
                        size_t n) {
  if (!s->sorted) {
    for (size_t i = 0; i < s->n; i++)
      if (shadow_name_cmp(s->v[i].s, s->v[i].n, name, n) == 0) return 1;
    return 0;
  }
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = shadow_name_cmp(s->v[mid].s, s->v[mid].n, name, n);
    if (c == 0) return 1;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

void shadow_name_set_free(shadow_name_set_t *s) {
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
  s->sorted = 0;
}
