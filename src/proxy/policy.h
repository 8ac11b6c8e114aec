/* Which requests are mirrored, and under which route they are counted:
 * the method set, the filter and key hooks, the sticky sampling rule, and
 * the route hook or the default route. The dispatcher asks it for every
 * request; `shadowd --check --request` asks it for one and prints why. */
#ifndef SHADOW_POLICY_H
#define SHADOW_POLICY_H

#include "buf.h"
#include "request_parse.h"
#include "script.h"

/* Why a request is not mirrored; SHADOW_POLICY_MIRROR when it is. */
typedef enum shadow_policy_why_e {
  SHADOW_POLICY_MIRROR = 0,
  SHADOW_POLICY_NO_CANDIDATE, /* no candidate, or rate 0 */
  SHADOW_POLICY_METHOD,       /* not in mirror_methods */
  SHADOW_POLICY_FILTERED,     /* the filter hook said no, or failed */
  SHADOW_POLICY_KEY_FAILED,   /* the key hook failed */
  SHADOW_POLICY_NOT_SAMPLED   /* the key (or the draw) is not sampled */
} shadow_policy_why_t;

typedef struct shadow_policy_decision_s {
  shadow_policy_why_t why;
  int has_key;      /* the key hook returned a key (else: a random draw) */
  int secondary;    /* mirrored, and to the secondary as well */
  shadow_buf_t key; /* when has_key */
} shadow_policy_decision_t;

/* Whether the request could be mirrored at all, before any hook runs:
 * a candidate at a rate above 0, and a mirrored method. */
int shadow_policy_may_mirror(const shadow_config_t *cfg, int method_id);

/* Decides for one request; lreq is its Lua view (0 when no hook needs
 * one). d->key is reset first and kept by the caller (free it). */
void shadow_policy_decide(shadow_gen_t *g, const shadow_request_t *req,
                          int lreq, shadow_policy_decision_t *d);

/* Whether capture records this request (capture.h): a capture.file at a
 * rate above 0, a method in capture.methods, the filter hook, then the
 * sticky rule at capture.rate on capture.key's key, or on sample.key's
 * when capture has no key hook (so the same users are captured as are
 * mirrored), a random draw when there is none. mirror is the request's
 * mirroring decision when the dispatcher took one (NULL: none): a filter
 * or sample.key that already ran for it is not run again. d->key is
 * reset first and kept by the caller. */
void shadow_policy_capture(shadow_gen_t *g, const shadow_request_t *req,
                           int lreq, const shadow_policy_decision_t *mirror,
                           shadow_policy_decision_t *d);

/* A route name's most bytes: past it a name is cut (ending in an
 * ellipsis), so a client's 8 KB path does not become an 8 KB label. */
#define SHADOW_ROUTE_NAME_MAX 256

/* The route: the route hook's answer ("unknown" when it fails), or the
 * method and path with numeric segments folded to ":id"; as a label
 * (valid UTF-8, no control characters, at most SHADOW_ROUTE_NAME_MAX
 * bytes; see utf8.h). */
void shadow_policy_route(shadow_gen_t *g, const shadow_request_t *req, int lreq,
                         shadow_buf_t *route);
void shadow_policy_default_route(const char *method, const char *target,
                                 size_t target_len, shadow_buf_t *route);
/* 1 when the request is a gRPC call (content-type application/grpc*). */
int shadow_policy_is_grpc(const shadow_request_t *req);
/* The route without a hook: a gRPC call's is its path without the query,
 * "/package.Service/Method" (no method word, no :id folding: the path
 * names the method), anything else's shadow_policy_default_route's. */
void shadow_policy_default_route_of(const shadow_request_t *req,
                                    shadow_buf_t *route);

/* Words for --check: "not in mirror_methods", ... */
const char *shadow_policy_why_name(shadow_policy_why_t why);

#endif
