/* Whole files into memory, for the offline commands (shadowd diff, replay
 * and export read pairs, fixtures and captures this way). */
#ifndef SHADOW_FILE_H
#define SHADOW_FILE_H

#include "buf.h"

/* Appends the bytes of path ("-": standard input) to out. 0, -errno when
 * it cannot be opened, -EIO on a read error, -ENOMEM. */
int shadow_file_read(const char *path, shadow_buf_t *out);

#endif
