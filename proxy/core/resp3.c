/* RESP2 -> RESP3 conversion driven by the shape descriptors of
 * resp3_shapes.c (see resp3.h for the descriptor language).
 *
 * A reply is first scanned whole (so an incomplete or malformed one appends
 * nothing), then written out under its descriptor. */
#include "proxy/core/resp3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

/* Deeper than any reply Redis builds; a bound so hostile input cannot
 * exhaust the stack. */
#define RESP3_MAX_DEPTH 1000
/* Redis's own limit on a bulk string (proto-max-bulk-len may not exceed it). */
#define RESP3_MAX_BULK (1LL << 40)

static const char NULL3[] = "_\r\n";

/* Strict decimal, as Redis writes lengths and integers. */
static int parse_ll(const char *p, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0;
    if (n == 0 || n > 20)
        return -1;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return -1;
    }
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned long long d = (unsigned long long)(p[i] - '0');
        if (v > (9223372036854775808ULL - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (!neg && v > 9223372036854775807ULL)
        return -1;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 0;
}

/* The line at p: *eol = offset of its CR. 1 found, 0 incomplete, -1 bad. */
static int line_end(const char *p, size_t len, size_t *eol)
{
    const char *cr = memchr(p, '\r', len);
    if (!cr)
        return 0;
    size_t i = (size_t)(cr - p);
    if (i + 1 >= len)
        return 0;
    if (cr[1] != '\n')
        return -1;
    *eol = i;
    return 1;
}

/* Bytes of the one complete RESP2 reply at p, 0 if incomplete, -1 if bad. */
static long scan(const char *p, size_t len, int depth)
{
    size_t eol;
    long long n;
    if (len == 0)
        return 0;
    if (depth > RESP3_MAX_DEPTH)
        return -1;
    char t = p[0];
    if (t != '+' && t != '-' && t != ':' && t != '$' && t != '*')
        return -1;
    int r = line_end(p, len, &eol);
    if (r <= 0)
        return r;
    size_t pos = eol + 2;
    if (t == '+' || t == '-')
        return (long)pos;
    if (parse_ll(p + 1, eol - 1, &n) < 0)
        return -1;
    if (t == ':')
        return (long)pos;
    if (n < -1)
        return -1;
    if (n == -1)
        return (long)pos;
    if (t == '$') {
        if (n > RESP3_MAX_BULK)
            return -1;
        if (len - pos < (size_t)n + 2)
            return 0;
        if (p[pos + (size_t)n] != '\r' || p[pos + (size_t)n + 1] != '\n')
            return -1;
        return (long)(pos + (size_t)n + 2);
    }
    for (long long i = 0; i < n; i++) {
        long c = scan(p + pos, len - pos, depth + 1);
        if (c <= 0)
            return c;
        pos += (size_t)c;
    }
    return (long)pos;
}

/* Header of a scanned reply: its type, count or length, and header size. */
static char header(const char *p, long long *n, size_t *hlen)
{
    const char *cr = p;
    while (*cr != '\r') /* the scan has seen the CR */
        cr++;
    *hlen = (size_t)(cr - p) + 2;
    *n = 0;
    if (p[0] == '$' || p[0] == '*' || p[0] == ':')
        parse_ll(p + 1, (size_t)(cr - p) - 1, n);
    return p[0];
}

/* Bytes of a reply already scanned whole. */
static size_t reply_len(const char *p)
{
    long long n;
    size_t h;
    char t = header(p, &n, &h);
    if (t == '$' && n >= 0)
        return h + (size_t)n + 2;
    if (t != '*' || n < 0)
        return h;
    size_t pos = h;
    for (long long i = 0; i < n; i++)
        pos += reply_len(p + pos);
    return pos;
}

static void add_header(struct evbuffer *out, char t, long long n)
{
    char buf[32];
    int k = snprintf(buf, sizeof(buf), "%c%lld\r\n", t, n);
    evbuffer_add(out, buf, (size_t)k);
}

/* Generic conversion: only nulls change. Returns the bytes taken. */
static size_t emit_generic(const char *p, struct evbuffer *out)
{
    long long n;
    size_t h;
    char t = header(p, &n, &h);
    if ((t == '$' || t == '*') && n < 0) {
        evbuffer_add(out, NULL3, 3);
        return h;
    }
    if (t == '$') {
        evbuffer_add(out, p, h + (size_t)n + 2);
        return h + (size_t)n + 2;
    }
    if (t != '*') {
        evbuffer_add(out, p, h);
        return h;
    }
    evbuffer_add(out, p, h);
    size_t pos = h;
    for (long long i = 0; i < n; i++)
        pos += emit_generic(p + pos, out);
    return pos;
}

/* Past one descriptor. */
static const char *skip(const char *d)
{
    switch (*d) {
    case '*': case '~': case '<': case '?':
        return skip(d + 1);
    case '%': case 'P': case 'm':
        return skip(skip(d + 1));
    case '(':
        d++;
        while (*d && *d != ')')
            d = skip(d);
        return *d ? d + 1 : d;
    case '{':
        d++;
        while (*d && *d != '}') {
            const char *c = strchr(d, ':');
            if (!c)
                return d + strlen(d);
            d = skip(c + 1);
            if (*d == ',')
                d++;
        }
        return *d ? d + 1 : d;
    case '@': {
        const char *e = strchr(d, ';');
        return e ? e + 1 : d + strlen(d);
    }
    case '\0':
        return d;
    default:
        return d + 1;
    }
}

static const resp3_shape *lookup(const char *name, size_t len)
{
    int lo = 0, hi = resp3_shapes_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const char *m = resp3_shapes[mid].name;
        int c = strncmp(m, name, len);
        if (c == 0 && m[len] != '\0')
            c = 1;
        if (c == 0)
            return &resp3_shapes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* The value descriptor for map key k in a {...} descriptor, or NULL. */
static const char *field_desc(const char *d, const char *k, size_t klen)
{
    d++;
    while (*d && *d != '}') {
        const char *c = strchr(d, ':');
        if (!c)
            return NULL;
        size_t n = (size_t)(c - d);
        if (n == klen && memcmp(d, k, klen) == 0)
            return c + 1;
        /* "db*": any key with that prefix (MEMORY STATS's db.<n>) */
        if (n > 0 && d[n - 1] == '*' && klen >= n - 1 && memcmp(d, k, n - 1) == 0)
            return c + 1;
        d = skip(c + 1);
        if (*d == ',')
            d++;
    }
    return NULL;
}

static size_t emit(const char *d, const char *p, struct evbuffer *out);

/* A map key: its text (bulk or status) for matching, written generically. */
static size_t emit_key(const char *p, const char **k, size_t *klen, struct evbuffer *out)
{
    long long n;
    size_t h;
    char t = header(p, &n, &h);
    *k = NULL;
    *klen = 0;
    if (t == '$' && n >= 0) {
        *k = p + h;
        *klen = (size_t)n;
    } else if (t == '+') {
        *k = p + 1;
        *klen = h - 3;
    }
    return emit_generic(p, out);
}

static size_t emit(const char *d, const char *p, struct evbuffer *out)
{
    long long n;
    size_t h, pos;
    if (!d || *d == '.' || *d == '\0')
        return emit_generic(p, out);
    if (*d == '@') {
        const char *e = strchr(d + 1, ';');
        const resp3_shape *s = e ? lookup(d + 1, (size_t)(e - d - 1)) : NULL;
        return emit(s ? s->desc : NULL, p, out);
    }
    char t = header(p, &n, &h);
    if (n < 0 || (t != '$' && t != '*'))
        return emit_generic(p, out);
    if (t == '$') {
        if (*d == 'd') {
            evbuffer_add(out, ",", 1);
            evbuffer_add(out, p + h, (size_t)n + 2);
        } else if (*d == 'v') {
            add_header(out, '=', n + 4);
            evbuffer_add(out, "txt:", 4);
            evbuffer_add(out, p + h, (size_t)n + 2);
        } else {
            return emit_generic(p, out);
        }
        return h + (size_t)n + 2;
    }
    pos = h;
    if (*d == '?') {
        if (n == 0) {
            evbuffer_add(out, "~0\r\n", 4);
            return h;
        }
        return emit(d + 1, p, out);
    }
    switch (*d) {
    case 'm':
        /* Pairs as two-element arrays; anything else is left as it is. */
        for (long long i = 0, q = h; i < n; i++) {
            long long k;
            size_t eh;
            if (header(p + q, &k, &eh) != '*' || k != 2)
                return emit_generic(p, out);
            q += (long long)reply_len(p + q);
        }
        add_header(out, '%', n);
        for (long long i = 0; i < n; i++) {
            long long k;
            size_t eh;
            header(p + pos, &k, &eh);
            pos += eh;
            pos += emit(d + 1, p + pos, out);
            pos += emit(skip(d + 1), p + pos, out);
        }
        return pos;
    case '*': case '~':
        add_header(out, *d, n);
        for (long long i = 0; i < n; i++)
            pos += emit(d + 1, p + pos, out);
        return pos;
    case '<':
        add_header(out, '*', n);
        for (long long i = 0; i < n; i++)
            pos += i == n - 1 ? emit(d + 1, p + pos, out) : emit_generic(p + pos, out);
        return pos;
    case '(': {
        const char *c = d + 1, *last = NULL;
        add_header(out, '*', n);
        for (long long i = 0; i < n; i++) {
            if (*c == '+' && last) {
                pos += emit(last, p + pos, out);
            } else if (*c && *c != ')') {
                pos += emit(c, p + pos, out);
                last = c;
                c = skip(c);
            } else {
                pos += emit_generic(p + pos, out);
            }
        }
        return pos;
    }
    case '%': case 'P': case '{': {
        /* An odd count is no list of pairs: left as it is. */
        if (n % 2)
            return emit_generic(p, out);
        const char *kd = d + 1, *vd = *d == '{' ? NULL : skip(d + 1);
        add_header(out, *d == 'P' ? '*' : '%', n / 2);
        for (long long i = 0; i < n; i += 2) {
            if (*d == 'P') {
                evbuffer_add(out, "*2\r\n", 4);
                pos += emit(kd, p + pos, out);
                pos += emit(vd, p + pos, out);
            } else if (*d == '%') {
                pos += emit(kd, p + pos, out);
                pos += emit(vd, p + pos, out);
            } else {
                const char *k;
                size_t klen;
                pos += emit_key(p + pos, &k, &klen, out);
                pos += emit(k ? field_desc(d, k, klen) : NULL, p + pos, out);
            }
        }
        return pos;
    }
    default:
        return emit_generic(p, out);
    }
}

const resp3_shape *resp3_shape_for(const char *name, int argc, char **argv, const size_t *argvlen)
{
    const resp3_shape *s = name ? lookup(name, strlen(name)) : NULL;
    if (!s)
        return &resp3_generic_shape;
    for (int r = 0; r < s->nrules; r++) {
        const resp3_rule *rule = &s->rules[r];
        int from = rule->from;
        if (rule->kind == RESP3_RULE_ARGC) {
            if (argc >= from)
                return rule->then;
            continue;
        }
        if (rule->kind == RESP3_RULE_KEYWORD_NUMKEYS) {
            long long nk;
            if (from >= argc || !argv ||
                parse_ll(argv[from], argvlen ? argvlen[from] : strlen(argv[from]), &nk) < 0 ||
                nk < 0 || nk > argc)
                continue;
            from = from + 1 + (int)nk;
        }
        size_t kl = strlen(rule->keyword);
        for (int i = from; argv && i < argc; i++) {
            size_t al = argvlen ? argvlen[i] : strlen(argv[i]);
            if (al == kl && strncasecmp(argv[i], rule->keyword, kl) == 0)
                return rule->then;
        }
    }
    return s;
}

long resp3_convert(const resp3_shape *s, const char *in, size_t len, struct evbuffer *out)
{
    long n = scan(in, len, 0);
    if (n <= 0)
        return n;
    emit(s ? s->desc : NULL, in, out);
    return n;
}

long resp3_convert_exec(const resp3_shape *const *shapes, int n, const char *in, size_t len, struct evbuffer *out)
{
    long total = scan(in, len, 0);
    long long count;
    size_t h;
    if (total <= 0)
        return total;
    if (header(in, &count, &h) != '*' || count < 0) {
        emit_generic(in, out);
        return total;
    }
    add_header(out, '*', count);
    size_t pos = h;
    for (long long i = 0; i < count; i++) {
        const resp3_shape *s = i < n && shapes ? shapes[i] : NULL;
        pos += emit(s ? s->desc : NULL, in + pos, out);
    }
    return total;
}
