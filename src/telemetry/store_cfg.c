/* The fleet store's settings (see store_cfg.h): the URL's grammar, the
 * checks a load makes, and the comparison a reload makes. No I/O but
 * reading the TLS files to check them. */
#include "store_cfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tls.h"

void shadow_store_cfg_init(shadow_store_cfg_t *c) {
  memset(c, 0, sizeof(*c));
  c->port = 6379;
  c->flush_ms = 1000;
  c->ttl_s = 86400;
  c->max_pending = 100000;
  c->tls_verify = 1;
}

void shadow_store_cfg_release(shadow_store_cfg_t *c) {
  free(c->url);
  free(c->host);
  free(c->username);
  free(c->password);
  free(c->prefix);
  free(c->tls_ca_file);
  free(c->tls_server_name);
  free(c->tls_cert_file);
  free(c->tls_key_file);
  for (size_t i = 0; i < c->nsentinels; i++)
    free(c->sentinel_addrs[i]);
  free(c->sentinel_master);
  shadow_store_cfg_init(c);
}

static int err_out(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int err_out(char **err, const char *fmt, ...) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  shadow_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  *err = shadow_buf_steal(&b, NULL);
  return -1;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* %xx in a URL's user or password. */
static char *unescape(const char *s, size_t n) {
  char *o = malloc(n + 1);
  if (!o) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
        hexval(s[i + 2]) >= 0) {
      o[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      o[j++] = s[i];
    }
  }
  o[j] = '\0';
  return o;
}

static int parse_port(const char *s, size_t n, int *port) {
  if (n == 0 || n > 5) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v < 1 || v > 65535) return -1;
  *port = (int)v;
  return 0;
}

int shadow_store_split_addr(const char *addr, char **host, int *port) {
  const char *colon = strrchr(addr, ':');
  const char *h = addr;
  size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (!colon || hl == 0 || parse_port(colon + 1, strlen(colon + 1), port) != 0)
    return -1;
  *host = shadow_bytes_dup(h, hl);
  return *host ? 0 : -1;
}

int shadow_store_cfg_parse_url(shadow_store_cfg_t *c, const char *url,
                               char **err) {
  const char *p;
  if (strncmp(url, "redis://", 8) == 0) {
    p = url + 8;
    c->tls = 0;
  } else if (strncmp(url, "rediss://", 9) == 0) {
    p = url + 9;
    c->tls = 1;
  } else {
    return err_out(err,
                   "store: the URL must start with redis:// or "
                   "rediss://, not \"%.40s\"",
                   url);
  }
  const char *end = p + strcspn(p, "/?#");
  const char *at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (colon > p) c->username = unescape(p, (size_t)(colon - p));
      c->password = unescape(colon + 1, (size_t)(at - colon - 1));
    } else if (at > p) {
      /* redis://password@host, as redis-cli -u takes it. */
      c->password = unescape(p, (size_t)(at - p));
    }
    p = at + 1;
  }
  const char *hs = p, *he = end;
  const char *portp = NULL;
  if (*hs == '[') {
    const char *rb = memchr(hs, ']', (size_t)(end - hs));
    if (!rb) return err_out(err, "store: bad IPv6 address in the URL");
    he = rb;
    hs++;
    if (rb + 1 < end) {
      if (rb[1] != ':') return err_out(err, "store: bad host in the URL");
      portp = rb + 2;
    }
  } else {
    const char *colon = memchr(hs, ':', (size_t)(end - hs));
    if (colon) {
      he = colon;
      portp = colon + 1;
    }
  }
  if (he <= hs) return err_out(err, "store: the URL has no host");
  c->host = shadow_bytes_dup(hs, (size_t)(he - hs));
  if (portp && parse_port(portp, (size_t)(end - portp), &c->port) != 0)
    return err_out(err, "store: bad port in the URL \"%.*s\"",
                   (int)(end - portp), portp);
  if (*end == '/' && end[1]) {
    char *e2;
    long db = strtol(end + 1, &e2, 10);
    if (e2 == end + 1 || *e2 || db < 0 || db > 1000000)
      return err_out(err,
                     "store: the URL's database must be a number, "
                     "not \"%.40s\"",
                     end + 1);
    c->db = (unsigned)db;
  } else if (*end && *end != '/') {
    return err_out(err, "store: the URL takes no query or fragment");
  }
  free(c->url);
  c->url = strdup(url);
  if (!c->host || !c->url) return err_out(err, "store: out of memory");
  return 0;
}

int shadow_store_cfg_check(const shadow_store_cfg_t *c, char **err) {
  for (size_t i = 0; i < c->nsentinels; i++) {
    char *h = NULL;
    int port;
    if (shadow_store_split_addr(c->sentinel_addrs[i], &h, &port) != 0)
      return err_out(err, "store.sentinel.addrs: \"%s\" is not host:port",
                     c->sentinel_addrs[i]);
    free(h);
  }
  if (c->nsentinels && !c->sentinel_master)
    return err_out(err, "store.sentinel needs master (the name sentinels "
                        "know the primary by)");
  if (c->nsentinels && c->cluster)
    return err_out(err, "store: sentinel and cluster do not go together");
  int has_tls = c->tls_ca_file || c->tls_server_name || c->tls_cert_file ||
                !c->tls_verify;
  if (has_tls && !c->tls)
    return err_out(err, "store.tls is for rediss:// URLs only");
  if (!c->tls_cert_file != !c->tls_key_file)
    return err_out(err, "store.tls: cert_file and key_file go together");
  if (c->tls) {
    shadow_tls_client_opts_t o = {
        c->tls_ca_file,  c->tls_server_name ? c->tls_server_name : c->host,
        c->tls_verify,   c->tls_cert_file,
        c->tls_key_file, SHADOW_TLS_ALPN_NONE};
    shadow_tls_ctx_t *ctx = NULL;
    char *why = NULL;
    int rc = shadow_tls_client_ctx(&o, &ctx, &why);
    shadow_tls_ctx_unref(ctx);
    if (rc) {
      int r = err_out(err, "store.tls: %s", why ? why : "cannot set up");
      free(why);
      return r;
    }
  }
  return 0;
}

static int same_str(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

int shadow_store_cfg_same(const shadow_store_cfg_t *a,
                          const shadow_store_cfg_t *b) {
  if (!same_str(a->url, b->url) || !same_str(a->username, b->username) ||
      !same_str(a->password, b->password) || !same_str(a->prefix, b->prefix) ||
      a->flush_ms != b->flush_ms || a->ttl_s != b->ttl_s ||
      a->max_pending != b->max_pending || a->cluster != b->cluster ||
      !same_str(a->tls_ca_file, b->tls_ca_file) ||
      !same_str(a->tls_server_name, b->tls_server_name) ||
      !same_str(a->tls_cert_file, b->tls_cert_file) ||
      !same_str(a->tls_key_file, b->tls_key_file) ||
      a->tls_verify != b->tls_verify || a->nsentinels != b->nsentinels ||
      !same_str(a->sentinel_master, b->sentinel_master))
    return 0;
  for (size_t i = 0; i < a->nsentinels; i++)
    if (!same_str(a->sentinel_addrs[i], b->sentinel_addrs[i])) return 0;
  return 1;
}

char *shadow_store_key_base(const shadow_store_cfg_t *c) {
  const char *p = c->prefix ? c->prefix : "shadow";
  shadow_buf_t b = SHADOW_BUF_INIT;
  if (strchr(p, '{'))
    shadow_buf_puts(&b, p);
  else
    shadow_buf_printf(&b, "{%s}", p);
  return shadow_buf_steal(&b, NULL);
}
