/* `shadowd replay [--config FILE] [--candidate URL] [--primary URL]
 *  [--rate R] [--concurrency N] [--out FILE] [--summary FILE]
 *  [--fixtures DIR] [--record FILE] [--quiet] CAPTURE_FILE...`:
 * sends the captured requests to a candidate and compares its answers
 * with the captured primary responses under the config's rules; exits 0
 * (promote, or nothing diverged), 1 (something diverged or failed) or 2
 * (an error, or nothing could be read). */
#ifndef SHADOW_REPLAY_H
#define SHADOW_REPLAY_H

int shadow_replay_main(int argc, char **argv);

#endif
