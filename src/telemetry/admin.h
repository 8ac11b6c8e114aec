/* The admin endpoints: /divergences (raw, or grouped by signature),
 * /stats, /stats/reset, /metrics, /noise, /reload, /healthz and the dashboard,
 * on their own listener (loopback by default). */
#ifndef SHADOW_ADMIN_H
#define SHADOW_ADMIN_H

#include <uv.h>

#include "noise_render.h"
#include "ring.h"
#include "stats.h"

typedef struct shadow_admin_s shadow_admin_t;

typedef struct shadow_admin_settings_s {
  const char *token; /* a bearer token every endpoint but /healthz needs */
  double slo_max_rate;
  uint64_t slo_min_samples;
  double slo_max_latency_ratio; /* 0: none */
  shadow_noise_settings_t noise;
} shadow_admin_settings_t;

typedef struct shadow_admin_ctx_s {
  shadow_stats_t *stats;
  shadow_ring_t *(*ring)(void *ud);
  /* What the running config says the admin needs. */
  void (*settings)(void *ud, shadow_admin_settings_t *out);
  /* Reloads the scripts: 0 done, 1 nothing changed, or -1 and *err
   * (free() it). */
  int (*reload)(void *ud, char **err);
  /* Starts a new counting window (POST /stats/reset), forgetting the
   * learned noise too when forget_noise; logs it. */
  void (*reset)(void *ud, int forget_noise);
  /* Held while stats and the ring are read: worker loops write them. */
  void (*lock)(void *ud);
  void (*unlock)(void *ud);
  void *ud;
} shadow_admin_ctx_t;

int shadow_admin_listen(uv_loop_t *loop, const char *addr,
                        const shadow_admin_ctx_t *ctx, shadow_admin_t **out,
                        char **err);
void shadow_admin_close(shadow_admin_t *a);

/* The dashboard page: src/telemetry/dashboard.html, compiled in by
 * cmake/EmbedText.cmake. */
extern const char shadow_admin_dashboard_html[];

#endif
