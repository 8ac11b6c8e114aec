/* `shadowd check-gateway`: a shadow.gateway conf validated outside nginx,
 * with the messages new(conf) gives inside it. */
#ifndef SHADOW_CHECK_GATEWAY_H
#define SHADOW_CHECK_GATEWAY_H

/* argv[0] is "check-gateway". Exit code: 0 valid (a summary on stdout),
 * 1 refused (new()'s message on stderr), 2 usage. */
int shadow_check_gateway_main(int argc, char **argv);

#endif
