/* One-line log messages on stderr, with a UTC timestamp and a level. */
#ifndef SHADOW_LOG_H
#define SHADOW_LOG_H

enum {
  SHADOW_LOG_ERROR = 0,
  SHADOW_LOG_WARN,
  SHADOW_LOG_INFO,
  SHADOW_LOG_DEBUG
};

void shadow_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define shadow_log_error(...) shadow_log(SHADOW_LOG_ERROR, __VA_ARGS__)
#define shadow_log_warn(...) shadow_log(SHADOW_LOG_WARN, __VA_ARGS__)
#define shadow_log_info(...) shadow_log(SHADOW_LOG_INFO, __VA_ARGS__)

#endif
