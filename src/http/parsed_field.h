/* What llhttp has already checked of a header line, so that the response
 * parser checks only the rest (the request parser's own head scan refuses
 * control bytes, and it checks names in full). Strict llhttp (no lenient flag
 * is ever set here) refuses a head whose field value holds a control byte other
 * than HTAB (and DEL), in every header and in trailers, whole or split across
 * reads; obs-fold line breaks never reach a value. Of a field name it refuses
 * every byte that is not a token character but one: the space, which it
 * lets into a name ("X A", "Host "). So a line from llhttp is a valid field
 * (RFC 9110) exactly when its name holds no space and is not empty.
 * spec/c/test_parsed_field.c holds llhttp to that over every byte, and
 * the request and response fuzzers check every line a parser marks valid;
 * an llhttp that let more through fails them both. */
#ifndef SHADOW_PARSED_FIELD_H
#define SHADOW_PARSED_FIELD_H

#include <stddef.h>
#include <string.h>

static inline int shadow_parsed_field_name_ok(const char *name, size_t len) {
  return len > 0 && memchr(name, ' ', len) == NULL;
}

#endif
