/* Two gRPC bodies compared message by message (grpc_diff.h).
 *
 * A unary pair (one message on each side) is compared as that message's
 * tree, so paths read /user/name as for an application/x-protobuf body.
 * Any other pair (a stream: either side with more or fewer than one
 * message) is compared as the array of its messages, index by index:
 * message i of the primary with message i of the candidate, under the
 * same rules as a unary message (rules are written for one message, from
 * its root), the record's paths prefixed with the index (/0/user/name,
 * /1/user/name). Messages only the primary has are removed ("remove" at
 * /i, highest index first), those only the candidate has added ("add" at
 * /i, in order), so the ops still apply in order as a JSON Patch to the
 * array of the primary's messages. Array modes over the stream itself
 * (a stream whose order does not matter) are not offered: messages pair
 * by position. The fields (per-field counts, signatures, noise) are named
 * as the rules are, per message: "/user/name" for a difference at
 * /3/user/name, "" (the message itself) for one added or removed. */
#include "grpc_diff.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A side's messages as JSON values, one after another in text; offs[i]
 * and lens[i] place message i. */
typedef struct msgs_s {
  shadow_buf_t text;
  size_t *offs, *lens;
  size_t n;
} msgs_t;

static void msgs_free(msgs_t *m) {
  shadow_buf_free(&m->text);
  free(m->offs);
  free(m->lens);
}

static int note_add(shadow_grpc_pair_t *x, size_t *nnotes, const char *side,
                    size_t i, const char *note) {
  if (!note) return 0;
  if ((*nnotes)++ == 0 ? shadow_buf_puts(x->extra, ",\"notes\":[")
                       : shadow_buf_putc(x->extra, ','))
    return -ENOMEM;
  char s[160];
  int n = snprintf(s, sizeof s, "%s message %zu: %s", side, i, note);
  return shadow_buf_json_string(x->extra, s, (size_t)n, 0);
}

static int side_messages(shadow_grpc_pair_t *x, const shadow_grpc_side_t *sd,
                         const char *name, msgs_t *m, size_t *nnotes) {
  if (sd->type == SHADOW_GRPC_NOT) {
    m->offs = malloc(sizeof *m->offs);
    m->lens = malloc(sizeof *m->lens);
    if (!m->offs || !m->lens) return -ENOMEM;
    m->n = 1;
    m->offs[0] = 0;
    int rc;
    if (sd->protobuf) {
      rc = shadow_pb_to_json(sd->data, sd->len, x->schema, x->msg_type,
                             &m->text);
    } else {
      rc = shadow_json_validate(sd->data, sd->len);
      if (rc == -EINVAL)
        return shadow_buf_printf(x->summary, "the %s body is not JSON", name)
                   ? -ENOMEM
                   : -EINVAL;
      if (!rc) rc = shadow_buf_append(&m->text, sd->data, sd->len);
    }
    m->lens[0] = m->text.len;
    return rc;
  }
  size_t bad = 0;
  const char *why = NULL;
  long count = shadow_grpc_count(sd->data, sd->len, &bad, &why);
  if (count < 0) {
    shadow_buf_printf(x->summary,
                      "the %s's gRPC framing is bad at byte %zu (%s)", name,
                      bad, why);
    return -EINVAL;
  }
  size_t n = (size_t)count ? (size_t)count : 1;
  m->offs = malloc(n * sizeof *m->offs);
  m->lens = malloc(n * sizeof *m->lens);
  if (!m->offs || !m->lens) return -ENOMEM;
  shadow_grpc_decode_t d = {sd->type, sd->encoding, x->schema, x->msg_type,
                            x->limit};
  size_t pos = 0;
  shadow_grpc_frame_t f;
  while (shadow_grpc_next(sd->data, sd->len, &pos, &f, NULL) == 1) {
    const char *note = NULL;
    m->offs[m->n] = m->text.len;
    int rc = shadow_grpc_message_json(&d, &f, &m->text, &note);
    if (!rc) rc = note_add(x, nnotes, name, m->n, note);
    if (rc) return rc;
    m->lens[m->n] = m->text.len - m->offs[m->n];
    m->n++;
  }
  return 0;
}

/* Appends a comma when ops already hold an op. */
static int op_sep(shadow_grpc_pair_t *x, size_t base) {
  return x->ops->len > base ? shadow_buf_putc(x->ops, ',') : 0;
}

/* A whole message added or removed at /i; value cut as json_diff.h's. */
static int whole_op(shadow_grpc_pair_t *x, size_t base, const char *op,
                    const char *side, size_t i, const char *v, size_t n) {
  char path[32];
  snprintf(path, sizeof path, "/%zu", i);
  x->nops++;
  if (shadow_buf_putc(x->fields, '\0')) return -ENOMEM; /* the message */
  if (x->explain &&
      (shadow_buf_printf(x->explain,
                         "{\"kind\":\"reported\",\"op\":\"%s\",\"path\":"
                         "\"%s\",\"%s\":",
                         op, path, side) ||
       (x->value_max && n > x->value_max
            ? shadow_buf_json_string(x->explain, v, n, x->value_max)
            : shadow_buf_append(x->explain, v, n)) ||
       shadow_buf_puts(x->explain, ",\"tried\":[]}\n")))
    return -ENOMEM;
  if (x->ops_max_bytes && x->ops->len - base >= x->ops_max_bytes) {
    x->truncated = 1;
    return 0;
  }
  int cut = x->value_max && n > x->value_max;
  if (op_sep(x, base) ||
      shadow_buf_printf(x->ops, "{\"op\":\"%s\",\"path\":\"%s\",\"%s\":", op,
                        path, side))
    return -ENOMEM;
  if (cut) {
    if (shadow_buf_json_string(x->ops, v, n, x->value_max) ||
        shadow_buf_puts(x->ops, ",\"truncated\":true"))
      return -ENOMEM;
  } else if (shadow_buf_append(x->ops, v, n)) {
    return -ENOMEM;
  }
  return shadow_buf_putc(x->ops, '}');
}

