/* Reads a response record from a file's bytes, for the offline
 * `shadowd diff A B`. Pure: the caller reads the file. */
#ifndef SHADOW_RECORD_PARSE_H
#define SHADOW_RECORD_PARSE_H

#include <stddef.h>

#include "record.h"

/* Fills r (which should be empty) from data: a recorded HTTP response,
 * "HTTP/1.1 200 OK" + headers + a blank line + body (CRLF or LF line ends;
 * a chunked body is de-chunked, the trailer lines after its last chunk
 * going to r->trailers; content-length, when present, bounds the
 * body so an editor's trailing newline does not count), or, when data does
 * not start with "HTTP/", a bare body: status 200, and content-type
 * application/json when it parses as JSON. Returns 0, -EINVAL with err
 * saying what is wrong and where, or -ENOMEM. */
int shadow_record_parse(shadow_record_t *r, const char *data, size_t len,
                        char *err, size_t errlen);

#endif
