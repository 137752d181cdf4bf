#include "util/strconv.h"

#include <limits.h>

int string_to_ll(const char *s, size_t len, long long *out)
{
    /* Strict like Redis's string2ll: no spaces, no '+', no leading zeros. */
    if (len == 0 || len > 20) return 0;
    size_t i = 0;
    int neg = 0;
    if (len == 1 && s[0] == '0') { *out = 0; return 1; }
    if (s[0] == '-') { neg = 1; i = 1; if (len == 1) return 0; }
    if (s[i] < '1' || s[i] > '9') return 0;
    unsigned long long v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1) return 0;
        *out = (long long)(0 - v);
    } else {
        if (v > (unsigned long long)LLONG_MAX) return 0;
        *out = (long long)v;
    }
    return 1;
}
