/* A handler in front of libuv's for SIGTERM and SIGINT. libuv's own handler
 * only writes to a pipe that the main loop reads; with one loop, the hooks
 * run on that loop, so a hook that holds it would hold the signal too.
 * This one first tells the script host, whose count hook then stops any
 * hook within the drain (script.c), and then calls libuv's. */
#include "stop_signal.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>

#include "script.h"

static struct sigaction next_term, next_int;

static void on_stop(int signum, siginfo_t *info, void *ctx) {
  shadow_script_stop();
  const struct sigaction *next = signum == SIGTERM ? &next_term : &next_int;
  if (next->sa_flags & SA_SIGINFO) {
    if (next->sa_sigaction) next->sa_sigaction(signum, info, ctx);
  } else if (next->sa_handler != SIG_DFL && next->sa_handler != SIG_IGN) {
    next->sa_handler(signum);
  }
}

static int install(int signum, struct sigaction *next) {
  if (sigaction(signum, NULL, next) != 0) return -errno;
  struct sigaction sa = *next;
  sa.sa_sigaction = on_stop;
  sa.sa_flags = (next->sa_flags & ~SA_RESETHAND) | SA_SIGINFO;
  if (sigaction(signum, &sa, NULL) != 0) return -errno;
  return 0;
}

int shadow_stop_signal_install(void) {
  int rc = install(SIGTERM, &next_term);
  return rc ? rc : install(SIGINT, &next_int);
}
