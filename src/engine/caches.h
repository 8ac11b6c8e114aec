/* The engine's per-thread caches: buf.c's recycled blocks, record.c's
 * recycled records, json.c's arena chunk and parser stacks. Each thread
 * that compares keeps a little memory between pairs; this frees it, before
 * the thread (or the process) ends, so leak checkers see nothing held. */
#ifndef SHADOW_CACHES_H
#define SHADOW_CACHES_H

void shadow_engine_caches_clear(void);

#endif
