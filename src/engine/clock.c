/* The wall clock (see clock.h). */
#include "clock.h"

#include <time.h>

double shadow_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
