/* Myers' greedy LCS (shadow_json_align in json_align.h). The forward pass
 * keeps, for each number of edits d, the furthest point reached on every
 * diagonal k = x - y (x in a, y in b); the row of step d is saved so that
 * the path can be walked back from the end, and each diagonal run on the
 * way back is a stretch of matched elements. Memory is (D+1)^2 32-bit integers
 * for the rows, so D is capped by the caller. Pure. */
#include "json_align.h"

#include <errno.h>
#include <stdlib.h>

/* The step into diagonal k at edit d from the row before (prev, valid on
 * -(d-1)..d-1; -1 marks a diagonal no path reaches inside the grid): down
 * from k+1 (b[y] inserted) or right from k-1 (a[x] deleted), whichever
 * goes further, down on a tie. Returns the x where the step lands, or -1,
 * and says in *down which one it was. Forward pass and walk back both ask
 * here, so they agree. */
static long step(const int32_t *prev, long d, long k, long m, long n,
                 int *down) {
  long xd = -1, xr = -1;
  if (k + 1 <= d - 1 && prev[k + 1] >= 0 && prev[k + 1] - k <= n)
    xd = prev[k + 1];
  if (k - 1 >= -(d - 1) && prev[k - 1] >= 0 && prev[k - 1] + 1 <= m)
    xr = prev[k - 1] + 1;
  *down = xd >= 0 && xd >= xr;
  return *down ? xd : xr;
}

int shadow_json_align(const uint64_t *a, size_t m, const uint64_t *b, size_t n,
                      size_t max_d, size_t *budget, int32_t *pa) {
  size_t max_work = *budget;
  *budget = 0;
  for (size_t i = 0; i < m; i++)
    pa[i] = -1;
  if (m > INT32_MAX || n > INT32_MAX) return -E2BIG;
  if (max_d > m + n) max_d = m + n;
  /* Row d holds the 2d+1 diagonals -d..d and starts at d*d. */
  int32_t *rows = NULL;
  size_t cap = 0, work = 0;
  long found = -1, lm = (long)m, ln = (long)n;
  for (long d = 0; d <= (long)max_d && found < 0; d++) {
    size_t need = (size_t)(d + 1) * (size_t)(d + 1);
    if (need > cap) {
      size_t nc = cap ? cap * 2 : 256;
      while (nc < need)
        nc *= 2;
      int32_t *nr = realloc(rows, nc * sizeof *nr);
      if (!nr) {
        free(rows);
        *budget = work;
        return -ENOMEM;
      }
      rows = nr;
      cap = nc;
    }
    int32_t *row = rows + (size_t)d * (size_t)d + d; /* row[k], k in -d..d */
    const int32_t *prev =
        d ? rows + (size_t)(d - 1) * (size_t)(d - 1) + (d - 1) : NULL;
    for (long k = -d; k <= d; k++) {
      if ((k + d) & 1) {
        row[k] = -1; /* other parity: no path of d edits ends here */
        continue;
      }
      int down = 0;
      long x = d ? step(prev, d, k, lm, ln, &down) : 0;
      if (x < 0) {
        row[k] = -1;
        continue;
      }
      long y = x - k, x0 = x;
      while (x < lm && y < ln && a[x] == b[y]) {
        x++;
        y++;
      }
      work += (size_t)(x - x0) + 1;
      row[k] = (int32_t)x;
      if (x == lm && y == ln) {
        found = d;
        break;
      }
    }
    if (found < 0 && work > max_work) break;
  }
  *budget = work;
  if (found < 0) {
    free(rows);
    return -E2BIG;
  }
  /* Walk back from (m, n): each step's diagonal run is a run of matches. */
  long x = lm, y = ln;
  for (long d = found; d > 0; d--) {
    const int32_t *prev = rows + (size_t)(d - 1) * (size_t)(d - 1) + (d - 1);
    long k = x - y;
    int down;
    long xs = step(prev, d, k, lm, ln, &down);
    for (long t = xs; t < x; t++)
      pa[t] = (int32_t)(t - k);
    long pk = down ? k + 1 : k - 1;
    x = prev[pk];
    y = x - pk;
  }
  for (long t = 0; t < x; t++)
    pa[t] = (int32_t)t; /* the run of d = 0, on diagonal 0 */
  free(rows);
  return 0;
}
