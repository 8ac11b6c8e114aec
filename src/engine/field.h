/* Field names: how a difference is named for counting ("status",
 * "header:<name>", "body" or "body:<JSON Pointer>", as the diff writes
 * them), and their folded form, which telemetry and noise learning count
 * by. Pure.
 *
 * A JSON key may hold a NUL ("e\u0000f"). Field names travel as
 * NUL-terminated strings (the diff's list, the noise table, signatures,
 * rule proposals), so the engine writes a NUL in a key as "~2" in every
 * JSON Pointer it makes, beside RFC 6901's ~0 and ~1, and every pointer
 * reader (rules, redact, export, lua/shadow/rules.lua) reads ~2 back as
 * NUL. "/e~2f" and "/e" are then two fields, compared by every byte. */
#ifndef SHADOW_FIELD_H
#define SHADOW_FIELD_H

#include <stddef.h>

/* Folds a field name for counting: every JSON Pointer segment that is an
 * array index (digits only) becomes a "*", so "body:/hits/0/id" and
 * "body:/hits/2/id" count as one field. Writes at most cap - 1 bytes and a
 * NUL; returns the length. */
size_t shadow_field_fold(const char *field, size_t len, char *out, size_t cap);

#endif
