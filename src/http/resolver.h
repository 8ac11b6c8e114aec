/* A backend's host as a resolver sees it: every address the name resolves
 * to, in the resolver's order, each with a memory of its recent connect
 * failures, and the name looked up again in the background.
 *
 * A connection asks for an address (pick), and says how connecting to it
 * went (failed, succeeded). An address that failed is skipped for a while,
 * so later connections go straight to one that works, as nginx does with
 * the peers of a name (max_fails=1, fail_timeout). A numeric host is its
 * own single address and is never looked up. */
#ifndef SHADOW_RESOLVER_H
#define SHADOW_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Addresses kept of one name: a name with more is cut to the first ones. */
#define SHADOW_RESOLVER_MAX_ADDRS 16

typedef struct shadow_resolver_s shadow_resolver_t;

typedef struct shadow_resolver_opts_s {
  uint64_t resolve_ms; /* look the name up again this often; 0: never */
  uint64_t fail_ms;    /* a failed address is skipped this long; 0: 10 s */
  /* The set of addresses changed (a background lookup). NULL-able. */
  void (*on_change)(void *ud);
  /* One line worth a log: a lookup failed (once, until one succeeds
   * again), an address failed and is skipped. NULL-able. */
  void (*log)(void *ud, const char *msg);
  void *ud;
} shadow_resolver_opts_t;

typedef struct shadow_resolver_stats_s {
  uint64_t lookups;          /* background lookups done */
  uint64_t lookup_failures;  /* ... that failed: the last list was kept */
  uint64_t changes;          /* ... that changed the set of addresses */
  uint64_t connect_failures; /* failed() calls */
} shadow_resolver_stats_t;

/* Whether host (as in a URL, without brackets) is an IPv4 or IPv6
 * address rather than a name. */
int shadow_resolver_is_numeric(const char *host);

/* Resolves host:port now, synchronously (config load), and starts the
 * background lookups. 0, or a negative code and *err (free() it) saying
 * why the name did not resolve. */
int shadow_resolver_new(uv_loop_t *loop, const char *host, const char *port,
                        const shadow_resolver_opts_t *o,
                        shadow_resolver_t **out, char **err);

size_t shadow_resolver_count(const shadow_resolver_t *r);
/* The address for a new connection: the first, in order, that is not
 * being skipped; when every one is, the one whose skip ends first. after
 * (NULL-able) is an address that just failed for this request: the search
 * starts behind it and never returns it while there is another, so a
 * request walks the list in order whatever the skip marks say. */
void shadow_resolver_pick(shadow_resolver_t *r, const struct sockaddr *after,
                          struct sockaddr_storage *out);
/* Connecting to sa failed (refused, unreachable, timed out): skip it. */
void shadow_resolver_failed(shadow_resolver_t *r, const struct sockaddr *sa,
                            const char *why);
/* Connecting to sa worked: it is no longer skipped. */
void shadow_resolver_succeeded(shadow_resolver_t *r, const struct sockaddr *sa);
/* Whether sa is still one of the name's addresses. */
int shadow_resolver_has(const shadow_resolver_t *r, const struct sockaddr *sa);
void shadow_resolver_stats(const shadow_resolver_t *r,
                           shadow_resolver_stats_t *out);
/* "addr:port" of sa, for messages. */
void shadow_resolver_format(const struct sockaddr *sa, char *buf, size_t n);

/* count, failed, succeeded and has take a NULL resolver (a pool already
 * closed) as one with no address. No callback runs after close; the memory goes
 * once the timer has closed and a lookup under way has come back. */
void shadow_resolver_close(shadow_resolver_t *r);

#endif
