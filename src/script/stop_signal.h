/* SIGTERM and SIGINT seen the moment they arrive, not when a loop gets to
 * them: a loop busy in a Lua hook reads its signal pipe only after the
 * hook returns. */
#ifndef SHADOW_STOP_SIGNAL_H
#define SHADOW_STOP_SIGNAL_H

/* Call after uv_signal_start() for SIGTERM and SIGINT: puts a handler in
 * front of libuv's that tells the script host (shadow_script_stop) and
 * then hands the signal on, so libuv's loop still drains as before.
 * 0, or -errno. */
int shadow_stop_signal_install(void);

#endif
