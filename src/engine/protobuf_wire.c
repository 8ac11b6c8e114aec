/* The protobuf wire format, read: varints, tags and the four wire types
 * that carry values (varint, fixed64, length-delimited, fixed32). Groups
 * (wire types 3 and 4, deprecated since proto2) are refused. Every read is
 * checked against the end of the buffer, so any byte string is safe to
 * hand over; nothing here allocates or recurses. */
#include "protobuf.h"

int shadow_pb_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
  const uint8_t *p = *pp;
  uint64_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (p >= end) return -1;
    uint8_t b = *p++;
    /* The tenth byte holds bit 63 only. */
    if (i == 9 && b > 1) return -1;
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      *pp = p;
      return 0;
    }
  }
  return -1;
}

int shadow_pb_next(const uint8_t **pp, const uint8_t *end,
                   shadow_pb_field_t *f) {
  const uint8_t *p = *pp;
  if (p >= end) return 0;
  uint64_t tag;
  if (shadow_pb_varint(&p, end, &tag)) return -1;
  uint64_t number = tag >> 3;
  if (number == 0 || number > 0x1fffffff) return -1;
  f->number = (uint32_t)number;
  f->wire = (int)(tag & 7);
  f->v = 0;
  f->p = NULL;
  f->n = 0;
  switch (f->wire) {
  case SHADOW_PB_VARINT:
    if (shadow_pb_varint(&p, end, &f->v)) return -1;
    break;
  case SHADOW_PB_FIXED64:
  case SHADOW_PB_FIXED32: {
    size_t w = f->wire == SHADOW_PB_FIXED64 ? 8 : 4;
    if ((size_t)(end - p) < w) return -1;
    for (size_t i = 0; i < w; i++) /* little-endian */
      f->v |= (uint64_t)p[i] << (8 * i);
    p += w;
    break;
  }
  case SHADOW_PB_LEN: {
    uint64_t n;
    if (shadow_pb_varint(&p, end, &n) || n > (uint64_t)(end - p)) return -1;
    f->p = p;
    f->n = (size_t)n;
    p += n;
    break;
  }
  default: return -1; /* groups (3, 4) and wire types 6, 7 */
  }
  *pp = p;
  return 1;
}

int shadow_pb_is_message(const uint8_t *p, size_t n) {
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  int rc;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1) {
  }
  return rc == 0;
}
