/* What a reverse proxy forwards of a client's request head, as one rule
 * for every leg: hop-by-hop headers and every header the client named in
 * Connection are dropped (RFC 9110 section 7.6.1), except Host, which no
 * token removes (the backend would get its own address instead); so are
 * names the caller reserves (shadowd's own x-shadow-request), names with
 * '_' that would alias a framing header, and the client's Host when the
 * caller has a better one; X-Forwarded-For becomes one line (the client's
 * value, then its address) and X-Forwarded-Proto is set. Repeated headers
 * stay separate lines, in the client's order. The upstream client then
 * adds Host and its own framing. The work is O(n log n) in the head's
 * lines and tokens, whatever their number. */
#ifndef SHADOW_FORWARD_H
#define SHADOW_FORWARD_H

#include "record.h"

typedef struct shadow_forward_s {
  const char *peer;  /* the client's address; NULL or "": no X-Forwarded-For
                        of ours */
  const char *proto; /* X-Forwarded-Proto; NULL: X-Forwarded-* untouched */
  const char *const *reserved; /* more lower-case names to drop; NULL-ended */
} shadow_forward_t;

/* Appends to out (cleared first) the headers in forwards. 0 or -ENOMEM. */
int shadow_forward_headers(const shadow_headers_t *in,
                           const shadow_forward_t *f, shadow_headers_t *out);

/* Whether a header name with '_' reads as a framing or hop-by-hop header
 * once '_' is '-' ("Content_Length"): a backend that folds the two would
 * see framing the proxy did not. */
int shadow_forward_aliases_framing(const char *name, size_t len);

#endif
