/* Alignment of two sequences of element hashes: which elements of one
 * array are kept, in order, in the other. Pure. */
#ifndef SHADOW_JSON_ALIGN_H
#define SHADOW_JSON_ALIGN_H

#include <stddef.h>
#include <stdint.h>

/* Finds a longest common subsequence of a[0..m) and b[0..n) (equal hashes
 * match) with Myers' O((m+n)D) algorithm, D the number of insertions and
 * deletions. On success pa[i] is the index in b matched to a[i], or -1;
 * matched indexes increase with i. Gives up with -E2BIG when D would pass
 * max_d or the work (comparisons and diagonals tried) would pass *work, so
 * a pathological pair costs a bounded time; -ENOMEM without memory. *work
 * is set to the work spent, in all cases. */
int shadow_json_align(const uint64_t *a, size_t m, const uint64_t *b, size_t n,
                      size_t max_d, size_t *work, int32_t *pa);

#endif
