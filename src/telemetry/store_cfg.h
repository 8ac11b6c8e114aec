/* The fleet store's settings (config `store = shadow.redis(url, opts)`):
 * plain data the config reader fills and checks, the store runs with, and
 * a reload compares (the same settings keep the same connection). */
#ifndef SHADOW_STORE_CFG_H
#define SHADOW_STORE_CFG_H

#include <stddef.h>
#include <stdint.h>

#define SHADOW_STORE_SENTINELS_MAX 8

typedef struct shadow_store_cfg_s {
  char *url;            /* as written; NULL: no store */
  int tls;              /* rediss:// */
  char *host;           /* of the URL (a sentinel config still has one) */
  int port;             /* default 6379 */
  unsigned db;          /* the URL's /db, default 0 */
  char *username;       /* ACL user (URL or opts.username), or NULL */
  char *password;       /* URL or opts.password, or NULL */
  char *prefix;         /* default "shadow" */
  uint64_t flush_ms;    /* default 1000 */
  uint64_t ttl_s;       /* keys expire after this much silence; 86400 */
  uint64_t max_pending; /* unsent deltas kept while down; 100000 */
  /* tls = { ca_file, server_name, verify, cert_file, key_file } */
  char *tls_ca_file, *tls_server_name, *tls_cert_file, *tls_key_file;
  int tls_verify; /* default 1 */
  /* sentinel = { addrs = { "host:port", ... }, master = "name" } */
  char *sentinel_addrs[SHADOW_STORE_SENTINELS_MAX];
  size_t nsentinels;
  char *sentinel_master;
  int cluster; /* cluster = true: ask CLUSTER SLOTS first */
} shadow_store_cfg_t;

void shadow_store_cfg_init(shadow_store_cfg_t *c);
void shadow_store_cfg_release(shadow_store_cfg_t *c);
/* Reads redis://[user:password@]host[:port][/db] or rediss://... into c.
 * 0, or -1 and *err (free() it) saying what is wrong with it. */
int shadow_store_cfg_parse_url(shadow_store_cfg_t *c, const char *url,
                               char **err);
/* Checks what the URL and options make together (a sentinel address, the
 * TLS files). 0, or -1 and *err. */
int shadow_store_cfg_check(const shadow_store_cfg_t *c, char **err);
/* Whether two settings are the same store (a reload keeps its
 * connection). */
int shadow_store_cfg_same(const shadow_store_cfg_t *a,
                          const shadow_store_cfg_t *b);
/* "host:port" into *host (malloc'd) and *port. 0 or -1. */
int shadow_store_split_addr(const char *addr, char **host, int *port);
/* The key prefix with its hash tag: the prefix itself when it holds a
 * '{', else "{prefix}", so every key of one deployment lives in one
 * cluster slot. Malloc'd, or NULL. */
char *shadow_store_key_base(const shadow_store_cfg_t *c);

#endif
