/* The wall clock (see clock.h). */
#include "clock.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

double shadow_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void shadow_wall_iso(double ms, char out[SHADOW_WALL_ISO_LEN]) {
  if (!isfinite(ms) || ms < 0) ms = 0;
  int64_t total = (int64_t)ms;
  time_t secs = (time_t)(total / 1000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) memset(&tm, 0, sizeof(tm));
  snprintf(out, SHADOW_WALL_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100,
           tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100,
           (int)(total % 1000));
}
