/* The rewritten part of a divergence record (see rewritten.h): which side
 * normalize changed, which renames moved the primary's members, and the
 * values as received at the differing body paths. */
#include "rewritten.h"

#include <string.h>

#include "json.h"

void shadow_rewritten_free(shadow_rewritten_t *w) {
  for (int i = 0; i < 2; i++) {
    shadow_headers_free(&w->side[i].headers);
    shadow_buf_free(&w->side[i].body);
  }
  shadow_buf_free(&w->tail);
}

void shadow_rewritten_clear(shadow_rewritten_t *w) {
  for (int i = 0; i < 2; i++) {
    w->side[i].kept = w->side[i].changed = 0;
    shadow_headers_clear(&w->side[i].headers);
    shadow_buf_reset(&w->side[i].body);
  }
}

void shadow_rewritten_keep(shadow_rewritten_t *w, int side,
                           const shadow_record_t *r, size_t body_max) {
  shadow_rewritten_side_t *s = &w->side[side];
  s->kept = 1;
  s->status = r->status;
  shadow_headers_clear(&s->headers);
  shadow_buf_reset(&s->body);
  for (size_t i = 0; i < r->headers.n; i++) {
    const shadow_header_t *h = &r->headers.v[i];
    if (shadow_headers_add(&s->headers, h->name, h->name_len, h->value,
                           h->value_len) != 0)
      s->kept = 0;
  }
  s->body_len = r->body.len;
  s->body_kept = !r->body_cut && r->body.len <= body_max;
  if (s->body_kept && r->body.len &&
      shadow_buf_append(&s->body, r->body.data, r->body.len) != 0)
    s->kept = 0;
}

void shadow_rewritten_check(shadow_rewritten_t *w, int side,
                            const shadow_record_t *after) {
  shadow_rewritten_side_t *s = &w->side[side];
  if (!s->kept) {
    /* Without the record as received, say it may have been rewritten. */
    s->changed = 1;
    return;
  }
  s->changed =
      s->status != after->status ||
      !shadow_headers_same(&s->headers, &after->headers) ||
      s->body.len != after->body.len ||
      (s->body.len && memcmp(s->body.data, after->body.data, s->body.len) != 0);
}

/* The value at JSON pointer ptr[0, n) inside v, or NULL. */
static const shadow_json_t *pointer_get(const shadow_json_t *v, const char *ptr,
                                        size_t n) {
  char seg[512];
  size_t i = 0;
  while (v && i < n) {
    if (ptr[i] != '/') return NULL;
    i++;
    size_t k = 0;
    while (i < n && ptr[i] != '/') {
      char c = ptr[i++];
      if (c == '~' && i < n) c = ptr[i++] == '1' ? '/' : '~';
      if (k == sizeof(seg)) return NULL;
      seg[k++] = c;
    }
    if (v->type == SHADOW_JSON_OBJECT) {
      long m = shadow_json_member_find(v, seg, k);
      v = m < 0 ? NULL : &v->u.members[m].value;
    } else if (v->type == SHADOW_JSON_ARRAY) {
      size_t idx = 0;
      if (k == 0 || (k > 1 && seg[0] == '0')) return NULL;
      for (size_t j = 0; j < k; j++) {
        if (seg[j] < '0' || seg[j] > '9' || idx > 100000000) return NULL;
        idx = idx * 10 + (size_t)(seg[j] - '0');
      }
      v = idx < v->len ? &v->u.items[idx] : NULL;
    } else {
      return NULL;
    }
  }
  return v;
}

/* "received":{"primary":{"status":..,"body":{"/p":value}}}: the values of
 * the sides normalize changed, as received, at the paths that differ. A
 * value past 256 bytes is written as a cut string, like the record's. */
