/* Writing capture lines (see capture.h): the line's format, and the
 * daemon's hand-off of a line to the capture sink. Reading them back is
 * capture_read.c. */
#include "capture.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "digest.h"
#include "shared.h"

int shadow_capture_utf8_valid(const char *data, size_t len) {
  const unsigned char *s = (const unsigned char *)data;
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (len - i <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    /* Overlong forms, surrogates and what lies past U+10FFFF. */
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return 0;
    i += n + 1;
  }
  return 1;
}

int shadow_capture_base64(shadow_buf_t *out, const char *data, size_t len) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (shadow_buf_reserve(out, (len + 2) / 3 * 4 + 1)) return -ENOMEM;
  const unsigned char *s = (const unsigned char *)data;
  char *o = out->data + out->len;
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = abc[(v >> 6) & 63];
    *o++ = abc[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < len) v |= (uint32_t)s[i + 1] << 8;
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = i + 1 < len ? abc[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  out->len = (size_t)(o - out->data);
  out->data[out->len] = '\0';
  return 0;
}

int shadow_capture_is_json(const shadow_headers_t *h) {
  const shadow_header_t *ct = shadow_headers_find(h, "content-type");
  if (!ct) return 0;
  size_t n = ct->value_len;
  const char *v = ct->value;
  const char *semi = memchr(v, ';', n);
  if (semi) n = (size_t)(semi - v);
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  while (n && (*v == ' ' || *v == '\t')) {
    v++;
    n--;
  }
  if (n == 16 && strncasecmp(v, "application/json", 16) == 0) return 1;
  return n > 5 && strncasecmp(v + n - 5, "+json", 5) == 0;
}

static int put_ms(shadow_buf_t *b, double ms) {
  if (!isfinite(ms) || ms < 0) return shadow_buf_puts(b, "null");
  return shadow_buf_printf(b, "%.3f", ms);
}

static int put_string(shadow_buf_t *b, const char *s, size_t n) {
  if (!s) return shadow_buf_puts(b, "null");
  return shadow_buf_json_string(b, s, n, 0);
}

/* "headers":[["name","value"],...], secret values as their marks: a list
 * of pairs keeps the order and the repeats a replay must send. */
static int put_headers(shadow_buf_t *b, const shadow_headers_t *h,
                       const shadow_redact_t *r) {
  int rc = shadow_buf_puts(b, "\"headers\":[");
  for (size_t i = 0; !rc && h && i < h->n; i++) {
    const shadow_header_t *e = &h->v[i];
    char mark[SHADOW_REDACT_MARK_LEN + 1];
    int redacted = shadow_redact_header_mark(r, e, mark);
    rc = (i && shadow_buf_putc(b, ',')) || shadow_buf_putc(b, '[') ||
         put_string(b, e->name, e->name_len) || shadow_buf_putc(b, ',') ||
         (redacted ? put_string(b, mark, SHADOW_REDACT_MARK_LEN)
                   : put_string(b, e->value, e->value_len)) ||
         shadow_buf_putc(b, ']');
  }
  return rc ? -ENOMEM : shadow_buf_putc(b, ']');
}

/* "body":"..." as text when it is UTF-8, else with "encoding":"base64". */
static int put_body(shadow_buf_t *b, const char *data, size_t n) {
  if (!data) n = 0;
  if (shadow_capture_utf8_valid(data ? data : "", n))
    return shadow_buf_puts(b, "\"body\":") || put_string(b, data ? data : "", n)
               ? -ENOMEM
               : 0;
  return shadow_buf_puts(b, "\"body\":\"") ||
                 shadow_capture_base64(b, data, n) ||
                 shadow_buf_puts(b, "\",\"encoding\":\"base64\"")
             ? -ENOMEM
             : 0;
}

/* A body's bytes as the line holds them: redacted when its JSON has
 * secret values. *text and *n are the bytes to write; when they are
 * rewritten, they live in tmp. 0, 1 when the body cannot be shown (its
 * JSON should be redacted and does not parse), or -ENOMEM. */
