/* `shadowd --check --request 'GET /path' --header 'name: value'`: runs the
 * config's hooks on one made-up request and says what they decide, so a
 * rule can be tried before it goes live. */
#ifndef SHADOW_CHECK_REQUEST_H
#define SHADOW_CHECK_REQUEST_H

#include <stddef.h>
#include <stdio.h>

#include "script.h"

/* request: "METHOD /path?query"; headers: "name: value" each. Returns 0,
 * or -1 with a message on out when the request cannot be built. */
int shadow_check_request(shadow_gen_t *g, const char *request,
                         const char *const *headers, size_t nheaders,
                         FILE *out);

#endif
