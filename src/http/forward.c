/* The forwarding rule (see forward.h). Connection's tokens are read once
 * per request into a sorted set, so each header's look-up costs a binary
 * search whatever the number of tokens and headers: a head of thousands of
 * lines and tokens costs time in proportion to its size, not its square. */
#include "forward.h"

#include <errno.h>
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
  shadow_name_set_t conn = SHADOW_NAME_SET_INIT;
  int rc = 0;
  for (size_t i = 0; i < in->n && rc == 0; i++)
    if (shadow_header_name_is(&in->v[i], "connection"))
      rc = shadow_name_set_add_list(&conn, in->v[i].value, in->v[i].value_len);
  if (rc == 0) rc = shadow_name_set_sort(&conn);
  int forwarded = f && f->proto;
  /* X-Forwarded-For: every client value in order, then the peer. */
  shadow_buf_t xff = SHADOW_BUF_INIT;
  for (size_t i = 0; i < in->n && rc == 0; i++) {
    const shadow_header_t *h = &in->v[i];
    if (shadow_header_is_hop(h->name, h->name_len) ||
        shadow_forward_aliases_framing(h->name, h->name_len) ||
        (shadow_name_set_has(&conn, h->name, h->name_len) &&
         token_may_drop(h->name, h->name_len)) ||
        (f && reserved(f, h)))
      continue;
    if (forwarded && shadow_header_name_is(h, "x-forwarded-for")) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_append(&xff, h->value, h->value_len);
      continue;
    }
    if (forwarded && shadow_header_name_is(h, "x-forwarded-proto")) continue;
    rc = shadow_headers_add(out, h->name, h->name_len, h->value, h->value_len);
  }
  if (rc == 0 && forwarded) {
    if (f->peer && f->peer[0]) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_puts(&xff, f->peer);
    }
    if (rc == 0 && xff.len)
      rc = shadow_headers_add(out, "X-Forwarded-For", 15, xff.data, xff.len);
    if (rc == 0)
      rc = shadow_headers_add(out, "X-Forwarded-Proto", 17, f->proto,
                              strlen(f->proto));
  }
  shadow_buf_free(&xff);
  shadow_name_set_free(&conn);
  return rc ? -ENOMEM : 0;
}
