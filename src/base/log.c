/* One-line log messages on stderr with a UTC timestamp and a level. Used by
 * the daemon layer only; the layers below report through return codes. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/* Messages past this level are not printed. */
static const int log_level = SHADOW_LOG_INFO;

void shadow_log(int level, const char *fmt, ...) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  if (level > log_level) return;
  char stamp[32];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  /* Build the line first and write it once, so lines never interleave. */
  char line[2048];
  int n = snprintf(line, sizeof(line), "%s.%03ldZ %s ", stamp,
                   ts.tv_nsec / 1000000, names[level & 3]);
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < sizeof(line))
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
