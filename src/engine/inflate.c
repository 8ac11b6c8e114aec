/* Bounded inflation (see inflate.h): moved out of diff.c so gRPC
 * messages (grpc.c) are inflated under the same bound as bodies. */
#include "inflate.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>

/* Inflates at most limit + 1 bytes, so a small compressed body cannot make
 * the diff allocate without bound (a zip bomb costs limit bytes, no more). */
int shadow_inflate_bounded(const char *in, size_t n, int window, size_t limit,
                           shadow_buf_t *out) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, window) != Z_OK) return -ENOMEM;
  int result = SHADOW_INFLATE_BAD;
  const unsigned char *next = (const unsigned char *)in;
  size_t left = n;
  for (;;) {
    if (zs.avail_in == 0 && left) {
      uInt take = left > 1u << 30 ? 1u << 30 : (uInt)left;
      zs.next_in = (unsigned char *)(uintptr_t)next;
      zs.avail_in = take;
      next += take;
      left -= take;
    }
    size_t room = limit + 1 - out->len;
    if (room == 0) {
      result = SHADOW_INFLATE_TOO_BIG;
      break;
    }
    size_t chunk = room < 65536 ? room : 65536;
    if (shadow_buf_reserve(out, chunk)) {
      result = -ENOMEM;
      break;
    }
    zs.next_out = (unsigned char *)out->data + out->len;
    zs.avail_out = (uInt)chunk;
    int zr = inflate(&zs, Z_NO_FLUSH);
    size_t got = chunk - zs.avail_out;
    out->len += got;
    out->data[out->len] = '\0';
    if (zr == Z_STREAM_END) {
      result = out->len > limit ? SHADOW_INFLATE_TOO_BIG : SHADOW_INFLATE_OK;
      break;
    }
    if (zr == Z_MEM_ERROR) {
      result = -ENOMEM;
      break;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) break;           /* corrupt */
    if (got == 0 && zs.avail_in == 0 && left == 0) break; /* cut short */
  }
  inflateEnd(&zs);
  return result;
}
