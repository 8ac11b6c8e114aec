/* The backend registry and epochs (see backends.h). A backend is found by
 * its signature, the URL and every option that shapes its pool. */
#include "backends.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct shadow_backend_s {
  struct shadow_backend_s *next;
  int refs;
  char *signature; /* url and options: equal signature, same pool */
  shadow_upstream_t *up;
};

struct shadow_backends_s {
  uv_loop_t *loop;
  shadow_backend_t *list;
};

shadow_backends_t *shadow_backends_new(uv_loop_t *loop) {
  shadow_backends_t *r = calloc(1, sizeof(*r));
  if (r) r->loop = loop;
  return r;
}

static void backend_free(shadow_backend_t *b) {
  if (b->up) shadow_upstream_close(b->up);
  free(b->signature);
  free(b);
}

void shadow_backends_close(shadow_backends_t *r) {
  if (!r) return;
  for (shadow_backend_t *b = r->list; b; b = b->next) {
    if (b->up) shadow_upstream_close(b->up);
    b->up = NULL;
  }
}

void shadow_backends_free(shadow_backends_t *r) {
  if (!r) return;
  while (r->list) {
    shadow_backend_t *b = r->list;
    r->list = b->next;
    backend_free(b);
  }
  free(r);
}

static char *signature(const char *url, const shadow_upstream_opts_t *o) {
  shadow_buf_t s = SHADOW_BUF_INIT;
  const shadow_tls_client_opts_t *t = &o->tls;
  shadow_buf_printf(&s, "%s|%s|%s|%s|%s|%d|", t->ca_file ? t->ca_file : "",
                    t->server_name ? t->server_name : "",
                    t->cert_file ? t->cert_file : "",
                    t->key_file ? t->key_file : "", "", t->verify);
  shadow_buf_printf(&s, "%llu|%d|%zu|", (unsigned long long)o->resolve_ms,
                    o->protocol, o->max_streams);
  shadow_buf_printf(&s, "%s|%s|%llu|%llu|%llu|%llu|%zu|%zu|%zu|%zu", url,
                    o->host ? o->host : "", (unsigned long long)o->timeout_ms,
                    (unsigned long long)o->connect_timeout_ms,
                    (unsigned long long)o->read_timeout_ms,
                    (unsigned long long)o->idle_timeout_ms, o->max_connections,
                    o->max_idle, o->header_bytes, o->body_keep);
  return shadow_buf_steal(&s, NULL);
}

/* The resolver's lines (a lookup that failed, an address skipped), from
 * whichever loop owns the pool. */
static void backend_log(void *ud, const char *msg) {
  (void)ud;
  shadow_log_warn("%s", msg);
}

/* max_idle_floor: idle connections the pool keeps at least (0: its own
 * setting), for the candidate, whose legs are open-loop. */
static int backend_get(shadow_backends_t *r, const shadow_backend_cfg_t *cfg,
                       const shadow_limits_t *limits, size_t max_idle_floor,
                       shadow_backend_t **out, char **err) {
  *out = NULL;
  if (cfg->kind != SHADOW_BACKEND_HTTP) return 0;
  shadow_upstream_opts_t o;
  shadow_backend_upstream_opts(cfg, limits, &o);
  if (o.max_idle && max_idle_floor > o.max_idle) o.max_idle = max_idle_floor;
  o.log = backend_log;
  char *sig = signature(cfg->url, &o);
  if (!sig) return -ENOMEM;
  for (shadow_backend_t *b = r->list; b; b = b->next)
    if (b->refs > 0 && strcmp(b->signature, sig) == 0) {
      free(sig);
      b->refs++;
      *out = b;
      return 0;
    }
  shadow_backend_t *b = calloc(1, sizeof(*b));
  if (!b) {
    free(sig);
    return -ENOMEM;
  }
  int rc = shadow_upstream_new(r->loop, cfg->url, &o, &b->up, err);
  if (rc) {
    free(sig);
    free(b);
    return rc;
  }
  b->signature = sig;
  b->refs = 1;
  b->next = r->list;
  r->list = b;
  *out = b;
  return 0;
}

static void backend_unref(shadow_backend_t *b) {
  if (b) b->refs--;
}

int shadow_epoch_new(shadow_backends_t *r, shadow_gen_t *gen,
                     shadow_epoch_t **out, char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  shadow_epoch_t *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  int rc = backend_get(r, &cfg->primary, &cfg->limits, 0, &e->primary, err);
  /* Candidate legs are open-loop: as many can be in flight as the cap
   * allows, and each finished one should find its connection kept. */
  if (rc == 0)
    rc = backend_get(r, &cfg->candidate, &cfg->limits, cfg->max_inflight_shadow,
                     &e->candidate, err);
  /* The secondary's legs are open-loop too, under the same cap. */
  if (rc == 0)
    rc = backend_get(r, &cfg->secondary, &cfg->limits, cfg->max_inflight_shadow,
                     &e->secondary, err);
  if (rc) {
    backend_unref(e->primary);
    backend_unref(e->candidate);
    free(e);
    return rc;
  }
  e->refs = 1;
  e->gen = gen;
  e->cfg = cfg;
  shadow_gen_ref(gen);
  *out = e;
  return 0;
}

void shadow_epoch_ref(shadow_epoch_t *e) {
  e->refs++;
}

void shadow_epoch_unref(shadow_backends_t *r, shadow_epoch_t *e) {
  (void)r;
  if (!e || --e->refs > 0) return;
  backend_unref(e->primary);
  backend_unref(e->candidate);
  backend_unref(e->secondary);
  shadow_gen_unref(e->gen);
  free(e);
}

int shadow_backends_unused(const shadow_backends_t *r) {
  for (const shadow_backend_t *b = r->list; b; b = b->next)
    if (b->refs <= 0) return 1;
  return 0;
}

void shadow_backends_sweep(shadow_backends_t *r) {
  shadow_backend_t **pp = &r->list;
  while (*pp) {
    shadow_backend_t *b = *pp;
    if (b->refs <= 0) {
      *pp = b->next;
      backend_free(b);
    } else {
      pp = &b->next;
    }
  }
}

shadow_upstream_t *shadow_backend_upstream(const shadow_backend_t *b) {
  return b ? b->up : NULL;
}

size_t shadow_backends_count(const shadow_backends_t *r) {
  size_t n = 0;
  for (const shadow_backend_t *b = r->list; b; b = b->next)
    n++;
  return n;
}
