/* See caches.h. */
#include "caches.h"

#include "buf.h"
#include "json.h"
#include "record.h"

void shadow_engine_caches_clear(void) {
  /* Records first: freeing one hands its body's block to buf.c's cache. */
  shadow_record_recycle_clear();
  shadow_buf_recycle_clear();
  shadow_json_arena_cache_clear();
}
