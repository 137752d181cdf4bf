#include "util/glob.h"

#include <ctype.h>

/* Glob matching with Redis's stringmatchlen rules (* ? [] and \ escapes). */
int string_match(const char *p, size_t plen, const char *s, size_t slen, int nocase)
{
    while (plen && slen) {
        switch (p[0]) {
        case '*':
            while (plen > 1 && p[1] == '*') { p++; plen--; }
            if (plen == 1) return 1;
            while (slen) {
                if (string_match(p + 1, plen - 1, s, slen, nocase)) return 1;
                s++; slen--;
            }
            return 0;
        case '?':
            s++; slen--;
            break;
        case '[': {
            int neg, match = 0;
            p++; plen--;
            neg = plen && p[0] == '^';
            if (neg) { p++; plen--; }
            while (plen) {
                if (p[0] == '\\' && plen >= 2) {
                    p++; plen--;
                    if (p[0] == s[0]) match = 1;
                } else if (p[0] == ']') {
                    break;
                } else if (plen >= 3 && p[1] == '-') {
                    int start = (unsigned char)p[0], end = (unsigned char)p[2], c = (unsigned char)s[0];
                    if (start > end) { int t = start; start = end; end = t; }
                    if (nocase) { start = tolower(start); end = tolower(end); c = tolower(c); }
                    p += 2; plen -= 2;
                    if (c >= start && c <= end) match = 1;
                } else if (nocase ? tolower((unsigned char)p[0]) == tolower((unsigned char)s[0]) : p[0] == s[0]) {
                    match = 1;
                }
                p++; plen--;
            }
            if (plen == 0) { p--; plen++; } /* unterminated class: treat ']' as present */
            if (neg) match = !match;
            if (!match) return 0;
            s++; slen--;
            break;
        }
        case '\\':
            if (plen >= 2) { p++; plen--; }
            /* fall through */
        default:
            if (nocase ? tolower((unsigned char)p[0]) != tolower((unsigned char)s[0]) : p[0] != s[0]) return 0;
            s++; slen--;
            break;
        }
        p++; plen--;
        if (slen == 0) {
            while (plen && *p == '*') { p++; plen--; }
            break;
        }
    }
    return plen == 0 && slen == 0;
}
