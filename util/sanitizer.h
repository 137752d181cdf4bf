/* Whether this build runs under AddressSanitizer (gcc says so with
 * __SANITIZE_ADDRESS__, clang with __has_feature): the code that switches
 * stacks or keeps freed blocks must then tell it, or step aside. */
#ifndef EVALPROXY_SANITIZER_H
#define EVALPROXY_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif

#endif
