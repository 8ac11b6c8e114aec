/* The forwarding rule (see forward.h). The head's lines are sorted by
 * name once per request and each Connection token is a binary search
 * among them, whatever the number of tokens and lines: a head of
 * thousands of either costs time in proportion to its size, not its
 * square, and nothing is sorted per token. */
#include "forward.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "header_group.h"

/* Whether a Connection token may remove the header it names. Host may
 * not: without it the upstream client would send the backend's own
 * address, so a client could make the primary see another virtual host
 * than the one it asked for (RFC 9110 section 7.6.1 lets a proxy keep
 * what it must send end to end). */
static int token_may_drop(const char *name, size_t len) {
  return !(len == 4 && strncasecmp(name, "host", 4) == 0);
}

int shadow_forward_aliases_framing(const char *name, size_t len) {
  if (!memchr(name, '_', len)) return 0;
  char folded[64] = {0};
  if (len >= sizeof(folded)) return 0;
  for (size_t i = 0; i < len; i++)
    folded[i] = name[i] == '_' ? '-' : name[i];
  if (shadow_header_is_hop(folded, len)) return 1;
  return len == 4 && strncasecmp(folded, "host", 4) == 0;
}

static int reserved(const shadow_forward_t *f, const shadow_header_t *h) {
  for (size_t i = 0; f->reserved && f->reserved[i]; i++)
    if (shadow_header_name_is(h, f->reserved[i])) return 1;
  return 0;
}

int shadow_forward_headers(const shadow_headers_t *in,
                           const shadow_forward_t *f, shadow_headers_t *out) {
  shadow_headers_clear(out);
  int rc = 0;
  /* named[i]: line i is named by a Connection token. */
  unsigned char *named = NULL;
  size_t first_conn = 0;
  while (first_conn < in->n &&
         !shadow_header_name_is(&in->v[first_conn], "connection"))
    first_conn++;
  if (first_conn < in->n) {
    shadow_header_index_t x = {NULL, NULL, 0};
    named = calloc(in->n, 1);
    if (!named || shadow_header_index_build(&x, in) != 0) rc = -ENOMEM;
    for (size_t i = first_conn; i < in->n && rc == 0; i++)
      if (shadow_header_name_is(&in->v[i], "connection"))
        shadow_header_index_mark(&x, in->v[i].value, in->v[i].value_len, named);
    shadow_header_index_free(&x);
  }
  int forwarded = f && f->proto;
  /* X-Forwarded-For: every client value in order, then the peer. */
  shadow_buf_t xff = SHADOW_BUF_INIT;
  for (size_t i = 0; i < in->n && rc == 0; i++) {
    const shadow_header_t *h = &in->v[i];
    if (shadow_header_is_hop(h->name, h->name_len) ||
        shadow_forward_aliases_framing(h->name, h->name_len) ||
        (named && named[i] && token_may_drop(h->name, h->name_len)) ||
        (f && reserved(f, h)))
      continue;
    if (forwarded && shadow_header_name_is(h, "x-forwarded-for")) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_append(&xff, h->value, h->value_len);
      continue;
    }
    if (forwarded && shadow_header_name_is(h, "x-forwarded-proto")) continue;
    rc = shadow_headers_add_line(out, in, i);
  }
  if (rc == 0 && forwarded) {
    if (f->peer && f->peer[0]) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_puts(&xff, f->peer);
    }
    if (rc == 0 && xff.len)
      rc = shadow_headers_add_checked(out, "X-Forwarded-For", 15, xff.data,
                                      xff.len);
    if (rc == 0)
      rc = shadow_headers_add_checked(out, "X-Forwarded-Proto", 17, f->proto,
                                      strlen(f->proto));
  }
  shadow_buf_free(&xff);
  free(named);
  return rc ? -ENOMEM : 0;
}
