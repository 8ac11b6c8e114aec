/* The backends in use and the generations that use them. A backend is one
 * upstream pool, shared by every generation whose config names the same
 * URL and options, so a reload that does not touch a backend keeps its
 * warm connections. An epoch is a generation as the dispatcher sees it:
 * the script host's generation plus the backends its config names. */
#ifndef SHADOW_BACKENDS_H
#define SHADOW_BACKENDS_H

#include <uv.h>

#include "script.h"
#include "upstream.h"

typedef struct shadow_backends_s shadow_backends_t;
typedef struct shadow_backend_s shadow_backend_t;

typedef struct shadow_epoch_s {
  int refs;
  shadow_gen_t *gen;
  const shadow_config_t *cfg;
  /* NULL when the config's backend is not a URL (none, or a function). */
  shadow_backend_t *primary, *candidate, *secondary;
} shadow_epoch_t;

shadow_backends_t *shadow_backends_new(uv_loop_t *loop);
/* Closes every pool: their legs fail with CANCELED, through the loop. The
 * registry stays until shadow_backends_free, so epochs can still be
 * released. */
void shadow_backends_close(shadow_backends_t *r);
/* Frees the registry (closing what is still open); no epoch may be alive. */
void shadow_backends_free(shadow_backends_t *r);

/* The epoch of gen: takes a reference on gen only on success. 0, or a
 * negative code and *err (free() it). */
int shadow_epoch_new(shadow_backends_t *r, shadow_gen_t *gen,
                     shadow_epoch_t **out, char **err);
void shadow_epoch_ref(shadow_epoch_t *e);
/* The last reference drops the generation and the backends' references;
 * a backend nobody uses any more is closed by shadow_backends_sweep(). */
void shadow_epoch_unref(shadow_backends_t *r, shadow_epoch_t *e);

/* Closes the backends no epoch uses. Not from inside one of their own
 * callbacks: the dispatcher calls it from the loop. */
void shadow_backends_sweep(shadow_backends_t *r);
/* Whether a sweep has work. */
int shadow_backends_unused(const shadow_backends_t *r);

shadow_upstream_t *shadow_backend_upstream(const shadow_backend_t *b);
/* Backends in the registry, used or not: for tests. */
size_t shadow_backends_count(const shadow_backends_t *r);

#endif
