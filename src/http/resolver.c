/* The resolver of one backend host (see resolver.h): the address list, the
 * skip marks of failed addresses, and the timer that looks the name up
 * again. Lookups go through uv_getaddrinfo on libuv's thread pool, so a
 * slow DNS server never stalls the loop; the list is only ever touched on
 * the loop. A lookup that fails keeps the last good list. */
#include "resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_FAIL_MS 10000

typedef struct addr_s {
  struct sockaddr_storage sa;
  uint64_t skip_until; /* uv_now() milliseconds; 0: not skipped */
} addr_t;

struct shadow_resolver_s {
  uv_loop_t *loop;
  char *host, *port;
  shadow_resolver_opts_t o;
  addr_t addrs[SHADOW_RESOLVER_MAX_ADDRS];
  size_t n;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  int looking;    /* a background lookup is under way */
  int timer_open; /* the timer handle is initialized and not yet closed */
  int closing;
  int lookup_bad; /* the last lookup failed (logged once) */
  shadow_resolver_stats_t stats;
};

int shadow_resolver_is_numeric(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return uv_inet_pton(AF_INET, host, buf) == 0 ||
         uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* Address and port: the rest of a sockaddr (flow info, scope) does not
 * make another peer. */
static int sa_equal(const struct sockaddr *a, const struct sockaddr *b) {
  if (a->sa_family != b->sa_family) return 0;
  if (a->sa_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
  }
  return 0;
}

void shadow_resolver_format(const struct sockaddr *sa, char *buf, size_t n) {
  char ip[64] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const void *)sa;
    uv_ip6_name(s, ip, sizeof(ip));
    port = ntohs(s->sin6_port);
    snprintf(buf, n, "[%s]:%d", ip, port);
    return;
  }
  const struct sockaddr_in *s = (const void *)sa;
  uv_ip4_name(s, ip, sizeof(ip));
  port = ntohs(s->sin_port);
  snprintf(buf, n, "%s:%d", ip, port);
}

static void say(shadow_resolver_t *r, const char *fmt, const char *a,
                const char *b) {
  if (!r->o.log) return;
  char msg[512];
  snprintf(msg, sizeof(msg), fmt, r->host, r->port, a, b);
  r->o.log(r->o.ud, msg);
}

static int find(const addr_t *v, size_t n, const struct sockaddr *sa) {
  for (size_t i = 0; i < n; i++)
    if (sa_equal((const struct sockaddr *)&v[i].sa, sa)) return (int)i;
  return -1;
}

/* The lookup's answer as a list, in its order, without duplicates (an
 * /etc/hosts may name one address twice), the skip marks of addresses that
 * stay carried over. Returns how many. */
static size_t collect(const shadow_resolver_t *r, const struct addrinfo *ai,
                      addr_t *out) {
  size_t n = 0;
  for (; ai && n < SHADOW_RESOLVER_MAX_ADDRS; ai = ai->ai_next) {
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
        ai->ai_addrlen > sizeof(out[0].sa) || find(out, n, ai->ai_addr) >= 0)
      continue;
    memset(&out[n], 0, sizeof(out[n]));
    memcpy(&out[n].sa, ai->ai_addr, ai->ai_addrlen);
    int old = find(r->addrs, r->n, ai->ai_addr);
    if (old >= 0) out[n].skip_until = r->addrs[old].skip_until;
    n++;
  }
  return n;
}

static int same_set(const addr_t *a, size_t na, const addr_t *b, size_t nb) {
  if (na != nb) return 0;
  for (size_t i = 0; i < na; i++)
    if (find(b, nb, (const struct sockaddr *)&a[i].sa) < 0) return 0;
  return 1;
}

static void list_text(const addr_t *v, size_t n, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && len + 2 < cap; i++) {
    char one[80];
    shadow_resolver_format((const struct sockaddr *)&v[i].sa, one, sizeof(one));
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", one);
  }
}

static void maybe_free(shadow_resolver_t *r) {
  if (!r->closing || r->looking || r->timer_open) return;
  free(r->host);
  free(r->port);
  free(r);
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  shadow_resolver_t *r = req->data;
  r->looking = 0;
  if (r->closing) {
    if (ai) uv_freeaddrinfo(ai);
    maybe_free(r);
    return;
  }
  r->stats.lookups++;
  addr_t fresh[SHADOW_RESOLVER_MAX_ADDRS];
  size_t n = status == 0 ? collect(r, ai, fresh) : 0;
  if (ai) uv_freeaddrinfo(ai);
  if (n == 0) {
    /* A DNS server down for a moment must not take the backend with it:
     * the last good list stays until a lookup answers again. */
    r->stats.lookup_failures++;
    if (!r->lookup_bad)
      say(r, "backend %s:%s: cannot resolve (%s); keeping its last %s",
          status ? uv_strerror(status) : "no address", "addresses");
    r->lookup_bad = 1;
    return;
  }
  if (r->lookup_bad) say(r, "backend %s:%s: resolves again%s%s", "", "");
  r->lookup_bad = 0;
  int changed = !same_set(fresh, n, r->addrs, r->n);
  memcpy(r->addrs, fresh, n * sizeof(fresh[0]));
  r->n = n;
  if (!changed) return;
  r->stats.changes++;
  char text[400];
  list_text(r->addrs, r->n, text, sizeof(text));
  say(r, "backend %s:%s: now resolves to %s%s", text, "");
  if (r->o.on_change) r->o.on_change(r->o.ud);
}

