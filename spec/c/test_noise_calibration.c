/* The noise classes against simulated traffic: how often a field of pure
 * noise is classed real (it must be at most 1 - confidence, within the
 * binomial error of the runs, at every traffic level), and how often a
 * real bug is found (at least 95% of runs at 3,000 requests). Each run is
 * one field fed request by request exactly as the comparator feeds it
 * (engine/noise.h: the secondary's difference, then the candidate's,
 * through shadow_noise_learn_secondary and shadow_noise_learn_candidate),
 * and classed as GET /noise and the per-request filter class it
 * (shadow_noise_field_counts, shadow_noise_classify). Seeded: every
 * figure is the same on every machine.
 *
 * For comparison it also counts, on the same runs, the rule this one
 * replaced (each candidate move against the secondary's running maximum,
 * Wilson's lower bound of beyond/judged against 1/(n + 1)) and Diffy's
 * (reported iff r > n, |r - n|/(r + n) > 20% and |r - n|/T > 0.03%), and
 * prints the table docs/pending/noise-calibration.md shows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "noise.h"

/* 500 runs a case put the binomial error of a 1% rate near 0.45%. Under
 * the sanitizers (unoptimized, every access checked) the same code paths
 * run 200 times a case, so the suite stays within its time; the bounds
 * below follow the number of runs. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RUNS 200
#else
#define RUNS 500
#endif
#define MIN_SAMPLES 100

static const uint64_t checkpoints[] = {300, 3000, 30000};
#define NCHECK 3
static const double confidences[] = {0.99, 0.95};
#define NCONF 2

/* --- a seeded generator (splitmix64) ------------------------------------ */

typedef struct rng_s {
  uint64_t s;
  double spare; /* the polar method's second normal */
  int has_spare;
} rng_t;

