/* Formats a divergence record (see divergence.h) within a hard size cap:
 * strings are cut with a marker, diffs beyond the budget are dropped, and
 * the record says so. */
#include "divergence.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* How the hard cap is met: the request's strings (route, method, path, key,
 * each noise pointer) are truncated to META_STRING_MAX bytes with a marker;
 * then, if the diff parts would push the record past
 * SHADOW_DIVERGENCE_MAX_BYTES, the elements of their "diffs" arrays are
 * kept in order while they fit and the rest dropped, and the record says so
 * with "truncated": true. Every piece that is not a diff element (status,
 * wrappers, summaries) is itself bounded, so the record always fits. */
#define META_STRING_MAX 1024
#define NOISE_MAX 32
#define DIFFS_KEY "\"diffs\":["
#define DIFFS_KEY_LEN (sizeof(DIFFS_KEY) - 1)

static int put_string(shadow_buf_t *b, const char *s) {
  if (!s) return shadow_buf_puts(b, "null");
  return shadow_buf_json_string(b, s, strlen(s), META_STRING_MAX);
}

static int put_ms(shadow_buf_t *b, double ms) {
  /* Unknown latencies come as negative or NaN: JSON has no NaN. */
  if (!isfinite(ms) || ms < 0) return shadow_buf_puts(b, "null");
  if (ms >= 1e12) return shadow_buf_printf(b, "%.3f", ms);
  /* Four of these per record: digits by hand, as %.3f prints them
   * (printf's float path was 2% of a divergent pair's cost). The product
   * is exact in long double, and rintl rounds a tie to even as printf
   * does, so the digits are the same. */
  uint64_t t = (uint64_t)rintl((long double)ms * 1000.0L);
  char tmp[32], *p = tmp + sizeof(tmp);
  for (int i = 0; i < 3; i++, t /= 10)
    *--p = (char)('0' + t % 10);
  *--p = '.';
  do {
    *--p = (char)('0' + t % 10);
    t /= 10;
  } while (t);
  return shadow_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* n as exactly w digits (n < 10^w), at p. */
static void put_digits(char *p, unsigned n, int w) {
  for (int i = w - 1; i >= 0; i--, n /= 10)
    p[i] = (char)('0' + n % 10);
}

/* RFC 3339 UTC with milliseconds. The date comes from the count of days by
 * the proleptic Gregorian calendar's arithmetic (eras of 400 years), not
 * gmtime_r and printf: once per divergence, and it showed in the profile. */
static int put_time(shadow_buf_t *b, double time_ms) {
  if (!isfinite(time_ms) || time_ms < 0) time_ms = 0;
  int64_t total = (int64_t)time_ms;
  if (time_ms >= 253402300800000.0) { /* past 9999: five digits and on */
    time_t secs = (time_t)(total / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) return shadow_buf_puts(b, "null");
    return shadow_buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                             tm.tm_hour, tm.tm_min, tm.tm_sec,
                             (int)(total % 1000));
  }
  int64_t secs = total / 1000, days = secs / 86400;
  unsigned ms = (unsigned)(total % 1000), sod = (unsigned)(secs % 86400);
  int64_t z = days + 719468, era = z / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  unsigned y = (unsigned)(yoe + era * 400) + (m <= 2);
  char t[27] = "\"0000-00-00T00:00:00.000Z\"";
  put_digits(t + 1, y, 4);
  put_digits(t + 6, m, 2);
  put_digits(t + 9, d, 2);
  put_digits(t + 12, sod / 3600, 2);
  put_digits(t + 15, sod / 60 % 60, 2);
  put_digits(t + 18, sod % 60, 2);
  put_digits(t + 21, ms, 3);
  return shadow_buf_append(b, t, sizeof(t) - 1);
}

/* Index just past the string that starts at s[i] == '"'. */
static size_t string_end(const char *s, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (s[i] == '\\')
      i++;
    else if (s[i] == '"')
      return i + 1;
  }
  return n;
}

/* Index just past the JSON value that starts at s[i] (compact text). */
static size_t value_end(const char *s, size_t n, size_t i) {
  if (i >= n) return n;
  if (s[i] == '"') return string_end(s, n, i);
  if (s[i] != '{' && s[i] != '[') {
    while (i < n && s[i] != ',' && s[i] != ']' && s[i] != '}')
      i++;
    return i;
  }
  size_t depth = 0;
  while (i < n) {
    if (s[i] == '"') {
      i = string_end(s, n, i);
      continue;
    }
    if (s[i] == '{' || s[i] == '[')
      depth++;
    else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
      return i + 1;
    i++;
  }
  return n;
}

/* Copies the parts text to out (or only measures it when out is NULL),
 * keeping diff elements while their total stays within budget. Returns the
 * bytes the text has outside diff elements through *skeleton. */
