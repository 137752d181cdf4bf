/* Glob-style pattern matching with Redis 7.0's rules, the one matcher for
 * every pattern the proxy applies itself (ACL key and channel patterns,
 * pub/sub patterns, CONFIG GET, COMMAND LIST, FUNCTION LIST, KEYS and SCAN
 * MATCH on stores that cannot match). */
#ifndef EVALPROXY_GLOB_H
#define EVALPROXY_GLOB_H

#include <stddef.h>

/* 1 when s matches the pattern as Redis's stringmatchlen answers: `*`, `?`,
 * `[...]` classes with `^` and ranges, `\` escapes; nocase folds ASCII only.
 * Bounded like Redis: a failed `*` stops longer tries, and past 1000 nested
 * `*` the pattern does not match, so hostile patterns end quickly. */
int glob_match(const char *pattern, size_t patlen, const char *s, size_t slen, int nocase);

/* The same with the pattern read up to its first NUL byte, as Redis's
 * stringmatch (CONFIG GET) does. */
int glob_match_cstr_pattern(const char *pattern, size_t patlen, const char *s, size_t slen, int nocase);

#endif
