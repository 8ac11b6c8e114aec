/* Which requests the admin port answers at all: a Host that a browser
 * led by DNS rebinding could send is refused (421), and a state-changing
 * POST must be one a cross-site form cannot forge. Also tells whether an
 * admin address reaches beyond loopback, for the warning at start and in
 * --check. Pure string work: no sockets, no lookups. */
#ifndef SHADOW_ADMIN_GUARD_H
#define SHADOW_ADMIN_GUARD_H

#include <stddef.h>

/* 1 when a request with this Host header value may be served by an admin
 * configured at own ("ADDR:PORT"): a loopback name (localhost,
 * 127.0.0.1, [::1]), any IP literal (a rebinding page's origin is a
 * name, never the address itself), or own's host part; each with or
 * without a port. A missing Host (host NULL) is not a browser: 1. */
int shadow_admin_host_ok(const char *own, const char *host, size_t len);

/* 1 when content_type (may be NULL) is application/json, parameters
 * aside: a cross-site page cannot send that without a CORS preflight,
 * which the admin never grants. */
int shadow_admin_json_request(const char *content_type, size_t len);

/* 1 when the admin address ("ADDR:PORT") listens on loopback only. */
int shadow_admin_addr_loopback(const char *addr);

#endif
