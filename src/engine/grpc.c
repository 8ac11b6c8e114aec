/* gRPC messages for the diff (see grpc.h). A body is a run of
 * length-prefixed messages; each is inflated when its flag says so and
 * grpc-encoding names gzip or deflate, within a budget of inflated bytes
 * per side, then decoded like an application/x-protobuf body (or taken as
 * JSON text for application/grpc+json). What cannot be decoded is still a
 * value, a string, so a pair of streams always gives two trees. */
#include "grpc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "digest.h"
#include "inflate.h"
#include "json_diff.h"
#include "utf8.h"

/* Trims spaces and tabs on both ends, and drops parameters. */
static void media_type(const char **s, size_t *n) {
  const char *p = *s;
  size_t l = *n;
  const char *semi = memchr(p, ';', l);
  if (semi) l = (size_t)(semi - p);
  while (l && (*p == ' ' || *p == '\t'))
    p++, l--;
  while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
    l--;
  *s = p;
  *n = l;
}

int shadow_grpc_content_type(const char *ct, size_t n) {
  if (!ct) return SHADOW_GRPC_NOT;
  media_type(&ct, &n);
  if (n < 16 || strncasecmp(ct, "application/grpc", 16) != 0)
    return SHADOW_GRPC_NOT;
  if (n == 16) return SHADOW_GRPC_PROTO;
  if (ct[16] != '+') return SHADOW_GRPC_NOT; /* application/grpc-web... */
  const char *sub = ct + 17;
  size_t sl = n - 17;
  if (sl == 5 && strncasecmp(sub, "proto", 5) == 0) return SHADOW_GRPC_PROTO;
  if (sl == 4 && strncasecmp(sub, "json", 4) == 0) return SHADOW_GRPC_JSON;
  return SHADOW_GRPC_OTHER;
}

int shadow_grpc_encoding(const char *v, size_t n) {
  if (!v) return SHADOW_GRPC_IDENTITY;
  media_type(&v, &n);
  if (n == 0 || (n == 8 && strncasecmp(v, "identity", 8) == 0))
    return SHADOW_GRPC_IDENTITY;
  if (n == 4 && strncasecmp(v, "gzip", 4) == 0) return SHADOW_GRPC_GZIP;
  if (n == 7 && strncasecmp(v, "deflate", 7) == 0) return SHADOW_GRPC_DEFLATE;
  return SHADOW_GRPC_UNKNOWN;
}

int shadow_grpc_next(const void *body, size_t len, size_t *pos,
                     shadow_grpc_frame_t *f, const char **why) {
  const uint8_t *b = body;
  size_t at = *pos;
  if (at >= len) return 0;
  if (len - at < 5) {
    if (why) *why = "message prefix cut short";
    return -1;
  }
  if (b[at] > 1) {
    if (why) *why = "compressed flag neither 0 nor 1";
    return -1;
  }
  uint64_t n = (uint64_t)b[at + 1] << 24 | (uint64_t)b[at + 2] << 16 |
               (uint64_t)b[at + 3] << 8 | (uint64_t)b[at + 4];
  if (n > len - at - 5) {
    if (why) *why = "message longer than the rest of the body";
    return -1;
  }
  f->compressed = b[at];
  f->p = b + at + 5;
  f->n = (size_t)n;
  f->off = at;
  *pos = at + 5 + (size_t)n;
  return 1;
}

long shadow_grpc_count(const void *body, size_t len, size_t *bad_off,
                       const char **why) {
  size_t pos = 0;
  long count = 0;
  shadow_grpc_frame_t f;
  int rc;
  while ((rc = shadow_grpc_next(body, len, &pos, &f, why)) == 1)
    count++;
  if (rc < 0) {
    if (bad_off) *bad_off = pos;
    return -1;
  }
  return count;
}

static int utf8_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t k = shadow_utf8_seq(p + i, n - i);
    if (k == 0) return 0;
    i += k;
  }
  return 1;
}

/* Bytes as a value: a JSON string of the text when it is UTF-8 (a +json
 * message that is not JSON reads best so), else of the base64. */
static int put_bytes(shadow_buf_t *out, const uint8_t *p, size_t n, int text) {
  if (text && utf8_valid(p, n))
    return shadow_buf_json_string(out, (const char *)p, n, 0);
  return shadow_pb_base64(out, p, n);
}

/* The decoded payload p[0, n) as a value. */
static int put_payload(const shadow_grpc_decode_t *d, const uint8_t *p,
                       size_t n, shadow_buf_t *out, const char **note) {
  if (d->type == SHADOW_GRPC_PROTO)
    return shadow_pb_to_json(p, n, d->schema, d->schema ? d->msg_type : NULL,
                             out);
  if (d->type == SHADOW_GRPC_JSON) {
    int rc = shadow_json_validate((const char *)p, n);
    if (rc == -ENOMEM) return rc;
    if (rc == 0) return shadow_buf_append(out, (const char *)p, n);
    *note = "not JSON, compared as a string";
    return put_bytes(out, p, n, 1);
  }
  *note = "not a protobuf or JSON message, compared as bytes";
  return put_bytes(out, p, n, 0);
}

int shadow_grpc_message_json(shadow_grpc_decode_t *d,
                             const shadow_grpc_frame_t *f, shadow_buf_t *out,
                             const char **note) {
  *note = NULL;
  if (!f->compressed) {
    if (f->n > d->budget) { /* the body fits, its decoding may not */
      char hex[33], s[96];
      shadow_digest_hex(shadow_digest_of(f->p, f->n), hex);
      int len = snprintf(s, sizeof s, "xxh3-128:%s, %zu bytes", hex, f->n);
      *note = "past limits.diff_bytes, compared by digest";
      return shadow_buf_json_string(out, s, (size_t)len, 0);
    }
    d->budget -= f->n;
    return put_payload(d, f->p, f->n, out, note);
  }
  if (d->encoding == SHADOW_GRPC_IDENTITY) {
    *note = "compressed flag set without a grpc-encoding, compared as bytes";
    return put_bytes(out, f->p, f->n, 0);
  }
  if (d->encoding == SHADOW_GRPC_UNKNOWN) {
    *note = "compressed with an unknown grpc-encoding, compared as bytes";
    return put_bytes(out, f->p, f->n, 0);
  }
  shadow_buf_t plain = SHADOW_BUF_INIT;
  int rc = shadow_inflate_bounded((const char *)f->p, f->n,
                                  d->encoding == SHADOW_GRPC_GZIP ? 31 : 15,
                                  d->budget, &plain);
  if (rc == SHADOW_INFLATE_OK) {
    d->budget -= plain.len;
    rc = put_payload(d, (const uint8_t *)(plain.data ? plain.data : ""),
                     plain.len, out, note);
  } else if (rc == SHADOW_INFLATE_TOO_BIG) {
    char hex[33], s[112];
    shadow_digest_hex(shadow_digest_of(f->p, f->n), hex);
    int len =
        snprintf(s, sizeof s, "xxh3-128:%s, %zu bytes compressed", hex, f->n);
    *note = "inflates past limits.diff_bytes, compared by digest";
    rc = shadow_buf_json_string(out, s, (size_t)len, 0);
  } else if (rc == SHADOW_INFLATE_BAD) {
    *note = d->encoding == SHADOW_GRPC_GZIP
                ? "bad gzip stream, compared as bytes"
                : "bad deflate stream, compared as bytes";
    rc = put_bytes(out, f->p, f->n, 0);
  }
  shadow_buf_free(&plain);
  return rc;
}
