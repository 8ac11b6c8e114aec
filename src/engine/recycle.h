/* Whether freed memory may be kept for reuse (buf.c's blocks, record.c's
 * records): always, but under AddressSanitizer, where a block handed out
 * again would turn a use after free into a silent read of live memory. */
#ifndef SHADOW_RECYCLE_H
#define SHADOW_RECYCLE_H

#if defined(__SANITIZE_ADDRESS__)
#define SHADOW_RECYCLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHADOW_RECYCLE 0
#endif
#endif
#ifndef SHADOW_RECYCLE
#define SHADOW_RECYCLE 1
#endif

#endif
