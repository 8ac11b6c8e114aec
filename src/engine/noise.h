/* Noise: what a secondary copy of the primary says about a difference.
 * The primary and the secondary run the same code, so whatever differs
 * between them (a timestamp, a request id, an order, a float's last
 * digits) is noise, not a change the candidate made. Two uses:
 *
 * - per request: the fields that differ between primary and secondary
 *   are masked out of that request's candidate diff (shadow_noise_mask);
 * - per field over time: a field is "real" only when the candidate
 *   differs on it significantly more often than the secondary does, or
 *   in a way the secondary never did (shadow_noise_classify).
 *
 * Pure: no I/O, no Lua. */
#ifndef SHADOW_NOISE_H
#define SHADOW_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "diff.h"

/* What is known of a field's noise beyond this request: the largest
 * number move the secondary has shown on it (0: none known). Optional. */
typedef struct shadow_noise_envelope_s {
  double (*max_delta)(void *ud, const char *folded_field, size_t len);
  void *ud;
} shadow_noise_envelope_t;

/* Removes from res (a primary/candidate diff) every difference that the
 * primary/secondary diff of the same request explains: the status and
 * headers (by name) it also has, the whole body when its bodies differ as
 * bytes or by digest, and each JSON op that the secondary matched at the
 * same place with a change of the same kind (a number moved at most twice
 * as far as the secondary's, or within env's learned range), or under a
 * subtree the secondary changed, or a move in an array whose order the
 * secondary changed too. res->json, res->fields, res->nfields and
 * res->parts are rewritten to match; a body summary "N fields differ"
 * counts what is left. env may be NULL. 0 or -ENOMEM (res unchanged). */
int shadow_noise_mask(shadow_diff_result_t *res,
                      const shadow_diff_result_t *noise,
                      const shadow_noise_envelope_t *env);

/* Whether one difference is noise, by its folded field ("status",
 * "header:<name>", "body", "body:<pointer>"), shape and number move. */
typedef int (*shadow_noise_is_fn)(void *ud, const char *field, size_t len,
                                  unsigned shape, double delta);

/* Removes from res every difference is_noise calls noise, rewriting it as
 * shadow_noise_mask does: what has been learned about fields applied to a
 * request that had no secondary. 0 or -ENOMEM (res unchanged). */
int shadow_noise_filter(shadow_diff_result_t *res, shadow_noise_is_fn is_noise,
                        void *ud);

/* --- what each difference looks like --------------------------------- */

/* The shape of one difference, as bits, so a field's noise can say which
 * shapes it has shown. */
enum {
  SHADOW_NOISE_NUMBER = 1, /* a number replaced by another number */
  SHADOW_NOISE_VALUE = 2,  /* another value of the same JSON type */
  SHADOW_NOISE_TYPE = 4,   /* a value of another type */
  SHADOW_NOISE_ADD = 8,
  SHADOW_NOISE_REMOVE = 16,
  SHADOW_NOISE_MOVE = 32,   /* an array element moved: only the order */
  SHADOW_NOISE_HEADER = 64, /* a header's values */
  SHADOW_NOISE_STATUS = 128,
  SHADOW_NOISE_BYTES = 256 /* a body compared as bytes or by digest */
};

/* One difference of a diff result. field is folded: array indexes (and
 * any all-digit segment) become "*", so "/items/3/etag" and
 * "/items/7/etag" are one field, "body:" and the pointer with a "*" for
 * the index; for a move, the array's own pointer ("body:/items"). delta:
 * |primary - candidate| for SHADOW_NOISE_NUMBER, else 0. */
typedef void (*shadow_noise_observe_fn)(void *ud, const char *field, size_t len,
                                        unsigned shape, double delta);

/* Calls fn for each difference of res, in record order. A field may come
 * more than once (two indexes fold alike): the caller counts a field once
 * per request if it wants rates. 0 or -ENOMEM. */
int shadow_noise_observe(const shadow_diff_result_t *res,
                         shadow_noise_observe_fn fn, void *ud);

/* --- learning one field, request by request ------------------------- */

/* How many of the secondary's differences on a field make its reference:
 * what later differences, the candidate's and the secondary's alike, are
 * weighed against. Fixed, so a field's memory is too; large enough that
 * a difference lies outside the reference only rarely (about 1 in
 * SHADOW_NOISE_REFERENCE + 1 for a continuous move), which is what lets a
 * bug on a few percent of requests stand out. */
#define SHADOW_NOISE_REFERENCE 50

/* What one field (route, folded pointer) has shown. Each request adds at
 * most one difference per side (shadow_noise_learn_secondary, then
 * shadow_noise_learn_candidate, as the comparator counts them). */
