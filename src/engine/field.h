/* Field names: how a difference is named for counting ("status",
 * "header:<name>", "body" or "body:<JSON Pointer>", as the diff writes
 * them), and their folded form, which telemetry and noise learning count
 * by. Pure. */
#ifndef SHADOW_FIELD_H
#define SHADOW_FIELD_H

#include <stddef.h>

/* Folds a field name for counting: every JSON Pointer segment that is an
 * array index (digits only) becomes a "*", so "body:/hits/0/id" and
 * "body:/hits/2/id" count as one field. Writes at most cap - 1 bytes and a
 * NUL; returns the length. */
size_t shadow_field_fold(const char *field, size_t len, char *out, size_t cap);

#endif
