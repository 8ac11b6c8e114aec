/* `shadowd --check --response FILE` (see check_response.h): the record as
 * read, normalize's outcome or error, and the record after it. */
#include "check_response.h"

#include <errno.h>
#include <string.h>

#include "file.h"
#include "record_parse.h"

/* The body shown: enough to see a field change, never a flood. */
#define SHOWN_BODY_BYTES 65536

typedef struct {
  char msg[512];
  int failed;
} seen_error_t;

static void on_error(void *ud, int hook, const char *msg) {
  seen_error_t *e = ud;
  if (hook != SHADOW_HOOK_NORMALIZE) return;
  e->failed = 1;
  snprintf(e->msg, sizeof(e->msg), "%s", msg ? msg : "?");
}

static void print_record(FILE *out, const char *title,
                         const shadow_record_t *r) {
  fprintf(out, "  %s\n    status %d\n", title, r->status);
  for (size_t i = 0; i < r->headers.n; i++) {
    const shadow_header_t *h = &r->headers.v[i];
    fprintf(out, "    %.*s: %.*s\n", (int)h->name_len, h->name,
            (int)h->value_len, h->value);
  }
  size_t n = r->body.len < SHOWN_BODY_BYTES ? r->body.len : SHOWN_BODY_BYTES;
  fprintf(out, "    body (%zu bytes)%s\n    ", r->body.len,
          n < r->body.len ? ", the first 65536 shown" : "");
  /* Control bytes would upset a terminal: shown as '.'. */
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)r->body.data[i];
    fputc(ch == '\n' ? '\n' : ch < 0x20 || ch == 0x7f ? '.' : ch, out);
    if (ch == '\n') fputs("    ", out);
  }
  fputc('\n', out);
}

int shadow_check_response(shadow_gen_t *g, const char *path, const char *side,
                          FILE *out) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = shadow_file_read(path, &b);
  if (rc) {
    fprintf(out, "response %s: %s\n", path, strerror(-rc));
    shadow_buf_free(&b);
    return -1;
  }
  shadow_record_t r;
  shadow_record_init(&r);
  char err[256];
  rc = shadow_record_parse(&r, b.data ? b.data : "", b.len, err, sizeof(err));
  shadow_buf_free(&b);
  if (rc) {
    fprintf(out, "response %s: %s\n", path, err);
    shadow_record_release(&r);
    return -1;
  }
  fprintf(out, "response %s, as the %s's\n", path, side);
  print_record(out, "as received:", &r);
  if (!shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE)) {
    fprintf(out, "  normalize  none: compared as received\n");
    shadow_record_release(&r);
    return 0;
  }
  seen_error_t seen = {{0}, 0};
  shadow_script_observer_t obs = {on_error, NULL, &seen};
  shadow_gen_observe(g, &obs);
  rc = shadow_script_normalize(g, 0, &r, side);
  if (rc || seen.failed) {
    fputs("  normalize  FAILED: ", out);
    /* The message and its traceback, indented under it. */
    for (const char *m = seen.failed ? seen.msg : "it returned no record"; *m;
         m++)
      fputs(*m == '\n' ? "\n             " : (char[]){*m, 0}, out);
    fputs("\n             live, such a pair is compared raw (counted in "
          "/stats totals.compared_raw)\n",
          out);
    shadow_record_release(&r);
    return -1;
  }
  print_record(out, "after normalize:", &r);
  shadow_record_release(&r);
  return 0;
}