static int redacted_body(const shadow_redact_t *r, const shadow_headers_t *h,
                         const char **text, size_t *n, shadow_buf_t *tmp) {
  if (shadow_redact_pointers(r) == 0 || !shadow_capture_is_json(h) || !*n)
    return 0;
  int rc = shadow_redact_json(r, *text, *n, tmp);
  if (rc == 1) {
    *text = tmp->data;
    *n = tmp->len;
    return 0;
  }
  if (rc == -ENOMEM) return rc;
  return rc == 0 ? 0 : 1;
}

/* The longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence, when s is text: a body cut at body_bytes stays text. */
static size_t utf8_prefix(const char *s, size_t n) {
  size_t k = n;
  for (int back = 0; back < 3 && k > 0; back++) {
    unsigned char c = (unsigned char)s[k - 1];
    if (c < 0x80) break;
    if (c >= 0xC0) { /* a lead byte whose sequence is cut: drop it */
      k--;
      break;
    }
    k--;
  }
  return shadow_capture_utf8_valid(s, k) ? k : n;
}

static int put_response(shadow_buf_t *b, const shadow_record_t *rec,
                        const shadow_redact_t *r, size_t body_bytes) {
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  const char *body = rec->body.data ? rec->body.data : "";
  size_t kept = rec->body.len;
  uint64_t total = shadow_record_body_len(rec);
  shadow_digest_t digest;
  int cut = rec->body_cut || total > body_bytes;
  int rc = 0;
  if (!cut) {
    /* Whole: the line holds it (redacted), and length and digest are
     * those of what it holds, so a reader can tell a damaged body. */
    int hidden = redacted_body(r, &rec->headers, &body, &kept, &tmp);
    if (hidden < 0) goto oom;
    if (hidden) { /* JSON that should be redacted and cannot be */
      cut = 1;
      digest = shadow_digest_of(rec->body.data, rec->body.len);
      kept = 0;
    } else {
      total = kept;
      digest = shadow_digest_of(body, kept);
    }
  } else {
    digest = rec->body_cut ? rec->body_digest
                           : shadow_digest_of(rec->body.data, rec->body.len);
    if (kept > body_bytes) kept = body_bytes;
    /* A prefix of a JSON document cannot be redacted reliably: a line
     * whose JSON has secrets keeps only the length and the digest. */
    if (shadow_redact_pointers(r) && shadow_capture_is_json(&rec->headers))
      kept = 0;
    kept = utf8_prefix(body, kept);
  }
  char hex[33];
  shadow_digest_hex(digest, hex);
  rc =
      shadow_buf_printf(b, "\"response\":{\"status\":%d,", rec->status) ||
      put_headers(b, &rec->headers, r) || shadow_buf_putc(b, ',') ||
      put_body(b, body, kept) ||
      shadow_buf_printf(b, ",\"length\":%llu,\"cut\":%s,\"digest\":\"%s\"}",
                        (unsigned long long)total, cut ? "true" : "false", hex);
  shadow_buf_free(&tmp);
  return rc ? -ENOMEM : 0;
oom:
  shadow_buf_free(&tmp);
  return -ENOMEM;
}

