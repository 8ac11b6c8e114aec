/* UTF-8 validation and the label form of untrusted text (see utf8.h): what
 * a client puts in a path or a backend in a JSON key must not make the
 * /metrics page, the JSON pages or the logs unreadable. */
#include "utf8.h"

#include <errno.h>
#include <string.h>

size_t shadow_utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    min = 0x10000;
  } else
    return 0;
  if (n < len) return 0;
  unsigned cp = c & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

static int is_control(unsigned char c) {
  return c < 0x20 || c == 0x7F;
}

int shadow_utf8_label_ok(const char *s, size_t n, size_t max) {
  const unsigned char *p = (const unsigned char *)s;
  if (n > max) return 0;
  for (size_t i = 0; i < n;) {
    if (p[i] < 0x80) {
      if (is_control(p[i])) return 0;
      i++;
      continue;
    }
    size_t l = shadow_utf8_seq(p + i, n - i);
    if (!l) return 0;
    i += l;
  }
  return 1;
}

int shadow_utf8_label(shadow_buf_t *out, const char *s, size_t n, size_t max) {
  static const char fffd[] = "\xEF\xBF\xBD", ellipsis[] = "\xE2\x80\xA6";
  const unsigned char *p = (const unsigned char *)s;
  size_t start = out->len, cut = start; /* cut: the last boundary that
                                           leaves room for the ellipsis */
  if (max < 4) max = 4;
  for (size_t i = 0; i < n;) {
    const char *piece = s + i;
    size_t plen = 1, l = 0;
    if (p[i] < 0x80 ? is_control(p[i]) : !(l = shadow_utf8_seq(p + i, n - i))) {
      piece = fffd; /* one per bad byte: the count stays visible */
      plen = 3;
      i++;
    } else {
      plen = l ? l : 1;
      i += plen;
    }
    if (out->len - start + plen > max) {
      out->len = cut;
      return shadow_buf_append(out, ellipsis, 3) ? -ENOMEM : 0;
    }
    if (shadow_buf_append(out, piece, plen)) return -ENOMEM;
    if (out->len - start <= max - 3) cut = out->len;
  }
  return 0;
}
