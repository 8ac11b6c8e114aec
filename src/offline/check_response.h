/* `shadowd --check --response FILE [--side primary|candidate]`: runs the
 * config's normalize hook on one recorded response and prints the record
 * before and after it, so a normalize with a typo fails here and not on
 * every live request. */
#ifndef SHADOW_CHECK_RESPONSE_H
#define SHADOW_CHECK_RESPONSE_H

#include <stdio.h>

#include "script.h"

/* path: a recorded response (the format `shadowd diff` reads) or a bare
 * body. side: "primary" or "candidate". Returns 0, or -1 when the file
 * cannot be read or normalize failed (said on out). */
int shadow_check_response(shadow_gen_t *g, const char *path, const char *side,
                          FILE *out);

#endif
