/* Candidate admission: the breaker before the in-flight cap, the one probe
 * a half-open breaker lets through, outcomes that count and those that do
 * not, and the breaker's state as /stats shows it. */
#include <string.h>

#include "admission.h"
#include "check.h"
#include "config.h"
#include "shared.h"

int main(void) {
  shadow_config_t cfg;
  CHECK(shadow_config_init(&cfg) == 0);
  cfg.breaker_failures = 2;
  cfg.breaker_cooldown_ms = 100;
  shadow_shared_t sh;
  char *err = NULL;
  CHECK(shadow_shared_init(&sh, &cfg, 1, &err) == 0);
  int probe;
  const char *why;

  /* The cap: two slots, the third is overload; a slot given back frees. */
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 2, 0, &probe, &why) &&
      !probe);
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 2, 0, &probe, &why));
  CHECK(
      !shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 2, 0, &probe, &why));
  CHECK(strcmp(why, "overload") == 0);
  CHECK(sh.gates[SHADOW_GATE_CANDIDATE].inflight == 2);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_OK, 0);
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 2, 0, &probe, &why));

  /* Two failures open the breaker: nothing gets in, and /stats says so.
   * A dropped leg (cancelled) does not count. */
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_FAILED, 10);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_DROPPED, 11);
  CHECK(strcmp(sh.stats->breaker_state, "closed") == 0);
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 12, &probe, &why));
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_FAILED, 13);
  CHECK(sh.gates[SHADOW_GATE_CANDIDATE].inflight == 0);
  CHECK(strcmp(sh.stats->breaker_state, "open") == 0);
  CHECK(sh.stats->breaker_open == 1);
  CHECK(
      !shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 50, &probe, &why));
  CHECK(strcmp(why, "breaker") == 0);

  /* After the cooldown: one probe, then nothing while it runs. */
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 120, &probe,
                               &why) &&
        probe);
  CHECK(strcmp(sh.stats->breaker_state, "half-open") == 0);
  CHECK(!shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 121, &probe,
                                &why));
  CHECK(strcmp(why, "breaker") == 0);
  /* A probe that ends without an outcome frees the slot for another. */
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 1, SHADOW_LEG_DROPPED,
                         122);
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 123, &probe,
                               &why) &&
        probe);
  /* A probe over the cap is given back unused. */
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 1, SHADOW_LEG_DROPPED,
                         124);
  sh.gates[SHADOW_GATE_CANDIDATE].inflight = 5;
  CHECK(!shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 5, 125, &probe,
                                &why) &&
        !probe);
  CHECK(strcmp(why, "overload") == 0);
  sh.gates[SHADOW_GATE_CANDIDATE].inflight = 0;
  /* The probe succeeds: closed again. */
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 126, &probe,
                               &why) &&
        probe);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 1, SHADOW_LEG_OK, 127);
  CHECK(strcmp(sh.stats->breaker_state, "closed") == 0);

  /* Half-open, a late leg that started while it was closed says nothing:
   * its failure neither reopens nor counts. */
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 200, &probe,
                               &why) &&
        !probe); /* A */
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 201, &probe, &why));
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_FAILED, 202);
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 203, &probe, &why));
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_FAILED,
                         204); /* opens */
  CHECK(strcmp(sh.stats->breaker_state, "open") == 0);
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 400, &probe,
                               &why) &&
        probe);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 0, SHADOW_LEG_FAILED,
                         401); /* A, late */
  CHECK(strcmp(sh.stats->breaker_state, "half-open") == 0);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 1, SHADOW_LEG_FAILED,
                         402); /* the probe */
  CHECK(strcmp(sh.stats->breaker_state, "open") == 0);
  CHECK(sh.gates[SHADOW_GATE_CANDIDATE].inflight == 0);

  /* The secondary has a gate of its own: its failures open its breaker,
   * not the candidate's. */
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_SECONDARY, 0, 500, &probe, &why));
  shadow_admission_leave(&sh, SHADOW_GATE_SECONDARY, 0, SHADOW_LEG_FAILED, 501);
  CHECK(
      shadow_admission_enter(&sh, SHADOW_GATE_SECONDARY, 0, 502, &probe, &why));
  shadow_admission_leave(&sh, SHADOW_GATE_SECONDARY, 0, SHADOW_LEG_FAILED, 503);
  CHECK(strcmp(sh.stats->secondary_breaker_state, "open") == 0);
  CHECK(!shadow_admission_enter(&sh, SHADOW_GATE_SECONDARY, 0, 504, &probe,
                                &why));
  CHECK(strcmp(sh.stats->breaker_state, "open") == 0); /* as it was */
  CHECK(shadow_admission_enter(&sh, SHADOW_GATE_CANDIDATE, 0, 800, &probe,
                               &why) &&
        probe);
  shadow_admission_leave(&sh, SHADOW_GATE_CANDIDATE, 1, SHADOW_LEG_OK, 801);
  CHECK(strcmp(sh.stats->breaker_state, "closed") == 0);
  CHECK(strcmp(sh.stats->secondary_breaker_state, "open") == 0);

  shadow_shared_release(&sh);
  shadow_config_release(&cfg);
  return check_report("test_admission");
}