int shadow_capture_format(shadow_buf_t *out, const shadow_capture_exchange_t *x,
                          const shadow_redact_t *r, size_t body_bytes) {
  size_t start = out->len;
  char when[SHADOW_WALL_ISO_LEN];
  shadow_wall_iso(x->time_ms, when);
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  const char *body = x->body ? x->body : "";
  size_t body_len = x->body ? x->body_len : 0;
  int hidden = redacted_body(r, x->headers, &body, &body_len, &tmp);
  int rc =
      hidden < 0 ||
      shadow_buf_printf(out, "{\"v\":%d,\"id\":%llu,\"time\":\"%s\",\"route\":",
                        SHADOW_CAPTURE_VERSION, (unsigned long long)x->id,
                        when) ||
      put_string(out, x->route, x->route ? strlen(x->route) : 0) ||
      shadow_buf_puts(out, ",\"key\":") ||
      put_string(out, x->key, x->key ? strlen(x->key) : 0) ||
      shadow_buf_puts(out, ",\"request\":{\"method\":") ||
      put_string(out, x->method, strlen(x->method)) ||
      shadow_buf_puts(out, ",\"target\":") ||
      put_string(out, x->target, x->target_len) ||
      shadow_buf_puts(out, ",\"peer\":") ||
      put_string(out, x->peer ? x->peer : "", x->peer ? strlen(x->peer) : 0) ||
      shadow_buf_printf(out, ",\"tls\":%s,", x->tls ? "true" : "false") ||
      put_headers(out, x->headers, r) || shadow_buf_putc(out, ',');
  /* A request body is sent again by a replay, so it is whole or absent:
   * JSON whose secrets cannot be marked is left out. */
  if (!rc)
    rc = put_body(out, hidden ? "" : body, hidden ? 0 : body_len) ||
         shadow_buf_puts(out, "},") ||
         put_response(out, x->response, r, body_bytes) ||
         shadow_buf_puts(out, ",\"timing_ms\":{\"first_byte\":") ||
         put_ms(out, x->first_byte_ms) || shadow_buf_puts(out, ",\"total\":") ||
         put_ms(out, x->total_ms) || shadow_buf_puts(out, "}}");
  shadow_buf_free(&tmp);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -ENOMEM;
  }
  return 0;
}

/* --- the daemon's side --------------------------------------------------- */

void shadow_capture_state_free(shadow_capture_state_t *s) {
  shadow_buf_free(&s->key);
  shadow_buf_free(&s->method);
  shadow_buf_free(&s->target);
  shadow_headers_free(&s->headers);
}

size_t shadow_capture_keep(const shadow_config_t *cfg) {
  return cfg->capture.body_bytes > cfg->limits.diff_bytes
             ? cfg->capture.body_bytes
             : cfg->limits.diff_bytes;
}

void shadow_capture_skip(shadow_shared_t *sh, const char *reason) {
  shadow_shared_lock(sh);
  shadow_counters_add(sh->stats->capture_skipped, reason, strlen(reason), 1);
  shadow_shared_unlock(sh);
}

void shadow_capture_write(shadow_shared_t *sh, const shadow_config_t *cfg,
                          const shadow_capture_state_t *st, const char *route,
                          const char *body, size_t body_len,
                          const shadow_record_t *response, double first_byte_ms,
                          double total_ms, shadow_buf_t *scratch) {
  shadow_shared_lock(sh);
  uint64_t id = ++sh->next_capture_id;
  shadow_shared_unlock(sh);
  shadow_capture_exchange_t x = {
      .id = id,
      .time_ms = st->time_ms,
      .route = route,
      .key = st->has_key ? st->key.data : NULL,
      .method = st->method.data ? st->method.data : "GET",
      .target = st->target.data ? st->target.data : "/",
      .target_len = st->target.data ? st->target.len : 1,
      .peer = st->peer,
      .tls = st->tls,
      .headers = &st->headers,
      .body = body,
      .body_len = body_len,
      .response = response,
      .first_byte_ms = first_byte_ms,
      .total_ms = total_ms,
  };
  shadow_buf_reset(scratch);
  if (shadow_capture_format(scratch, &x, cfg->redact,
                            cfg->capture.body_bytes) != 0) {
    shadow_capture_skip(sh, "error");
    return;
  }
  shadow_shared_lock(sh);
  if (sh->capture) {
    shadow_sink_push(sh->capture, scratch->data, scratch->len);
    sh->stats->captured++;
  } else {
    shadow_counters_add(sh->stats->capture_skipped, "no_file", 7, 1);
  }
  shadow_shared_unlock(sh);
}
