/* Where in a config's source an entry named by a config error is written.
 * The config is a table a script returned, and a table keeps no line
 * numbers, so the line is found by the entry's text. Private to the
 * script host. */
#ifndef SHADOW_CONFIG_LOCATE_H
#define SHADOW_CONFIG_LOCATE_H

/* msg is a config error as script_config.c writes it ("config:
 * mask[\"/id\"]: unknown class ...", "config: unknown field renames").
 * Returns the 1-based line of path where the entry it names is written,
 * or 0 when the message names none or the text is not in the file. */
long shadow_config_locate(const char *path, const char *msg);

#endif
