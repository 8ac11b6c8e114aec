/* Every transition of the candidate's circuit breaker. */
#include "breaker.h"
#include "check.h"

int main(void) {
  shadow_breaker_t b;
  shadow_breaker_init(&b, 3, 1000);

  /* Closed: everything goes through; failures below the threshold and a
   * success in between keep it closed. */
  CHECK(shadow_breaker_allow(&b, 0));
  shadow_breaker_result(&b, 0, 0);
  shadow_breaker_result(&b, 0, 0);
  shadow_breaker_result(&b, 1, 0);
  shadow_breaker_result(&b, 0, 0);
  shadow_breaker_result(&b, 0, 0);
  CHECK(b.state == SHADOW_BREAKER_CLOSED);

  /* The third consecutive failure opens it: nothing goes through. */
  shadow_breaker_result(&b, 0, 100);
  CHECK(b.state == SHADOW_BREAKER_OPEN);
  CHECK(!shadow_breaker_allow(&b, 500));
  CHECK(!shadow_breaker_allow(&b, 1099));

  /* After the cooldown one probe goes through, and only one. */
  CHECK(shadow_breaker_allow(&b, 1100));
  CHECK(b.state == SHADOW_BREAKER_HALF_OPEN);
  CHECK(!shadow_breaker_allow(&b, 1101));

  /* A failed probe reopens it for another cooldown. */
  shadow_breaker_result(&b, 0, 1200);
  CHECK(b.state == SHADOW_BREAKER_OPEN);
  CHECK(!shadow_breaker_allow(&b, 2100));
  CHECK(shadow_breaker_allow(&b, 2200));

  /* A successful probe closes it, and counting starts over. */
  shadow_breaker_result(&b, 1, 2300);
  CHECK(b.state == SHADOW_BREAKER_CLOSED);
  CHECK(shadow_breaker_allow(&b, 2301));
  shadow_breaker_result(&b, 0, 2302);
  shadow_breaker_result(&b, 0, 2303);
  CHECK(b.state == SHADOW_BREAKER_CLOSED);

  /* A late success from a leg that started before the breaker opened does
   * not close it. */
  shadow_breaker_result(&b, 0, 2304);
  CHECK(b.state == SHADOW_BREAKER_OPEN);
  shadow_breaker_result(&b, 1, 2305);
  CHECK(b.state == SHADOW_BREAKER_OPEN);
  CHECK(!shadow_breaker_allow(&b, 2306));
  return check_report("test_breaker");
}