int shadow_grpc_diff(shadow_grpc_pair_t *x, const shadow_grpc_side_t *p,
                     const shadow_grpc_side_t *c) {
  msgs_t mp, mc;
  memset(&mp, 0, sizeof mp);
  memset(&mc, 0, sizeof mc);
  size_t nnotes = 0, base = x->ops->len;
  x->nops = 0;
  x->truncated = 0;
  memset(x->hits, 0, sizeof x->hits);
  shadow_buf_t fields = SHADOW_BUF_INIT; /* a stream message's, prefixed */
  int rc = side_messages(x, p, "primary", &mp, &nnotes);
  if (!rc) rc = side_messages(x, c, "candidate", &mc, &nnotes);
  if (!rc && nnotes && shadow_buf_putc(x->extra, ']')) rc = -ENOMEM;
  if (!rc && shadow_buf_printf(x->extra,
                               ",\"messages\":{\"primary\":%zu,"
                               "\"candidate\":%zu}",
                               mp.n, mc.n))
    rc = -ENOMEM;
  int stream = mp.n != 1 || mc.n != 1;
  size_t both = mp.n < mc.n ? mp.n : mc.n;
  for (size_t i = 0; !rc && i < both; i++) {
    char prefix[32] = "";
    if (stream) snprintf(prefix, sizeof prefix, "/%zu", i);
    const char *a = mp.text.data + mp.offs[i], *b = mc.text.data + mc.offs[i];
    if (mp.lens[i] == mc.lens[i] && memcmp(a, b, mp.lens[i]) == 0 &&
        !shadow_json_rules_renames(x->rules))
      continue;
    size_t used = x->ops->len - base;
    shadow_json_diff_out_t out;
    memset(&out, 0, sizeof out);
    out.fields = stream ? &fields : x->fields;
    out.value_max = x->value_max;
    out.explain = x->explain;
    out.path_prefix = prefix;
    size_t mark = x->ops->len;
    if (x->ops_max_bytes && used >= x->ops_max_bytes) {
      x->truncated = 1; /* counted, not written */
    } else {
      if (used && shadow_buf_putc(x->ops, ',')) {
        rc = -ENOMEM;
        break;
      }
      out.ops = x->ops;
      if (x->ops_max_bytes) out.ops_max_bytes = x->ops_max_bytes - used;
    }
    char err[128];
    rc = shadow_json_diff(a, mp.lens[i], b, mc.lens[i], x->rules, &out, err,
                          sizeof err);
    if (out.ops && used && x->ops->len == mark + 1) {
      x->ops->len = mark; /* no op came: take the comma back */
      x->ops->data[mark] = '\0';
    }
    if (rc == -EINVAL) {
      /* Every message value was checked or built as JSON: only a plain
       * side could be at fault, and it was validated. */
      shadow_buf_printf(x->summary, "message %zu does not parse: %s", i, err);
      break;
    }
    if (rc) break;
    /* Fields go per message: the index prefix comes off. */
    size_t plen = strlen(prefix);
    for (size_t at = 0; stream && !rc && at < fields.len;) {
      size_t fl = strlen(fields.data + at);
      size_t skip = fl >= plen ? plen : fl;
      rc = shadow_buf_append(x->fields, fields.data + at + skip, fl - skip + 1);
      at += fl + 1;
    }
    shadow_buf_reset(&fields);
    if (rc) break;
    x->nops += out.nops;
    x->truncated |= out.truncated;
    x->hits[0] |= out.hits[0];
    x->hits[1] |= out.hits[1];
  }
  /* Removals highest index first, then additions in order. */
  for (size_t i = mp.n; !rc && i > both; i--)
    rc = whole_op(x, base, "remove", "primary", i - 1,
                  mp.text.data + mp.offs[i - 1], mp.lens[i - 1]);
  for (size_t i = both; !rc && i < mc.n; i++)
    rc = whole_op(x, base, "add", "candidate", i, mc.text.data + mc.offs[i],
                  mc.lens[i]);
  if (!rc && x->nops &&
      shadow_buf_printf(x->summary, "%zu field%s differ%s", x->nops,
                        x->nops == 1 ? "" : "s", x->nops == 1 ? "s" : ""))
    rc = -ENOMEM;
  if (!rc && stream && x->nops &&
      shadow_buf_printf(x->summary,
                        " in a stream of %zu primary and %zu "
                        "candidate messages",
                        mp.n, mc.n))
    rc = -ENOMEM;
  msgs_free(&mp);
  msgs_free(&mc);
  shadow_buf_free(&fields);
  return rc;
}
