/* `shadowd export`: capture files as HAR 1.2, so a browser's developer
 * tools or any HAR reader opens them, and divergences as pairs of files
 * `shadowd diff` reads (a regression test a team can commit):
 *
 *   shadowd export --har [--out FILE] CAPTURE_FILE...
 *   shadowd export --fixtures DIR DIVERGENCES_FILE...
 *
 * A divergences file is what GET /divergences answers (grouped or not),
 * or NDJSON records (log.file, `shadowd replay`'s output). A record holds
 * the differences, not the responses, so its pair is made from them: the
 * statuses, the differing headers, and JSON bodies holding each side's
 * values at the differing paths. `shadowd replay --fixtures` writes the
 * whole responses instead (fixture_* below). */
#ifndef SHADOW_EXPORT_H
#define SHADOW_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"

int shadow_export_main(int argc, char **argv);

/* A response as a file `shadowd diff` reads: status line, headers (the
 * framing ones left out and a content-length of the body written), blank
 * line, body. out is reset first. */
int shadow_fixture_format(shadow_buf_t *out, const shadow_record_t *rec);

/* Writes one case under dir: <dir>/<id>-<route and path, as a file
 * name>/{primary.http,candidate.http,divergence.json}. 0, or -1 with err
 * saying what failed. */
int shadow_fixture_write_pair(const char *dir, uint64_t id, const char *route,
                              const char *path, const shadow_buf_t *primary,
                              const shadow_buf_t *candidate, const char *record,
                              size_t record_len, char *err, size_t errlen);

#endif
