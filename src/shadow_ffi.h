/* The C ABI of libshadow that lua/shadow/loader.lua declares with ffi.cdef
 * (spec/ffi/cdef_spec.lua checks that the two agree).
 * Plain types only: opaque handles, char pointers with lengths, numbers.
 * Every handle is created and released by C; buffers handed in by Lua are
 * copied, never kept or freed; text handed out stays owned by C and valid
 * until the next call on the same handle. The *_free functions take NULL,
 * so the Lua side, which clears its pointer before releasing, can release
 * twice (explicitly, then from the finalizer) safely.
 *
 * Change SHADOW_ABI_VERSION whenever a declaration below changes; the Lua
 * module refuses to run against a library that reports another version. */
#ifndef SHADOW_FFI_H
#define SHADOW_FFI_H

#include <stddef.h>

#include "diff.h"
#include "record.h"
#include "ring.h"

#define SHADOW_ABI_VERSION 3

/* libshadow is built with -fvisibility=hidden: these functions, and only
 * these, are what it (and shadowd, for its embedded Lua) exports. */
#define SHADOW_API __attribute__((visibility("default")))

typedef struct shadow_ffi_diff_s shadow_ffi_diff_t;

SHADOW_API int shadow_abi_version(void);

/* Records: what shadow.diff builds from { status, headers, body }. */
SHADOW_API shadow_record_t *shadow_ffi_record_new(void);
SHADOW_API void shadow_ffi_record_clear(shadow_record_t *r);
SHADOW_API int shadow_ffi_record_set_status(shadow_record_t *r, int status);
SHADOW_API int shadow_ffi_record_add_header(shadow_record_t *r,
                                            const char *name, size_t name_len,
                                            const char *value,
                                            size_t value_len);
SHADOW_API int shadow_ffi_record_set_body(shadow_record_t *r, const char *body,
                                          size_t len);
/* A trailer (gRPC's grpc-status and grpc-message travel in them); since
 * ABI 3. */
SHADOW_API int shadow_ffi_record_add_trailer(shadow_record_t *r,
                                             const char *name, size_t name_len,
                                             const char *value,
                                             size_t value_len);
/* A body that arrives in pieces (a gateway's body filter): the first keep
 * bytes are kept, the rest digested and counted; end() once it is all in.
 * 0 or a negative errno. */
SHADOW_API int shadow_ffi_record_body_feed(shadow_record_t *r, const char *data,
                                           size_t len, double keep);
SHADOW_API int shadow_ffi_record_body_end(shadow_record_t *r);
/* The whole body's length, cut or not; *cut says whether it was cut. */
SHADOW_API double shadow_ffi_record_body_len(const shadow_record_t *r,
                                             int *cut);
SHADOW_API void shadow_ffi_record_free(shadow_record_t *r);

/* Diff options; the setters return 0, -EINVAL or -ENOMEM. */
SHADOW_API shadow_diff_opts_t *shadow_ffi_opts_new(void);
SHADOW_API int shadow_ffi_opts_ignore_header(shadow_diff_opts_t *o,
                                             const char *name);
SHADOW_API int shadow_ffi_opts_ignore_json(shadow_diff_opts_t *o,
                                           const char *pointer);
/* mode: 0 index, 1 set, 2 multiset, 3 key (key names the member). */
SHADOW_API int shadow_ffi_opts_array_mode(shadow_diff_opts_t *o,
                                          const char *pointer, int mode,
                                          const char *key);
SHADOW_API int shadow_ffi_opts_tolerance(shadow_diff_opts_t *o,
                                         const char *pointer, double tolerance);
SHADOW_API int shadow_ffi_opts_diff_bytes(shadow_diff_opts_t *o, double n);
/* Values in diffs longer than this are truncated with a marker; 0: never. */
SHADOW_API int shadow_ffi_opts_value_max(shadow_diff_opts_t *o, double n);
/* Every rule at once, from the JSON form of the options table (see
 * shadow_diff_opts_parse in engine/diff.h): 0, -ENOMEM, or -EINVAL with
 * err (errlen bytes, NUL-terminated) naming the bad entry. */
