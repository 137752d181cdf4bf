#include "util/strconv.h"

#include <limits.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

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

/* A size as redis.conf writes it: 10, 1k, 5mb, 2gb (k = 1000, kb = 1024). */
long long mem_to_ll(const char *p, int *err)
{
    const char *u = p;
    while (*u == '-' || isdigit((unsigned char)*u)) u++;
    long long mul = 1;
    if (!strcasecmp(u, "")) mul = 1;
    else if (!strcasecmp(u, "b")) mul = 1;
    else if (!strcasecmp(u, "k")) mul = 1000;
    else if (!strcasecmp(u, "kb")) mul = 1024;
    else if (!strcasecmp(u, "m")) mul = 1000LL * 1000;
    else if (!strcasecmp(u, "mb")) mul = 1024LL * 1024;
    else if (!strcasecmp(u, "g")) mul = 1000LL * 1000 * 1000;
    else if (!strcasecmp(u, "gb")) mul = 1024LL * 1024 * 1024;
    else { *err = 1; return 0; }
    long long v;
    if (!string_to_ll(p, (size_t)(u - p), &v)) { *err = 1; return 0; }
    if (v != 0 && (v > LLONG_MAX / mul || v < LLONG_MIN / mul)) { *err = 1; return 0; }
    *err = 0;
    return v * mul;
}

const char *info_text_field(const char *text, size_t len, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    const char *end = text + len;
    for (const char *p = text; p && p + n < end;) {
        if (!memcmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1, *e = v;
            while (e < end && *e != '\r' && *e != '\n') e++;
            if (vlen) *vlen = (size_t)(e - v);
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
        if (p) p++;
    }
    return NULL;
}
