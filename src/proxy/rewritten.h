/* What the rules rewrote in a compared pair, for its divergence record: a
 * record shows the primary's values after normalize and rename, which the
 * primary never sent as such. The records as received are kept before
 * normalize runs; the record then says which side normalize changed and
 * which renames moved the primary's members, and gives the values as
 * received at the paths that differ. */
#ifndef SHADOW_REWRITTEN_H
#define SHADOW_REWRITTEN_H

#include "buf.h"
#include "diff.h"
#include "record.h"

/* At most this many body paths get their value as received. */
#define SHADOW_REWRITTEN_PATHS_MAX 32

typedef struct shadow_rewritten_side_s {
  int kept; /* the record below is the side as received */
  int status;
  shadow_headers_t headers;
  shadow_buf_t body; /* empty when the body was cut or too large */
  int body_kept;     /* body holds the body as received */
  size_t body_len;   /* the body's length as received */
  int changed;       /* normalize changed the side */
} shadow_rewritten_side_t;

typedef struct shadow_rewritten_s {
  shadow_rewritten_side_t side[2]; /* primary, candidate */
  /* The primary as compared, while its record is published: where a
   * rename alone moved members, it is also the primary as received. */
  const shadow_record_t *primary;
  shadow_buf_t tail;
} shadow_rewritten_t;

void shadow_rewritten_free(shadow_rewritten_t *w);
/* Forgets the last pair (keeps memory). */
void shadow_rewritten_clear(shadow_rewritten_t *w);
/* Keeps r as received, before normalize (side 0 primary, 1 candidate);
 * bodies past body_max are not kept. */
void shadow_rewritten_keep(shadow_rewritten_t *w, int side,
                           const shadow_record_t *r, size_t body_max);
/* After normalize: notes whether it changed the side. */
void shadow_rewritten_check(shadow_rewritten_t *w, int side,
                            const shadow_record_t *after);
/* Appends ,"rewritten":{...} and ,"received":{...} inside the record in
 * out (which ends with its closing brace), when anything was rewritten
 * and the record stays within max bytes. with_values 0 leaves the values
 * out (a body redaction rule could not vouch for them). */
void shadow_rewritten_append(shadow_rewritten_t *w, shadow_buf_t *out,
                             const shadow_diff_opts_t *o,
                             const shadow_diff_result_t *res, int with_values,
                             size_t max);

#endif
