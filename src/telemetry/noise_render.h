/* GET /noise: each learned field with its class (engine/noise.h's rule),
 * its candidate and noise rates, and for the noise ones the rule that
 * would silence them, merged into one snippet of config to paste. */
#ifndef SHADOW_NOISE_RENDER_H
#define SHADOW_NOISE_RENDER_H

#include <stdint.h>

#include "buf.h"
#include "stats.h"

typedef struct shadow_noise_settings_s {
  double confidence, z;
  uint64_t min_samples;
} shadow_noise_settings_t;

/* The JSON document of /noise. */
int shadow_noise_render_json(const shadow_stats_t *s,
                             const shadow_noise_settings_t *cfg,
                             shadow_buf_t *out);
/* Just the snippet, as Lua config text (/noise?format=lua). */
int shadow_noise_render_lua(const shadow_stats_t *s,
                            const shadow_noise_settings_t *cfg,
                            shadow_buf_t *out);
/* The class of one field of a route, for /stats and the dashboard:
 * "noise", "real", "undecided", or NULL when nothing was learned. */
const char *shadow_noise_field_class(const shadow_stats_t *s, const char *route,
                                     const char *field,
                                     const shadow_noise_settings_t *cfg);

#endif
