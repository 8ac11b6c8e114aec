/* Admin request guards (see admin_guard.h): the Host check against DNS
 * rebinding, the JSON-only rule for state-changing POSTs, and the
 * loopback test behind the start-up warning. Strings only. */
#include "admin_guard.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* The host part of "host[:port]" or "[v6][:port]": its span in s, the
 * brackets left out. 0, or -1 when the port is not digits or a bracket
 * is not closed. */
static int host_part(const char *s, size_t n, size_t *start, size_t *len) {
  size_t end;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close) return -1;
    *start = 1;
    *len = (size_t)(close - s) - 1;
    end = (size_t)(close - s) + 1;
    if (end < n && s[end] != ':') return -1;
  } else {
    const char *colon = memchr(s, ':', n);
    *start = 0;
    *len = colon ? (size_t)(colon - s) : n;
    end = *len;
  }
  if (end < n) { /* ":port" */
    if (end + 1 == n) return -1;
    for (size_t i = end + 1; i < n; i++)
      if (s[i] < '0' || s[i] > '9') return -1;
  }
  /* "localhost." names the same host as "localhost". */
  if (*len > 1 && s[*start + *len - 1] == '.') (*len)--;
  return 0;
}

static int is_ip_literal(const char *h, size_t n, int *loopback) {
  char tmp[64];
  unsigned char a[16];
  if (n == 0 || n >= sizeof tmp) return 0;
  memcpy(tmp, h, n);
  tmp[n] = '\0';
  if (inet_pton(AF_INET, tmp, a) == 1) {
    *loopback = a[0] == 127;
    return 1;
  }
  if (inet_pton(AF_INET6, tmp, a) == 1) {
    static const unsigned char one[16] = {[15] = 1};
    *loopback = memcmp(a, one, 16) == 0;
    return 1;
  }
  return 0;
}

static int same_name(const char *a, size_t an, const char *b, size_t bn) {
  return an == bn && strncasecmp(a, b, an) == 0;
}

int shadow_admin_host_ok(const char *own, const char *host, size_t len) {
  if (!host) return 1;
  size_t hs, hl;
  if (host_part(host, len, &hs, &hl) || hl == 0) return 0;
  const char *h = host + hs;
  int loopback = 0;
  if (is_ip_literal(h, hl, &loopback)) return 1;
  if (same_name(h, hl, "localhost", 9)) return 1;
  size_t os, ol;
  if (own && host_part(own, strlen(own), &os, &ol) == 0 && ol > 0 &&
      same_name(h, hl, own + os, ol))
    return 1;
  return 0;
}

int shadow_admin_json_request(const char *ct, size_t len) {
  static const char json[] = "application/json";
  size_t n = sizeof json - 1;
  if (!ct || len < n || strncasecmp(ct, json, n) != 0) return 0;
  /* Nothing after the type but parameters (or blanks before them). */
  for (size_t i = n; i < len; i++) {
    if (ct[i] == ';') return 1;
    if (ct[i] != ' ' && ct[i] != '\t') return 0;
  }
  return 1;
}

int shadow_admin_addr_loopback(const char *addr) {
  size_t s, l;
  if (!addr || host_part(addr, strlen(addr), &s, &l) || l == 0) return 0;
  int loopback = 0;
  if (is_ip_literal(addr + s, l, &loopback)) return loopback;
  return same_name(addr + s, l, "localhost", 9);
}
