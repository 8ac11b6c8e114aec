/* The parsers mark a header line valid without checking its value again,
 * and check of its name only what llhttp lets through (parsed_field.h).
 * This holds them to it: every byte, in several places of a name and of a
 * value (the headers llhttp reads specially among them), in a request and
 * in a response, fed whole and split in two. Whatever a parser takes, each
 * line it keeps must be a valid field by RFC 9110, and marked so; a name
 * with a space must be refused. An llhttp that let more through than it
 * does now fails here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "record.h"
#include "request_parse.h"
#include "response_parse.h"

static int lines_ok(const shadow_headers_t *h) {
  if (h->checked != h->n) return 0;
  for (size_t i = 0; i < h->n; i++)
    if (!shadow_header_valid(&h->v[i])) return 0;
  return 1;
}

/* The response parser's verdict on text, fed in two pieces cut at cut: -1
 * refused, 1 taken with every line valid and marked, 0 taken with a line
 * that is not. */
static int head_verdict;

static int on_head(void *ud, shadow_response_parser_t *p) {
  (void)ud;
  head_verdict = lines_ok(&p->headers);
  return 0;
}

static const shadow_response_events_t events = {NULL, on_head, NULL};

static int response_verdict(const char *text, size_t n, size_t cut) {
  shadow_response_parser_t p;
  shadow_response_parser_init(&p, 4096);
  shadow_response_parser_reset(&p, 0, 0, &events, NULL);
  head_verdict = -2;
  /* Each piece is a copy freed after its feed, as a reused read buffer. */
  int rc = 0;
  size_t at[3] = {0, cut, n};
  for (int k = 0; k < 2 && rc >= 0; k++) {
    size_t len = at[k + 1] - at[k];
    char *piece = malloc(len + 1);
    memcpy(piece, text + at[k], len);
    rc = shadow_response_parser_feed(&p, piece, len);
    free(piece);
  }
  int verdict = rc == SHADOW_RESPONSE_DONE ? head_verdict : -1;
  if (verdict == 1 && !lines_ok(&p.trailers)) verdict = 0;
  shadow_response_parser_free(&p);
  return verdict;
}

static int request_verdict(const char *text, size_t n, size_t cut) {
  shadow_request_t req;
  memset(&req, 0, sizeof(req));
  shadow_request_parser_t p;
  shadow_request_parser_init(&p, &req, 4096, 4096, 0);
  shadow_parse_event_t ev = SHADOW_PARSE_MORE;
  size_t at[3] = {0, cut, n};
  for (int k = 0; k < 2 && ev == SHADOW_PARSE_MORE; k++) {
    size_t len = at[k + 1] - at[k], used = 0;
    char *piece = malloc(len + 1);
    memcpy(piece, text + at[k], len);
    ev = shadow_request_parse(&p, piece, len, &used);
    free(piece);
  }
  int verdict = -1;
  if (ev == SHADOW_PARSE_REQUEST) verdict = lines_ok(&req.headers);
  shadow_request_parser_free(&p);
  shadow_request_release(&req);
  return verdict;
}

/* Both parsers, whole and cut in the middle of the line under test. */
static int worst(const char *text, size_t n, size_t line_at, int response) {
  int v = 1;
  size_t cuts[2] = {n, line_at + 2};
  for (int i = 0; i < 2; i++) {
    int r = response ? response_verdict(text, n, cuts[i])
                     : request_verdict(text, n, cuts[i]);
    if (r == 0) return 0;
    if (r < 0) v = -1;
  }
  return v;
}

static size_t message(char *out, int response, const char *name,
                      const char *value, size_t *line_at) {
  size_t n = (size_t)sprintf(out, "%s",
                             response ? "HTTP/1.1 200 OK\r\n"
                                      : "GET / HTTP/1.1\r\nHost: h\r\n");
  *line_at = n;
  n += (size_t)sprintf(out + n, "%s: %s\r\n", name, value);
  if (!strcmp(name, "Transfer-Encoding"))
    n += (size_t)sprintf(out + n, "\r\n0\r\n\r\n");
  else if (!strcmp(name, "Content-Length"))
    n += (size_t)sprintf(out + n, "\r\n");
  else
    n += (size_t)sprintf(out + n, "Content-Length: 0\r\n\r\n");
  return n;
}

int main(void) {
  static const char *names[] = {
      "X-A",     "Connection",     "Transfer-Encoding",
      "Upgrade", "Content-Length", "Keep-Alive"};
  static const char *values[] = {
      "#ab",    "a#b",      "ab#",      "keep-alive#",
      "close#", "chunked#", "#chunked", "gzip#, chunked",
      "1#"};
  static const char *bad_names[] = {
      "#X-A", "X#A", "XA#", "Connection#", "Content-#Length", "Host#"};
  int marked_invalid = 0, space_taken = 0, taken = 0;
  for (int response = 0; response < 2; response++) {
    for (int c = 1; c < 256; c++) {
      char text[256], field[64];
      size_t n, line_at;
      for (size_t ni = 0; ni < sizeof names / sizeof *names; ni++) {
        for (size_t vi = 0; vi < sizeof values / sizeof *values; vi++) {
          snprintf(field, sizeof field, "%s", values[vi]);
          *strchr(field, '#') = (char)c;
          n = message(text, response, names[ni], field, &line_at);
          int v = worst(text, n, line_at, response);
          if (v == 0) marked_invalid++;
          if (v == 1) taken++;
        }
      }
      for (size_t bi = 0; bi < sizeof bad_names / sizeof *bad_names; bi++) {
        snprintf(field, sizeof field, "%s", bad_names[bi]);
        *strchr(field, '#') = (char)c;
        n = message(text, response, field, "v", &line_at);
        int v = worst(text, n, line_at, response);
        if (v == 0) marked_invalid++;
        if (c == ' ' && v == 1) space_taken++;
      }
    }
  }
  CHECK(marked_invalid == 0);
  /* Most bytes in most places are taken (tab, obs-text, the printable
   * ones): the sweep reaches what the parsers keep, not only refusals. */
  printf("lines taken: %d\n", taken);
  CHECK(taken > 2 * 6 * 9 * 150 / 2);
  CHECK(space_taken == 0);
  /* And the sweep does reach the parsers' acceptance: a plain line is
   * taken and marked. */
  char text[256];
  size_t line_at, n = message(text, 1, "X-A", "a\tb", &line_at);
  CHECK(worst(text, n, line_at, 1) == 1);
  n = message(text, 0, "X-A", "a\tb", &line_at);
  CHECK(worst(text, n, line_at, 0) == 1);
  return check_report("test_parsed_field");
}
