/* Glob matching as Redis matches patterns (KEYS, PSUBSCRIBE, ACL patterns,
 * CONFIG GET): one matcher for every place the proxy matches itself. */
#ifndef EVALPROXY_GLOB_H
#define EVALPROXY_GLOB_H

#include <stddef.h>

/* 1 when s matches pattern (* ? [] and \ escapes), else 0. */
int string_match(const char *pattern, size_t patlen, const char *s, size_t slen, int nocase);

#endif
