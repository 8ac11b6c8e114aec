/* The wall clock divergence records and reload results are stamped with:
 * one function, so every stamp in a process agrees. Intervals are measured
 * with monotonic clocks by whoever measures them (uv_hrtime in the
 * daemon); this is for the time of day only. */
#ifndef SHADOW_CLOCK_H
#define SHADOW_CLOCK_H

/* Milliseconds since the Unix epoch. */
double shadow_wall_ms(void);

/* ms as "2026-11-26T18:00:00.123Z" (24 characters and a NUL, in room
 * for a few more so no compiler doubts it fits). */
#define SHADOW_WALL_ISO_LEN 32
void shadow_wall_iso(double ms, char out[SHADOW_WALL_ISO_LEN]);

#endif
