/* The running daemon, after the command line: serves until SIGTERM. */
#ifndef SHADOW_DAEMON_H
#define SHADOW_DAEMON_H

#include <stddef.h>

#include "script.h"

#define SHADOW_MAX_WORKERS 64

typedef struct shadow_daemon_opts_s {
  const char *config_path;
  const char *listen_override, *admin_override; /* NULL: the config's */
  size_t workers; /* event loops: 1 (the default) up to SHADOW_MAX_WORKERS */
} shadow_daemon_opts_t;

/* Runs with the already loaded and validated generation g (taking the
 * reference) until a signal stops it. Returns the exit code. */
int shadow_daemon_run(const shadow_daemon_opts_t *opts, shadow_gen_t *g);

#endif
