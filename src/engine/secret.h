/* Comparing secrets (the admin's bearer token, redacted values) in time
 * that does not depend on where they first differ, so a client cannot
 * find a token byte by byte from how long a refusal takes. */
#ifndef SHADOW_SECRET_H
#define SHADOW_SECRET_H

#include <stddef.h>

/* 1 when a[0..an) equals b[0..bn). Runs over max(an, bn) bytes whatever
 * the contents. */
int shadow_secret_equal(const char *a, size_t an, const char *b, size_t bn);

#endif
