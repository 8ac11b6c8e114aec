/* Sticky sampling, exactly as the README states it, so that a fleet of
 * daemons and a gateway embedding libshadow make the same decision:
 *   sampled(key, rate) = XXH3_64bits(key, len) % 1000000 < floor(rate*1e6+0.5)
 */
#ifndef SHADOW_SAMPLE_H
#define SHADOW_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* rate is clamped to [0, 1]; NaN counts as 0. */
uint32_t shadow_sample_threshold(double rate);
int shadow_sampled(const char *key, size_t len, double rate);
/* For requests without a key: a random draw at the same rate. */
int shadow_sampled_random(double rate);

#endif
