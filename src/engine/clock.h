/* The wall clock divergence records and reload results are stamped with:
 * one function, so every stamp in a process agrees. Intervals are measured
 * with monotonic clocks by whoever measures them (uv_hrtime in the
 * daemon); this is for the time of day only. */
#ifndef SHADOW_CLOCK_H
#define SHADOW_CLOCK_H

/* Milliseconds since the Unix epoch. */
double shadow_wall_ms(void);

#endif
