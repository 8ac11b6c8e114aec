/* Bounded inflation (zlib) for the diff: a small compressed body or
 * gRPC message cannot make the diff allocate without bound. Pure. */
#ifndef SHADOW_INFLATE_H
#define SHADOW_INFLATE_H

#include <stddef.h>

#include "buf.h"

enum {
  SHADOW_INFLATE_OK = 0,
  SHADOW_INFLATE_TOO_BIG = 1, /* would pass limit: out holds limit + 1 */
  SHADOW_INFLATE_BAD = 2      /* corrupt or cut short */
};

/* Inflates in[0, n) into out (appended from out->len == 0 on) with zlib's
 * window bits (31: gzip, 15: zlib, -15: raw deflate), writing at most
 * limit + 1 bytes (a zip bomb costs limit bytes, no more). Returns a
 * SHADOW_INFLATE_* or -ENOMEM. */
int shadow_inflate_bounded(const char *in, size_t n, int window, size_t limit,
                           shadow_buf_t *out);

#endif