static uint64_t next(rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform on (0, 1), never 0 or 1. */
static double unif(rng_t *r) {
  return ((double)(next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* A point uniform in the unit disc, not at its centre. */
static void disc(rng_t *r, double *u, double *v, double *s) {
  do {
    *u = 2 * unif(r) - 1;
    *v = 2 * unif(r) - 1;
    *s = *u * *u + *v * *v;
  } while (*s >= 1 || *s == 0);
}

/* Marsaglia's polar method: two normals per point. */
static double normal(rng_t *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u, v, s;
  disc(r, &u, &v, &s);
  double m = sqrt(-2 * log(s) / s);
  r->spare = v * m;
  r->has_spare = 1;
  return u * m;
}

/* The ratio of a disc point's coordinates is Cauchy (its angle is
 * uniform). */
static double cauchy(rng_t *r) {
  double u, v, s;
  do
    disc(r, &u, &v, &s);
  while (v == 0);
  return u / v;
}

/* --- the cases ---------------------------------------------------------- */

/* One side's difference on the request: shapes 0 when the field did not
 * differ. */
typedef struct side_s {
  unsigned shapes;
  double delta;
} side_t;

typedef enum {
  UNIFORM,  /* each backend's value: U(0, 1) */
  NORMAL,   /* N(0, 1) */
  HEAVY,    /* Cauchy: no mean, no range */
  DISCRETE, /* 0, 1, 2 or 3: ties, and no difference a quarter of the time */
  SPARSE,   /* 0 on 97% of answers, else U(0, 1): differs on ~6% */
  SHAPES,   /* U(0, 1), and a string instead on 1% of answers */
  /* Bugs, on the candidate only, over uniform noise. */
  SHIFT,  /* moved by 2 (past the noise's range of 1) on 5% of requests */
  BAR,    /* 10 + k 1e-6 jitter, 10% off on every 10th request */
  RSHAPE, /* a string instead of the number on 2% of requests */
  RATE,   /* a field that never differs, wrong on 2% of requests */
} kind_t;

typedef struct case_s {
  const char *name;
  kind_t kind;
  double share;      /* of requests with a secondary leg */
  uint64_t requests; /* the last checkpoint this case runs to */
  int bug;
} case_t;

static const case_t cases[] = {
    {"uniform", UNIFORM, 1, 30000, 0},
    {"normal", NORMAL, 1, 30000, 0},
    {"heavy-tailed (Cauchy)", HEAVY, 1, 30000, 0},
    {"discrete {0..3}", DISCRETE, 1, 30000, 0},
    {"sparse (differs ~6%)", SPARSE, 1, 3000, 0},
    {"rare shape (1% strings)", SHAPES, 1, 30000, 0},
    {"uniform, secondary on 50%", UNIFORM, 0.5, 3000, 0},
    {"shift past range, 5%", SHIFT, 1, 3000, 1},
    {"10% off every 10th", BAR, 1, 3000, 1},
    {"new shape, 2%", RSHAPE, 1, 3000, 1},
    {"shift past range, 5%, secondary 50%", SHIFT, 0.5, 3000, 1},
    {"10% off every 10th, secondary 50%", BAR, 0.5, 3000, 1},
    {"new shape, 2%, secondary 50%", RSHAPE, 0.5, 3000, 1},
    {"constant field wrong on 2%", RATE, 1, 3000, 1},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* One backend's answer: a number, or (is_string) a string. */
typedef struct answer_s {
  double v;
  int is_string;
} answer_t;

static answer_t answer(kind_t k, rng_t *r) {
  answer_t a = {0, 0};
  switch (k) {
  case NORMAL: a.v = normal(r); break;
  case HEAVY: a.v = cauchy(r); break;
  case DISCRETE: a.v = floor(unif(r) * 4); break;
  case SPARSE: a.v = unif(r) < 0.97 ? 0 : unif(r); break;
  case SHAPES:
    a.v = unif(r);
    a.is_string = unif(r) < 0.01;
    break;
  case BAR: a.v = 10 + floor(unif(r) * 10) * 1e-6; break;
  case RATE: a.v = 1; break;
  default: a.v = unif(r); break;
  }
  return a;
}

/* What the diff engine reports for the field between the primary and
 * another answer: nothing, a number moved, or a value of another kind. */
static side_t differ(answer_t p, answer_t o) {
  side_t s = {0, 0};
  if (p.is_string || o.is_string) {
    /* Two random strings differ; a string against a number is a type. */
    s.shapes =
        p.is_string && o.is_string ? SHADOW_NOISE_VALUE : SHADOW_NOISE_TYPE;
    return s;
  }
  if (p.v != o.v) {
    s.shapes = SHADOW_NOISE_NUMBER;
    s.delta = fabs(p.v - o.v);
  }
  return s;
}

/* --- the rules ---------------------------------------------------------- */

/* The replaced rule's state: the secondary's running maximum. */
typedef struct old_s {
  uint64_t judged, beyond;
  unsigned shapes;
  double max;
} old_t;

static shadow_noise_class_t old_classify(const shadow_noise_field_t *f,
                                         const old_t *o, uint64_t T, uint64_t S,
                                         double z) {
  double lo, hi, blo, bhi;
  if (T < MIN_SAMPLES || S < MIN_SAMPLES) return SHADOW_NOISE_UNDECIDED;
  shadow_noise_newcombe(f->differed, T, f->noise_differed, S, z, &lo, &hi);
  if (lo > 0) return SHADOW_NOISE_REAL;
  shadow_noise_wilson(o->beyond, o->judged, z, &blo, &bhi);
  if (o->judged && blo > 1.0 / ((double)f->noise_differed + 1))
    return SHADOW_NOISE_REAL;
  return f->noise_differed ? SHADOW_NOISE_NOISE : SHADOW_NOISE_UNDECIDED;
}

/* Diffy's rule, on the requests that had all three legs (its r and n
 * come from the same requests). */
static int diffy(uint64_t r, uint64_t n, uint64_t t) {
  if (r <= n || t == 0) return 0;
  double d = (double)(r - n);
  return d / (double)(r + n) > 0.20 && d / (double)t > 0.0003;
}

/* --- running a case ----------------------------------------------------- */

typedef struct tally_s {
  uint64_t real[NCHECK][NCONF]; /* runs classed real, per confidence */
  uint64_t old_real[NCHECK];    /* the replaced rule, at 0.99 */
  uint64_t diffy[NCHECK];       /* Diffy reported it */
  uint64_t noise[NCHECK];       /* classed noise at 0.99 */
} tally_t;

static void run(const case_t *c, uint64_t seed, tally_t *t) {
  rng_t rng = {seed, 0, 0};
  shadow_noise_field_t f;
  old_t old = {0, 0, 0, 0};
  memset(&f, 0, sizeof(f));
  uint64_t T = 0, S = 0, dr = 0, dn = 0;
  int next_check = 0;
  for (uint64_t i = 1; i <= c->requests; i++) {
    answer_t p = answer(c->kind, &rng), a = answer(c->kind, &rng);
    answer_t s = answer(c->kind, &rng);
    int leg = c->share >= 1 || unif(&rng) < c->share;
    double u = unif(&rng);
    if (c->kind == SHIFT && u < 0.05) a.v += 2;
    if (c->kind == BAR && i % 10 == 3) a.v *= 1.1;
    if (c->kind == RSHAPE && u < 0.02) a.is_string = 1;
    if (c->kind == RATE && u < 0.02) a.v = 2;
    side_t cd = differ(p, a), sd = differ(p, s);
    /* As the comparator counts a request: T, S, the secondary's
     * difference, then the candidate's. */
    T++;
    if (leg) {
      S++;
      if (sd.shapes) {
        shadow_noise_learn_secondary(&f, sd.shapes, sd.delta);
        old.shapes |= sd.shapes;
        if (sd.delta > old.max) old.max = sd.delta;
        dn++;
      }
      if (cd.shapes) dr++;
    }
    if (cd.shapes) {
      shadow_noise_learn_candidate(&f, cd.shapes, cd.delta);
      if (f.noise_differed >= 10) {
        old.judged++;
        if ((cd.shapes & ~old.shapes) ||
            ((cd.shapes & SHADOW_NOISE_NUMBER) && cd.delta > old.max))
          old.beyond++;
      }
    }
    if (next_check < NCHECK && i == checkpoints[next_check]) {
      shadow_noise_counts_t k = shadow_noise_field_counts(&f, T, S);
      for (int j = 0; j < NCONF; j++) {
        shadow_noise_class_t cl = shadow_noise_classify(
            &k, shadow_noise_z(confidences[j]), MIN_SAMPLES, NULL);
        t->real[next_check][j] += cl == SHADOW_NOISE_REAL;
        if (j == 0) t->noise[next_check] += cl == SHADOW_NOISE_NOISE;
      }
      t->old_real[next_check] +=
          old_classify(&f, &old, T, S, shadow_noise_z(0.99)) ==
          SHADOW_NOISE_REAL;
      t->diffy[next_check] += diffy(dr, dn, S);
      next_check++;
    }
  }
}

/* The largest share of RUNS that a rate alpha reaches by chance: three
 * binomial standard errors above it. */
static double bound(double alpha, double runs) {
  return alpha + 3 * sqrt(alpha * (1 - alpha) / runs);
}

static double pct(uint64_t k) {
  return 100.0 * (double)k / RUNS;
}

int main(void) {
  uint64_t pooled[NCONF] = {0}, pooled_n = 0;
  printf("| case | requests | real, 0.99 | real, 0.95 | noise, 0.99 | "
         "former rule, 0.99 | Diffy |\n"
         "|---|---:|---:|---:|---:|---:|---:|\n");
  for (size_t ci = 0; ci < NCASES; ci++) {
    const case_t *c = &cases[ci];
    tally_t t;
    memset(&t, 0, sizeof(t));
    for (uint64_t r = 0; r < RUNS; r++)
      run(c, (uint64_t)(ci + 1) * 1000003u + r * 7919u, &t);
    for (int k = 0; k < NCHECK && checkpoints[k] <= c->requests; k++) {
      printf("| %s | %llu | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n",
             c->name, (unsigned long long)checkpoints[k], pct(t.real[k][0]),
             pct(t.real[k][1]), pct(t.noise[k]), pct(t.old_real[k]),
             pct(t.diffy[k]));
      if (!c->bug) {
        /* Pure noise: real at most 1 - confidence of the time. */
        for (int j = 0; j < NCONF; j++) {
          double alpha = 1 - confidences[j];
          CHECK((double)t.real[k][j] / RUNS <= bound(alpha, RUNS));
          pooled[j] += t.real[k][j];
        }
        pooled_n += RUNS;
      } else if (checkpoints[k] == 3000) {
        /* A bug is found in at least 95% of runs. */
        CHECK(t.real[k][0] >= RUNS * 95 / 100);
      }
    }
  }
  for (int j = 0; j < NCONF; j++) {
    double alpha = 1 - confidences[j];
    double rate = (double)pooled[j] / (double)pooled_n;
    printf("pooled over the noise cases at %.2f: %.2f%% real of %llu runs "
           "(at most %.2f%% allowed)\n",
           confidences[j], 100 * rate, (unsigned long long)pooled_n,
           100 * bound(alpha, (double)pooled_n));
    CHECK(rate <= bound(alpha, (double)pooled_n));
  }
  return check_report("test_noise_calibration");
}
