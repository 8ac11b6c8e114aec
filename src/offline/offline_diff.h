/* `shadowd diff`: compares two recorded responses offline. */
#ifndef SHADOW_OFFLINE_DIFF_H
#define SHADOW_OFFLINE_DIFF_H

/* argv[0] is "diff". Returns the exit code: 0 same, 1 differ, 2 error. */
int shadow_offline_diff_main(int argc, char **argv);

#endif