static void append_received(shadow_rewritten_t *w, shadow_buf_t *b,
                            const shadow_diff_result_t *res, int renamed) {
  static const char *const names[2] = {"primary", "candidate"};
  int any = 0;
  for (int side = 0; side < 2; side++) {
    shadow_rewritten_side_t *s = &w->side[side];
    const char *body;
    size_t blen;
    int status;
    if (s->changed && s->kept) {
      body = s->body.data;
      blen = s->body.len;
      status = s->status;
    } else if (side == 0 && !s->changed && renamed && w->primary &&
               !w->primary->body_cut) {
      body = w->primary->body.data;
      blen = w->primary->body.len;
      status = w->primary->status;
    } else {
      continue;
    }
    shadow_buf_printf(b, "%s\"%s\":{\"status\":%d",
                      any ? "," : ",\"received\":{", names[side], status);
    any = 1;
    shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
    shadow_json_t root;
    int parsed =
        blen && shadow_json_parse(&arena, body, blen, &root, NULL, NULL) == 0;
    int n = 0;
    const char *f = res->fields.data;
    for (size_t i = 0; parsed && f && i < res->nfields; i++) {
      size_t len = strlen(f);
      if (len > 5 && memcmp(f, "body:", 5) == 0 &&
          n < SHADOW_REWRITTEN_PATHS_MAX) {
        shadow_buf_puts(b, n++ ? "," : ",\"body\":{");
        shadow_buf_json_string(b, f + 5, len - 5, 256);
        shadow_buf_putc(b, ':');
        const shadow_json_t *v = pointer_get(&root, f + 5, len - 5);
        shadow_buf_t one = SHADOW_BUF_INIT;
        if (!v)
          shadow_buf_puts(b, "{\"absent\":true}");
        else if (shadow_json_write(&one, v) == 0 && one.len <= 256)
          shadow_buf_append(b, one.data, one.len);
        else
          shadow_buf_json_string(b, one.data ? one.data : "", one.len, 256);
        shadow_buf_free(&one);
      }
      f += len + 1;
    }
    if (n) shadow_buf_putc(b, '}');
    shadow_buf_putc(b, '}');
    shadow_json_arena_free(&arena);
  }
  if (any) shadow_buf_putc(b, '}');
}

void shadow_rewritten_append(shadow_rewritten_t *w, shadow_buf_t *out,
                             const shadow_diff_opts_t *o,
                             const shadow_diff_result_t *res, int with_values,
                             size_t max) {
  shadow_buf_t *b = &w->tail;
  shadow_buf_reset(b);
  shadow_buf_puts(b, ",\"rewritten\":{\"primary\":[");
  int np = 0;
  if (w->side[0].changed) {
    shadow_buf_puts(b, "\"normalize\"");
    np++;
  }
  for (size_t wd = 0; wd < SHADOW_JSON_RULE_BITS / 64; wd++)
    for (uint64_t bits = res->hits[wd]; bits; bits &= bits - 1) {
      size_t bit = wd * 64 + (size_t)__builtin_ctzll(bits);
      const char *name = shadow_diff_opts_rule_name(o, bit);
      if (!name || strncmp(name, "rename:", 7) != 0) continue;
      if (np++) shadow_buf_putc(b, ',');
      shadow_buf_json_string(b, name, strlen(name), 256);
    }
  shadow_buf_puts(b, "],\"candidate\":[");
  if (w->side[1].changed) shadow_buf_puts(b, "\"normalize\"");
  shadow_buf_putc(b, ']');
  shadow_buf_putc(b, '}');
  if (np == 0 && !w->side[1].changed) return; /* nothing rewritten */
  size_t plain = b->len;
  if (with_values) append_received(w, b, res, np > (w->side[0].changed != 0));
  /* The record's cap holds: the values go first, then the whole part. */
  if (out->len + b->len > max) b->len = plain;
  if (out->len + b->len > max || !out->len || out->data[out->len - 1] != '}')
    return;
  out->len--; /* the record's closing brace */
  shadow_buf_append(out, b->data, b->len);
  shadow_buf_putc(out, '}');
}
