/* `shadowd diff [--config FILE] A B`: the same comparison the daemon makes,
 * on two files, for CI pipelines and for trying rules out. */
#include "offline_diff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "divergence.h"
#include "log.h"
#include "record_parse.h"
#include "script.h"

static int read_file(const char *path, shadow_buf_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -errno;
  char chunk[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    if (shadow_buf_append(out, chunk, n)) {
      rc = -ENOMEM;
      break;
    }
  if (ferror(f)) rc = -EIO;
  fclose(f);
  return rc;
}

static int load_record(const char *path, shadow_record_t *r) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  int rc = read_file(path, &b);
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path, strerror(-rc));
    shadow_buf_free(&b);
    return -1;
  }
  char err[256];
  rc = shadow_record_parse(r, b.data ? b.data : "", b.len, err, sizeof(err));
  shadow_buf_free(&b);
  if (rc) {
    fprintf(stderr, "shadowd diff: %s: %s\n", path, err);
    return -1;
  }
  return 0;
}

int shadow_offline_diff_main(int argc, char **argv) {
  const char *config = NULL;
  const char *files[2] = {NULL, NULL};
  int nfiles = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      config = argv[i] + 9;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "shadowd diff: unknown option %s\n", argv[i]);
      return 2;
    } else if (nfiles < 2) {
      files[nfiles++] = argv[i];
    } else {
      nfiles++;
    }
  }
  if (nfiles != 2) {
    fprintf(stderr, "usage: shadowd diff [--config FILE] PRIMARY_FILE "
                    "CANDIDATE_FILE\n");
    return 2;
  }
  shadow_gen_t *g = NULL;
  if (config) {
    char *err = NULL;
    if (shadow_script_load(config, &g, &err) != 0) {
      fprintf(stderr, "shadowd diff: %s\n", err);
      free(err);
      return 2;
    }
  }
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  int code = 2;
  if (load_record(files[0], &p) == 0 && load_record(files[1], &c) == 0) {
    if (g) {
      shadow_script_normalize(g, 0, &p, "primary");
      shadow_script_normalize(g, 0, &c, "candidate");
    }
    shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
    int parts = shadow_diff_records(g ? shadow_gen_config(g)->diff_opts : NULL,
                                    &p, &c, &res);
    if (parts < 0) {
      fprintf(stderr, "shadowd diff: %s\n", strerror(-parts));
    } else {
      /* No request behind a file pair: route, method, path are null. */
      shadow_divergence_meta_t m = {.id = 1,
                                    .time_ms = shadow_wall_ms(),
                                    .primary_ms = -1,
                                    .candidate_ms = -1,
                                    .primary_first_ms = -1,
                                    .candidate_first_ms = -1};
      shadow_buf_t out = SHADOW_BUF_INIT;
      shadow_divergence_format(&out, &m, &res);
      printf("%s\n", out.data ? out.data : "{}");
      shadow_buf_free(&out);
      code = parts ? 1 : 0;
    }
    shadow_diff_result_free(&res);
  }
  shadow_record_release(&p);
  shadow_record_release(&c);
  shadow_gen_unref(g);
  return code;
}
