#include "util/glob.h"

#include <string.h>

/* Redis reads its NUL-terminated pattern one byte past the length in a few
 * places (after a trailing `[`, `[^` or `*`); answer that byte as NUL so a
 * pattern that is not terminated here behaves the same. */
#define PAT(i) ((i) < plen ? p[i] : '\0')

/* ASCII folding like tolower() in the C locale, on the signed char values
 * Redis compares (bytes >= 0x80 are negative there and stay as they are). */
static int fold(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* A transcription of Redis's stringmatchlen_impl (7.0 with the
 * CVE-2022-36021 and CVE-2024-31228 fixes): same branches, same signed char
 * comparisons in ranges, so every answer is Redis's. */
static int match_impl(const char *p, long plen, const char *s, long slen, int nocase, int *skip_longer,
                      int nesting)
{
    if (nesting > 1000) return 0;

    while (plen && slen) {
        switch (p[0]) {
        case '*':
            while (plen && PAT(1) == '*') { p++; plen--; }
            if (plen == 1) return 1;
            while (slen) {
                if (match_impl(p + 1, plen - 1, s, slen, nocase, skip_longer, nesting + 1)) return 1;
                if (*skip_longer) return 0;
                s++; slen--;
            }
            /* Nothing after this star matches anywhere in the rest of the
             * string, so no earlier star can do better by matching longer. */
            *skip_longer = 1;
            return 0;
        case '?':
            s++; slen--;
            break;
        case '[': {
            int neg, match = 0;
            p++; plen--;
            neg = PAT(0) == '^';
            if (neg) { p++; plen--; }
            for (;;) {
                if (PAT(0) == '\\' && plen >= 2) {
                    p++; plen--;
                    if (p[0] == s[0]) match = 1;
                } else if (PAT(0) == ']') {
                    break;
                } else if (plen == 0) {
                    p--; plen++; /* unterminated: the class ends here */
                    break;
                } else if (plen >= 3 && p[1] == '-') {
                    int start = (signed char)p[0], end = (signed char)p[2], c = (signed char)s[0];
                    if (start > end) { int t = start; start = end; end = t; }
                    if (nocase) { start = fold(start); end = fold(end); c = fold(c); }
                    p += 2; plen -= 2;
                    if (c >= start && c <= end) match = 1;
                } else if (nocase ? fold((signed char)p[0]) == fold((signed char)s[0]) : p[0] == s[0]) {
                    match = 1;
                }
                p++; plen--;
            }
            if (neg) match = !match;
            if (!match) return 0;
            s++; slen--;
            break;
        }
        case '\\':
            if (plen >= 2) { p++; plen--; }
            /* fall through */
        default:
            if (nocase ? fold((signed char)p[0]) != fold((signed char)s[0]) : p[0] != s[0]) return 0;
            s++; slen--;
            break;
        }
        p++; plen--;
        if (slen == 0) {
            while (PAT(0) == '*') { p++; plen--; }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

int glob_match(const char *pattern, size_t patlen, const char *s, size_t slen, int nocase)
{
    int skip_longer = 0;
    return match_impl(pattern, (long)patlen, s, (long)slen, nocase, &skip_longer, 0);
}

int glob_match_cstr_pattern(const char *pattern, size_t patlen, const char *s, size_t slen, int nocase)
{
    const char *nul = memchr(pattern, '\0', patlen);
    return glob_match(pattern, nul ? (size_t)(nul - pattern) : patlen, s, slen, nocase);
}