static void on_timer(uv_timer_t *t) {
  shadow_resolver_t *r = t->data;
  if (r->looking || r->closing) return; /* the last one is still out */
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r->gai.data = r;
  if (uv_getaddrinfo(r->loop, &r->gai, on_lookup, r->host, r->port, &hints) ==
      0)
    r->looking = 1;
}

static int set_err(char **err, const char *why) {
  if (err) *err = strdup(why);
  return -EINVAL;
}

int shadow_resolver_new(uv_loop_t *loop, const char *host, const char *port,
                        const shadow_resolver_opts_t *o,
                        shadow_resolver_t **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  shadow_resolver_t *r = calloc(1, sizeof(*r));
  if (!r) return -ENOMEM;
  r->loop = loop;
  if (o) r->o = *o;
  if (!r->o.fail_ms) r->o.fail_ms = DEFAULT_FAIL_MS;
  r->host = strdup(host);
  r->port = strdup(port);
  if (!r->host || !r->port) {
    free(r->host);
    free(r->port);
    free(r);
    return -ENOMEM;
  }
  int numeric = shadow_resolver_is_numeric(host);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (numeric) hints.ai_flags = AI_NUMERICHOST;
  uv_getaddrinfo_t gai;
  /* The first lookup is synchronous: it happens at config load, and a
   * name that resolves to nothing is a config error named there. */
  int rc = uv_getaddrinfo(loop, &gai, NULL, host, port, &hints);
  if (rc == 0) r->n = collect(r, gai.addrinfo, r->addrs);
  if (rc == 0) uv_freeaddrinfo(gai.addrinfo);
  if (rc < 0 || r->n == 0) {
    set_err(err, rc < 0 ? uv_strerror(rc) : "no address");
    free(r->host);
    free(r->port);
    free(r);
    return -EINVAL;
  }
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->timer_open = 1;
  /* A numeric address is what it is: nothing to look up again. */
  if (!numeric && r->o.resolve_ms)
    uv_timer_start(&r->timer, on_timer, r->o.resolve_ms, r->o.resolve_ms);
  /* The lookups serve the pool while the loop has other work; they never
   * keep a loop that is done (replay, a drain) running. */
  uv_unref((uv_handle_t *)&r->timer);
  *out = r;
  return 0;
}

size_t shadow_resolver_count(const shadow_resolver_t *r) {
  return r ? r->n : 0;
}

void shadow_resolver_pick(shadow_resolver_t *r, const struct sockaddr *after,
                          struct sockaddr_storage *out) {
  uint64_t now = uv_now(r->loop);
  int skip = after ? find(r->addrs, r->n, after) : -1;
  size_t start = skip >= 0 ? (size_t)skip + 1 : 0;
  size_t best = SIZE_MAX;
  for (size_t k = 0; k < r->n; k++) {
    size_t i = (start + k) % r->n;
    if ((int)i == skip && r->n > 1) continue; /* the one that just failed */
    if (r->addrs[i].skip_until <= now) {
      best = i;
      break;
    }
    if (best == SIZE_MAX || r->addrs[i].skip_until < r->addrs[best].skip_until)
      best = i;
  }
  *out = r->addrs[best == SIZE_MAX ? 0 : best].sa;
}

void shadow_resolver_failed(shadow_resolver_t *r, const struct sockaddr *sa,
                            const char *why) {
  if (!r) return;
  r->stats.connect_failures++;
  int i = find(r->addrs, r->n, sa);
  if (i < 0) return; /* an address that went away meanwhile */
  uint64_t now = uv_now(r->loop);
  int was = r->addrs[i].skip_until > now;
  r->addrs[i].skip_until = now + r->o.fail_ms;
  /* Logged when the skip starts, so a dead address costs one line per
   * fail_ms, not one per request. */
  if (!was && r->n > 1) {
    char a[80], ms[32];
    shadow_resolver_format(sa, a, sizeof(a));
    snprintf(ms, sizeof(ms), "%llu ms", (unsigned long long)r->o.fail_ms);
    char text[160];
    snprintf(text, sizeof(text), "%s failed (%s)", a, why ? why : "error");
    say(r, "backend %s:%s: %s; skipped for %s", text, ms);
  }
}

void shadow_resolver_succeeded(shadow_resolver_t *r,
                               const struct sockaddr *sa) {
  if (!r) return;
  int i = find(r->addrs, r->n, sa);
  if (i >= 0) r->addrs[i].skip_until = 0;
}

int shadow_resolver_has(const shadow_resolver_t *r, const struct sockaddr *sa) {
  return r && find(r->addrs, r->n, sa) >= 0;
}

void shadow_resolver_stats(const shadow_resolver_t *r,
                           shadow_resolver_stats_t *out) {
  *out = r->stats;
}

static void on_timer_close(uv_handle_t *h) {
  shadow_resolver_t *r = h->data;
  r->timer_open = 0;
  maybe_free(r);
}

void shadow_resolver_close(shadow_resolver_t *r) {
  if (!r || r->closing) return;
  r->closing = 1;
  /* A lookup not yet started is dropped; one under way comes back (with
   * UV_ECANCELED or its answer) and frees what is left. */
  if (r->looking) uv_cancel((uv_req_t *)&r->gai);
  uv_close((uv_handle_t *)&r->timer, on_timer_close);
}