typedef struct shadow_noise_field_s {
  uint64_t differed;                 /* r: the candidate differed */
  uint64_t noise_differed;           /* n: the secondary differed */
  unsigned shapes, noise_shapes;     /* every shape each side showed */
  double max_delta, noise_max_delta; /* each side's largest number move */
  /* The reference: the secondary's first SHADOW_NOISE_REFERENCE
   * differences, as the shapes they showed and their largest move. */
  uint32_t ref_len;
  int ref_fresh; /* just completed: the next candidate's is not weighed */
  unsigned ref_shapes;
  double ref_max;
  /* Differences after the reference, each side's; of those, the ones
   * with a number moved further than the reference ever moved it
   * (beyond), and the ones of a shape the reference never showed
   * (novel). */
  uint64_t judged, beyond, novel;
  uint64_t noise_judged, noise_beyond, noise_novel;
} shadow_noise_field_t;

/* One request's difference on the field, with the shapes it showed and
 * its largest number move: the secondary's (primary against secondary),
 * and the candidate's (primary against candidate). Pure, O(1). */
void shadow_noise_learn_secondary(shadow_noise_field_t *f, unsigned shapes,
                                  double delta);
void shadow_noise_learn_candidate(shadow_noise_field_t *f, unsigned shapes,
                                  double delta);

/* --- significance ----------------------------------------------------- */

/* What is known of one field (route, folded pointer) over many requests. */
typedef struct shadow_noise_counts_s {
  uint64_t compared;       /* T: primary/candidate pairs compared */
  uint64_t differed;       /* r: of those, the field differed */
  uint64_t judged;         /* candidate differences after the reference */
  uint64_t beyond;         /* of those, a number moved further than it */
  uint64_t noise_compared; /* S: primary/secondary pairs compared */
  uint64_t noise_differed; /* n: of those, the field differed */
  uint64_t noise_judged;   /* secondary differences after the reference */
  uint64_t noise_beyond;   /* of those, a number moved further than it */
  uint64_t novel;          /* candidate's of a shape the reference lacks */
  uint64_t noise_novel;    /* the secondary's likewise */
} shadow_noise_counts_t;

/* A field's counts, with its route's T and S. */
shadow_noise_counts_t shadow_noise_field_counts(const shadow_noise_field_t *f,
                                                uint64_t compared,
                                                uint64_t noise_compared);

typedef enum {
  SHADOW_NOISE_UNDECIDED = 0, /* too few samples, or not yet clear */
  SHADOW_NOISE_NOISE,         /* differs as often between primaries */
  SHADOW_NOISE_REAL           /* the candidate differs more, or otherwise */
} shadow_noise_class_t;

/* The z with Phi(z) = confidence: a one-sided bound at that confidence
 * (0.99 -> 2.326, 0.975 -> 1.960). */
double shadow_noise_z(double confidence);

/* Wilson score interval of k successes in n at z. n = 0: [0, 1]. */
void shadow_noise_wilson(uint64_t k, uint64_t n, double z, double *lo,
                         double *hi);

/* Newcombe's hybrid score interval for p1 - p2 (k1/n1 minus k2/n2). */
void shadow_noise_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2,
                           double z, double *lo, double *hi);

/* P(X >= x) for X hypergeometric: n drawn without replacement from N of
 * which K are marked (one-sided Fisher exact test). Stops summing once
 * the tail is known to be above stop (pass 1 for the whole tail) and
 * returns what it has then, a value above stop. */
double shadow_noise_hypergeom_upper(uint64_t x, uint64_t n, uint64_t K,
                                    uint64_t N, double stop);

/* The rule, at alpha = 1 - confidence = Phi(-z) split between three
 * tests so that a field whose candidate and secondary vary alike is
 * classed real with probability at most alpha:
 *   undecided while T or S is under min_samples;
 *   real when the lower bound of Newcombe's interval on r/T - n/S at
 *     1 - alpha/3 is above 0 (the candidate differs significantly more
 *     often), or when the candidate's differences after the reference
 *     move a number further than the reference did significantly more
 *     often than the secondary's do (Fisher's exact test of beyond/judged
 *     against noise_beyond/noise_judged, one-sided, p <= alpha/3), or
 *     show a shape the reference never had significantly more often
 *     (the same test on novel and noise_novel);
 *   noise when the secondary differed at all (n > 0) and it is not real;
 *   undecided otherwise (the candidate differs, rarely, and noise never).
 * *margin, when not NULL, gets the Newcombe lower bound. */
shadow_noise_class_t shadow_noise_classify(const shadow_noise_counts_t *c,
                                           double z, uint64_t min_samples,
                                           double *margin);

const char *shadow_noise_class_name(shadow_noise_class_t c);

#endif