SHADOW_API int shadow_ffi_opts_parse(shadow_diff_opts_t *o, const char *json,
                                     size_t len, char *err, size_t errlen);
/* The JSON rules of o by name ("coerce:/qty": what rule hit counters are
 * labelled with), each NUL-terminated, *len bytes in all, owned by o; *n
 * is how many. */
SHADOW_API const char *shadow_ffi_opts_rules(const shadow_diff_opts_t *o,
                                             size_t *len, size_t *n);
SHADOW_API void shadow_ffi_opts_free(shadow_diff_opts_t *o);

/* A diff handle keeps the result and the formatted record between calls,
 * so a hot loop allocates nothing once the buffers have grown. */
SHADOW_API shadow_ffi_diff_t *shadow_ffi_diff_new(void);
/* Request facts for the records that follow; NULL strings are null. */
SHADOW_API int shadow_ffi_diff_meta(shadow_ffi_diff_t *d, const char *route,
                                    const char *method, const char *path,
                                    const char *key);
/* Compares p with c under o (NULL: defaults), as replies to the request
 * at the path of the last shadow_ffi_diff_meta (a gRPC call's method then
 * picks the output type its messages decode with). Returns the parts bitmask
 * (1 status, 2 headers, 4 body; 0 = equal) or a negative errno. The whole
 * divergence record is then at *json, *len bytes, owned by d and valid
 * until the next call on d; when equal it is still written. */
SHADOW_API int shadow_ffi_diff_run(shadow_ffi_diff_t *d,
                                   const shadow_diff_opts_t *o,
                                   const shadow_record_t *p,
                                   const shadow_record_t *c, const char **json,
                                   size_t *len);
/* The fields that differed in the last run on d, each NUL-terminated
 * ("status", "header:<name>", "body:<pointer>" or "body"), *len bytes in
 * all, owned by d like the record text; *n is how many. */
SHADOW_API const char *shadow_ffi_diff_fields(const shadow_ffi_diff_t *d,
                                              size_t *len, size_t *n);
/* The rules of o (the options of the last run on d) that decided
 * something in it (absorbed a difference, renamed a member), by name like
 * shadow_ffi_opts_rules, owned by d like the record text; *n is how many,
 * often 0. */
SHADOW_API const char *shadow_ffi_diff_hits(shadow_ffi_diff_t *d,
                                            const shadow_diff_opts_t *o,
                                            size_t *len, size_t *n);
SHADOW_API void shadow_ffi_diff_free(shadow_ffi_diff_t *d);

/* Sticky sampling; key NULL means a random draw at the same rate. */
SHADOW_API int shadow_ffi_sampled(const char *key, size_t len, double rate);

/* The promotion verdict of engine/verdict.h, from counts held as doubles
 * (whole numbers up to 2^53, diverged <= compared), budget in [0, 1].
 * Returns 1 promote, 0 insufficient-data, -1 hold, or -EINVAL; writes the
 * rate, the 95% Wilson bounds and the reason (cut to reason_len - 1 bytes,
 * NUL-terminated) through whichever pointers are not NULL. */
SHADOW_API int shadow_ffi_verdict(double compared, double diverged,
                                  double budget, double min_samples,
                                  double *rate, double *lower, double *upper,
                                  char *reason, size_t reason_len);

/* The ring log. get: entry i (0 = newest) or NULL; valid until next push. */
SHADOW_API shadow_ring_t *shadow_ffi_ring_new(size_t capacity);
SHADOW_API int shadow_ffi_ring_push(shadow_ring_t *r, const char *json,
                                    size_t len, const char *route,
                                    size_t route_len);
SHADOW_API size_t shadow_ffi_ring_len(const shadow_ring_t *r);
SHADOW_API size_t shadow_ffi_ring_capacity(const shadow_ring_t *r);
SHADOW_API int shadow_ffi_ring_set_capacity(shadow_ring_t *r, size_t capacity);
SHADOW_API const char *shadow_ffi_ring_get(const shadow_ring_t *r, size_t i,
                                           size_t *len);
SHADOW_API void shadow_ffi_ring_free(shadow_ring_t *r);

#endif