static int copy_parts(shadow_buf_t *out, const char *s, size_t n, size_t budget,
                      size_t *skeleton, int *dropped) {
  size_t i = 0, used = 0, skel = 0;
  while (i < n) {
    size_t start = i;
    if (s[i] != '"') {
      i++;
    } else if (n - i >= DIFFS_KEY_LEN &&
               memcmp(s + i, DIFFS_KEY, DIFFS_KEY_LEN) == 0) {
      i += DIFFS_KEY_LEN;
      skel += DIFFS_KEY_LEN + 1;
      if (out && shadow_buf_append(out, DIFFS_KEY, DIFFS_KEY_LEN))
        return -ENOMEM;
      int kept = 0, full = 0;
      while (i < n && s[i] != ']') {
        size_t e = value_end(s, n, i);
        size_t len = e - i + (kept ? 1 : 0);
        if (!full && used + len <= budget) {
          if (out && ((kept && shadow_buf_putc(out, ',')) ||
                      shadow_buf_append(out, s + i, e - i)))
            return -ENOMEM;
          used += len;
          kept++;
        } else {
          full = 1; /* keep order: once one is dropped, drop the rest */
          *dropped = 1;
        }
        i = e < n && s[e] == ',' ? e + 1 : e;
      }
      if (out && shadow_buf_putc(out, ']')) return -ENOMEM;
      i++;
      continue;
    } else {
      i = string_end(s, n, i);
    }
    skel += i - start;
    if (out && shadow_buf_append(out, s + start, i - start)) return -ENOMEM;
  }
  *skeleton = skel;
  return 0;
}

/* The last resort when even the parts without diffs do not fit: which
 * parts differ, and nothing else. */
static int minimal_parts(shadow_buf_t *b, const shadow_diff_result_t *res) {
  return shadow_buf_printf(
      b,
      "\"status\":{\"differs\":%s},\"headers\":{\"differs\":%s,\"diffs\":[]},"
      "\"body\":{\"differs\":%s,\"summary\":\"too large to record\","
      "\"diffs\":[]}",
      res->parts & SHADOW_PART_STATUS ? "true" : "false",
      res->parts & SHADOW_PART_HEADERS ? "true" : "false",
      res->parts & SHADOW_PART_BODY ? "true" : "false");
}

static int format_tail(shadow_buf_t *t, const shadow_divergence_meta_t *meta) {
  if (shadow_buf_puts(t, "\"latency_ms\":{\"primary\":") ||
      put_ms(t, meta->primary_ms) || shadow_buf_puts(t, ",\"candidate\":") ||
      put_ms(t, meta->candidate_ms) ||
      shadow_buf_puts(t, "},\"first_byte_ms\":{\"primary\":") ||
      put_ms(t, meta->primary_first_ms) ||
      shadow_buf_puts(t, ",\"candidate\":") ||
      put_ms(t, meta->candidate_first_ms) ||
      shadow_buf_puts(t, "},\"noise\":["))
    return -ENOMEM;
  for (size_t i = 0; meta->noise && meta->noise[i] && i < NOISE_MAX; i++)
    if ((i && shadow_buf_putc(t, ',')) || put_string(t, meta->noise[i]))
      return -ENOMEM;
  return shadow_buf_putc(t, ']');
}

int shadow_divergence_format(shadow_buf_t *out,
                             const shadow_divergence_meta_t *meta,
                             const shadow_diff_result_t *res) {
  static const shadow_divergence_meta_t none = {
      .primary_ms = -1,
      .candidate_ms = -1,
      .primary_first_ms = -1,
      .candidate_first_ms = -1,
  };
  if (!meta) meta = &none;
  shadow_buf_t head = SHADOW_BUF_INIT, tail = SHADOW_BUF_INIT;
  size_t start = out->len;
  int rc = -ENOMEM;
  /* Room for a usual head and tail at once, not by doubling from 64 bytes
   * (six reallocations per record, measured). */
  if (shadow_buf_reserve(&head, 496) || shadow_buf_reserve(&tail, 240) ||
      shadow_buf_puts(&head, "{\"id\":") ||
      shadow_buf_put_u64(&head, meta->id) ||
      shadow_buf_puts(&head, ",\"time\":") || put_time(&head, meta->time_ms) ||
      shadow_buf_puts(&head, ",\"route\":") || put_string(&head, meta->route) ||
      shadow_buf_puts(&head, ",\"method\":") ||
      put_string(&head, meta->method) || shadow_buf_puts(&head, ",\"path\":") ||
      put_string(&head, meta->path) || shadow_buf_puts(&head, ",\"key\":") ||
      put_string(&head, meta->key) || shadow_buf_putc(&head, ',') ||
      format_tail(&tail, meta))
    goto done;

  /* Room for the parts: the cap less head, tail, the commas and braces and
   * a possible ,"truncated":true. */
  size_t fixed = head.len + tail.len + 2 + sizeof(",\"truncated\":true");
  size_t room = fixed < SHADOW_DIVERGENCE_MAX_BYTES
                    ? SHADOW_DIVERGENCE_MAX_BYTES - fixed
                    : 0;
  const char *parts = res && res->json.data ? res->json.data : "";
  size_t plen = res ? res->json.len : 0;
  int dropped = 0;
  if (shadow_buf_append(out, head.data, head.len)) goto done;
  if (plen <= room) {
    if (shadow_buf_append(out, parts, plen)) goto done;
  } else {
    size_t skel = 0;
    int ignored = 0;
    copy_parts(NULL, parts, plen, 0, &skel, &ignored);
    dropped = 1;
    if (skel <= room) {
      if (copy_parts(out, parts, plen, room - skel, &skel, &ignored)) goto done;
    } else if (minimal_parts(out, res)) {
      goto done;
    }
  }
  if ((plen && shadow_buf_putc(out, ',')) ||
      shadow_buf_append(out, tail.data, tail.len) ||
      (dropped && shadow_buf_puts(out, ",\"truncated\":true")) ||
      shadow_buf_putc(out, '}'))
    goto done;
  rc = 0;
done:
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  shadow_buf_free(&head);
  shadow_buf_free(&tail);
  return rc;
}
