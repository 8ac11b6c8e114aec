/* Sticky sampling (see sample.h): XXH3-64 of the key against a threshold
 * in parts per million, the rule gateways and fleets share. */
#include "sample.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

#include <xxhash.h>

/* Parts per million: the unit the sampling rule is written in. */
#define PPM 1000000u

uint32_t shadow_sample_threshold(double rate) {
  /* The negated test sends NaN to 0 as the header promises. */
  if (!(rate > 0.0)) return 0;
  if (rate >= 1.0) return PPM;
  return (uint32_t)floor(rate * (double)PPM + 0.5);
}

int shadow_sampled(const char *key, size_t len, double rate) {
  uint32_t t = shadow_sample_threshold(rate);
  if (t == 0) return 0;
  if (t >= PPM) return 1;
  return XXH3_64bits(key, len) % PPM < t;
}

/* One generator per thread, so the daemon's loop and a gateway's workers
 * never share state. xorshift64* is plenty for a sampling coin; it is not
 * meant to be unpredictable. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void) {
  if (rng_state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
    /* The address of the thread-local differs per thread, so two threads
     * started in the same nanosecond still draw differently. */
    seed ^= (uint64_t)(uintptr_t)&rng_state;
    rng_state = XXH3_64bits(&seed, sizeof(seed)) | 1;
  }
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int shadow_sampled_random(double rate) {
  uint32_t t = shadow_sample_threshold(rate);
  if (t == 0) return 0;
  if (t >= PPM) return 1;
  return (rng_next() >> 11) % PPM < t;
}
