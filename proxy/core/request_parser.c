/* Incremental RESP request parser with the rules of Redis 7.0's
 * processInlineBuffer / processMultibulkBuffer (src/networking.c) and
 * sdssplitargs (src/sds.c).
 *
 * Redis keeps the whole query buffer and rescans it after every read; this
 * parser keeps only what it needs (the open line and the arguments so far) and
 * walks each byte once. Results do not depend on how input is chunked, except
 * where Redis's do not either: the 64 KB line limit. Redis checks it after
 * each read, and only when the buffer holds no line end yet, so a longer line
 * whose end arrives in the same read is accepted; here a feed call stands for
 * a read, and the check is made when one has used up its input. */
#include "proxy/core/request_parser.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

enum {
    RP_START,   /* between commands: the next byte picks inline or multibulk */
    RP_INLINE,  /* collecting an inline line up to '\n' */
    RP_HDR,     /* collecting a "*<count>" or "$<len>" line up to '\r' */
    RP_HDR_LF,  /* the one byte after that '\r' */
    RP_BULK,    /* bulk payload */
    RP_SKIP,    /* the two bytes after a bulk payload */
    RP_SWALLOW, /* a NUL hid the terminator (Redis searches with strchr) */
    RP_DONE,    /* a command is in argc/argv */
    RP_ERROR,
};

enum { KIND_INLINE, KIND_COUNT, KIND_BULK };

/* Redis's LONG_STR_SIZE: string2ll refuses strings this long or longer. */
#define RP_LLSTR_SIZE 21
/* Buffers above these sizes are trimmed between commands, so one huge
 * request does not pin its memory for the life of the connection. */
#define RP_ARENA_KEEP (256 * 1024)
#define RP_ARGV_KEEP 1024

static void *rp_realloc(void *ptr, size_t n)
{
    void *q = realloc(ptr, n ? n : 1);
    if (q == NULL) {
        /* Same policy as Redis's zmalloc: no sane way to continue. */
        fprintf(stderr, "request_parser: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

/* string2ll from Redis's util.c, same acceptance: optional '-', no '+', no
 * leading zeros, no spaces, fewer than 21 characters, fits a long long. */
static int rp_string2ll(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0;

    if (n == 0 || n >= RP_LLSTR_SIZE)
        return 0;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return 0;
    }
    if (s[i] < '1' || s[i] > '9')
        return 0;
    for (; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = v == 0 ? 0 : -(long long)(v - 1) - 1;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)v;
    }
    return 1;
}

/* Grow the arena to at least `need` bytes, doubling but never past `limit`
 * (the size the current argument will end at), so a large bulk grows as its
 * bytes arrive instead of being reserved from its declared length. */
static void arena_grow(request_parser *p, size_t need, size_t limit)
{
    size_t cap;
    if (need <= p->arena_cap)
        return;
    cap = p->arena_cap ? p->arena_cap * 2 : 256;
    if (cap > limit)
        cap = limit;
    if (cap < need)
        cap = need;
    p->arena = rp_realloc(p->arena, cap);
    p->arena_cap = cap;
}

static void args_reserve(request_parser *p, long long n)
{
    int cap;
    if (n <= p->argv_cap)
        return;
    cap = p->argv_cap ? p->argv_cap : 8;
    while (cap < n)
        cap = cap > INT_MAX / 2 ? INT_MAX : cap * 2;
    p->argv = rp_realloc(p->argv, (size_t)cap * sizeof(*p->argv));
    p->argvlen = rp_realloc(p->argvlen, (size_t)cap * sizeof(*p->argvlen));
    p->offsets = rp_realloc(p->offsets, (size_t)cap * sizeof(*p->offsets));
    p->argv_cap = cap;
}

/* Close the argument that started at offsets[argc]. */
static void arg_end(request_parser *p)
{
    size_t start = p->offsets[p->argc];
    p->argvlen[p->argc] = p->arena_len - start;
    p->arena[p->arena_len++] = '\0';
    p->argc++;
}

static void reset_command(request_parser *p)
{
    p->argc = 0;
    p->is_inline = 0;
    p->arena_len = 0;
    p->line_len = 0;
    p->line_total = 0;
    p->multibulk_left = 0;
    p->bulk_len = -1;
    p->bulk_have = 0;
    p->skip_left = 0;
    p->state = RP_START;
    if (p->line_cap > PROTO_INLINE_MAX_SIZE) {
        free(p->line);
        p->line = NULL;
        p->line_cap = 0;
    }
    if (p->arena_cap > RP_ARENA_KEEP) {
        p->arena = rp_realloc(p->arena, RP_ARENA_KEEP);
        p->arena_cap = RP_ARENA_KEEP;
    }
    if (p->argv_cap > RP_ARGV_KEEP) {
        p->argv = rp_realloc(p->argv, RP_ARGV_KEEP * sizeof(*p->argv));
        p->argvlen = rp_realloc(p->argvlen, RP_ARGV_KEEP * sizeof(*p->argvlen));
        p->offsets = rp_realloc(p->offsets, RP_ARGV_KEEP * sizeof(*p->offsets));
        p->argv_cap = RP_ARGV_KEEP;
    }
}

static int fail(request_parser *p, const char *what)
{
    snprintf(p->error, sizeof(p->error), "ERR Protocol error: %s", what);
    p->state = RP_ERROR;
    return REQUEST_PARSE_ERROR;
}

static const char *too_big_text(int kind)
{
    switch (kind) {
    case KIND_COUNT: return "too big mbulk count string";
    case KIND_BULK: return "too big bulk count string";
    default: return "too big inline request";
    }
}

static int finish(request_parser *p, int is_inline)
{
    for (int i = 0; i < p->argc; i++)
        p->argv[i] = p->arena + p->offsets[i];
    p->is_inline = is_inline;
    p->state = RP_DONE;
    return REQUEST_PARSE_DONE;
}

/* sdssplitargs: isspace() in the C locale separates tokens and must follow a
 * closing quote; inside an unquoted token only these four bytes (and the end)
 * terminate it, so "\v" and "\f" stay part of the token. */
static int rp_isspace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int rp_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Split one inline line (no NUL bytes in it, the caller guarantees that) into
 * arguments in the arena, with sdssplitargs's rules. Returns 0, or -1 for
 * unbalanced quotes. Reading past the end yields 0, standing in for the NUL
 * terminator sdssplitargs sees. */
static int split_inline(request_parser *p, const char *s, size_t n)
{
    size_t i = 0;
#define AT(k) ((k) < n ? (unsigned char)s[k] : 0)

    /* Every token writes at most as many bytes as it reads, plus its NUL. */
    arena_grow(p, p->arena_len + n + 1, p->arena_len + n + 1);
    for (;;) {
        int inq = 0, insq = 0, done = 0;

        while (i < n && rp_isspace((unsigned char)s[i]))
            i++;
        if (i >= n)
            return 0;
        args_reserve(p, (long long)p->argc + 1);
        p->offsets[p->argc] = p->arena_len;
        while (!done) {
            unsigned char c = AT(i), next = AT(i + 1);
            if (inq) {
                if (c == '\\' && next == 'x' && rp_hexval(AT(i + 2)) >= 0 &&
                    rp_hexval(AT(i + 3)) >= 0) {
                    p->arena[p->arena_len++] =
                        (char)(rp_hexval(AT(i + 2)) * 16 + rp_hexval(AT(i + 3)));
                    i += 3;
                } else if (c == '\\' && next) {
                    char e;
                    i++;
                    switch (next) {
                    case 'n': e = '\n'; break;
                    case 'r': e = '\r'; break;
                    case 't': e = '\t'; break;
                    case 'b': e = '\b'; break;
                    case 'a': e = '\a'; break;
                    default: e = (char)next; break;
                    }
                    p->arena[p->arena_len++] = e;
                } else if (c == '"') {
                    if (next && !rp_isspace(next))
                        return -1;
                    done = 1;
                } else if (!c) {
                    return -1;
                } else {
                    p->arena[p->arena_len++] = (char)c;
                }
            } else if (insq) {
                if (c == '\\' && next == '\'') {
                    i++;
                    p->arena[p->arena_len++] = '\'';
                } else if (c == '\'') {
                    if (next && !rp_isspace(next))
                        return -1;
                    done = 1;
                } else if (!c) {
                    return -1;
                } else {
                    p->arena[p->arena_len++] = (char)c;
                }
            } else {
                switch (c) {
                case ' ': case '\n': case '\r': case '\t': case '\0':
                    done = 1;
                    break;
                case '"': inq = 1; break;
                case '\'': insq = 1; break;
                default: p->arena[p->arena_len++] = (char)c; break;
                }
            }
            if (c)
                i++;
        }
        arg_end(p);
    }
#undef AT
}

/* An inline line is complete (terminator '\n' already consumed). */
static int inline_complete(request_parser *p, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (split_inline(p, s, n) < 0)
        return fail(p, "unbalanced quotes in request");
    if (p->argc == 0) {
        reset_command(p); /* empty line: skipped, as in Redis */
        return REQUEST_PARSE_MORE;
    }
    return finish(p, 1);
}

static int step_inline(request_parser *p, const char *s, size_t avail, size_t *pos)
{
    size_t i;

    for (i = 0; i < avail; i++)
        if (s[i] == '\n' || s[i] == '\0')
            break;
    if (i < avail && s[i] == '\n') {
        *pos += i + 1;
        if (p->line_len == 0)
            return inline_complete(p, s, i); /* whole line in this chunk */
        if (p->line_len + i > p->line_cap) {
            p->line_cap = p->line_len + i;
            p->line = rp_realloc(p->line, p->line_cap);
        }
        memcpy(p->line + p->line_len, s, i);
        p->line_len += i;
        return inline_complete(p, p->line, p->line_len);
    }
    *pos += i;
    p->line_total += i;
    if (i < avail) { /* a NUL */
        p->state = RP_SWALLOW;
        return REQUEST_PARSE_MORE;
    }
    if (p->line_len + i > p->line_cap) {
        size_t cap = p->line_cap ? p->line_cap * 2 : 256;
        if (cap < p->line_len + i)
            cap = p->line_len + i;
        p->line = rp_realloc(p->line, cap);
        p->line_cap = cap;
    }
    memcpy(p->line + p->line_len, s, i);
    p->line_len += i;
    return REQUEST_PARSE_MORE;
}

static int step_hdr(request_parser *p, const char *s, size_t avail, size_t *pos)
{
    size_t i;

    for (i = 0; i < avail; i++)
        if (s[i] == '\r' || s[i] == '\0')
            break;
    if (p->line_total < sizeof(p->hdr)) {
        size_t keep = sizeof(p->hdr) - p->line_total;
        memcpy(p->hdr + p->line_total, s, i < keep ? i : keep);
    }
    p->line_total += i;
    *pos += i;
    if (i < avail) {
        if (s[i] == '\r') {
            *pos += 1;
            p->state = RP_HDR_LF;
        } else {
            p->state = RP_SWALLOW;
        }
    }
    return REQUEST_PARSE_MORE;
}

/* A header line and the byte after its '\r' have arrived. Like Redis, that
 * byte is not required to be '\n'. */
static int hdr_complete(request_parser *p)
{
    long long ll = 0;
    int ok = p->line_total >= 1 && p->line_total <= sizeof(p->hdr) &&
             rp_string2ll(p->hdr + 1, p->line_total - 1, &ll);

    if (p->line_kind == KIND_COUNT) {
        if (!ok || ll > INT_MAX)
            return fail(p, "invalid multibulk length");
        if (ll > PROTO_UNAUTH_MAX_MULTIBULK && !p->authenticated)
            return fail(p, "unauthenticated multibulk length");
        if (ll <= 0) {
            reset_command(p); /* "*0", "*-1": nothing to run */
            return REQUEST_PARSE_MORE;
        }
        p->multibulk_left = ll;
        args_reserve(p, ll < RP_ARGV_KEEP ? ll : RP_ARGV_KEEP);
    } else {
        /* An empty line means Redis saw the '\r' itself as the type byte. */
        unsigned char first = p->line_total ? (unsigned char)p->hdr[0] : '\r';
        if (first != '$') {
            char msg[64];
            /* Redis's error replies turn CR and LF into spaces. */
            if (first == '\r' || first == '\n')
                first = ' ';
            snprintf(msg, sizeof(msg), "expected '$', got '%c'", first);
            return fail(p, msg);
        }
        if (!ok || ll < 0 || ll > p->proto_max_bulk_len)
            return fail(p, "invalid bulk length");
        if (ll > PROTO_UNAUTH_MAX_BULK && !p->authenticated)
            return fail(p, "unauthenticated bulk length");
        args_reserve(p, (long long)p->argc + 1);
        p->offsets[p->argc] = p->arena_len;
        p->bulk_len = ll;
        p->bulk_have = 0;
        p->line_total = 0;
        p->state = RP_BULK;
        return REQUEST_PARSE_MORE;
    }
    p->line_kind = KIND_BULK;
    p->line_total = 0;
    p->state = RP_HDR;
    return REQUEST_PARSE_MORE;
}

static void step_bulk(request_parser *p, const char *s, size_t avail, size_t *pos)
{
    size_t want = (size_t)p->bulk_len - p->bulk_have;
    size_t n = avail < want ? avail : want;
    size_t end = p->offsets[p->argc] + (size_t)p->bulk_len + 1;

    arena_grow(p, p->arena_len + n + 1, end);
    memcpy(p->arena + p->arena_len, s, n);
    p->arena_len += n;
    p->bulk_have += n;
    *pos += n;
    if (p->bulk_have == (size_t)p->bulk_len) {
        arg_end(p);
        p->bulk_len = -1;
        p->skip_left = 2;
        p->state = RP_SKIP;
    }
}

void request_parser_init(request_parser *p)
{
    memset(p, 0, sizeof(*p));
    p->proto_max_bulk_len = 512LL * 1024 * 1024;
    /* Redis clients start authenticated unless a password is configured;
     * the owner clears this when one is. */
    p->authenticated = 1;
    p->bulk_len = -1;
    p->state = RP_START;
}

void request_parser_free(request_parser *p)
{
    free(p->line);
    free(p->arena);
    free(p->argv);
    free(p->argvlen);
    free(p->offsets);
    p->line = p->arena = NULL;
    p->argv = NULL;
    p->argvlen = p->offsets = NULL;
    p->line_cap = p->arena_cap = 0;
    p->argv_cap = 0;
    p->argc = 0;
}

/* A well-formed multibulk command that is all in `s`, parsed in one pass.
 * Anything else (incomplete, malformed, past a limit) returns 0 with the
 * command still empty, and the states below take it from its first byte,
 * so partial input and every error behave exactly as there. */
static int fast_multibulk(request_parser *p, const char *s, size_t avail, size_t *used)
{
    size_t window = sizeof(p->hdr) + 1; /* a longer header line is an error */
    const char *cr = memchr(s, '\r', avail < window ? avail : window);
    long long n, len;
    if (!cr || (size_t)(cr - s) + 2 > avail)
        return 0;
    if (!rp_string2ll(s + 1, (size_t)(cr - s) - 1, &n) || n <= 0 || n > RP_ARGV_KEEP ||
        (n > PROTO_UNAUTH_MAX_MULTIBULK && !p->authenticated))
        return 0;
    size_t q = (size_t)(cr - s) + 2; /* the byte after '\r' is not looked at */
    args_reserve(p, n);
    for (long long i = 0; i < n; i++) {
        if (q >= avail || s[q] != '$')
            goto slow;
        size_t rest = avail - q;
        cr = memchr(s + q, '\r', rest < window ? rest : window);
        if (!cr)
            goto slow;
        size_t hl = (size_t)(cr - (s + q));
        if (!rp_string2ll(s + q + 1, hl - 1, &len) || len < 0 || len > p->proto_max_bulk_len ||
            (len > PROTO_UNAUTH_MAX_BULK && !p->authenticated))
            goto slow;
        size_t data = q + hl + 2;
        if (data > avail || avail - data < (size_t)len + 2)
            goto slow;
        arena_grow(p, p->arena_len + (size_t)len + 1, SIZE_MAX);
        p->offsets[p->argc] = p->arena_len;
        memcpy(p->arena + p->arena_len, s + data, (size_t)len);
        p->arena_len += (size_t)len;
        arg_end(p);
        q = data + (size_t)len + 2; /* nor are the two bytes after the data */
    }
    *used = q;
    finish(p, 0);
    return 1;
slow:
    p->argc = 0;
    p->arena_len = 0;
    return 0;
}

int request_parser_feed(request_parser *p, const char *buf, size_t len, size_t *consumed)
{
    size_t pos = 0;
    int rc = REQUEST_PARSE_MORE;

    if (p->state == RP_ERROR) {
        *consumed = 0;
        return REQUEST_PARSE_ERROR;
    }
    if (p->state == RP_DONE)
        reset_command(p);

    while (rc == REQUEST_PARSE_MORE && pos < len) {
        const char *s = buf + pos;
        size_t avail = len - pos;

        switch (p->state) {
        case RP_START:
            if (*s == '*') {
                size_t used;
                if (fast_multibulk(p, s, avail, &used)) {
                    pos += used;
                    rc = REQUEST_PARSE_DONE;
                    break;
                }
            }
            /* Redis decides per command on the first byte. */
            p->line_total = 0;
            p->line_len = 0;
            if (*s == '*') {
                p->line_kind = KIND_COUNT;
                p->state = RP_HDR;
            } else {
                p->line_kind = KIND_INLINE;
                p->state = RP_INLINE;
            }
            break;
        case RP_INLINE:
            rc = step_inline(p, s, avail, &pos);
            break;
        case RP_HDR:
            rc = step_hdr(p, s, avail, &pos);
            break;
        case RP_HDR_LF:
            pos++;
            rc = hdr_complete(p);
            break;
        case RP_BULK:
            step_bulk(p, s, avail, &pos);
            break;
        case RP_SKIP: {
            size_t n = avail < (size_t)p->skip_left ? avail : (size_t)p->skip_left;
            pos += n;
            p->skip_left -= (int)n;
            if (p->skip_left == 0) {
                if (--p->multibulk_left == 0) {
                    rc = finish(p, 0);
                } else {
                    p->line_kind = KIND_BULK;
                    p->line_total = 0;
                    p->state = RP_HDR;
                }
            }
            break;
        }
        case RP_SWALLOW:
            /* Redis's strchr stops at the NUL, so it never finds the line's
             * end; everything after it piles up until the 64 KB limit. */
            p->line_total += avail;
            pos += avail;
            break;
        default:
            rc = fail(p, "internal parser state");
            break;
        }
    }
    /* The end of a read: a line still open past the limit is refused. */
    if (rc == REQUEST_PARSE_MORE && p->line_total > PROTO_INLINE_MAX_SIZE &&
        (p->state == RP_INLINE || p->state == RP_HDR || p->state == RP_SWALLOW))
        rc = fail(p, too_big_text(p->line_kind));
    *consumed = pos;
    return rc;
}

size_t request_parser_pending(const request_parser *p)
{
    switch (p->state) {
    case RP_START:
    case RP_DONE:
    case RP_ERROR:
        return 0;
    default:
        /* Argument bytes held (without their NUL terminators) plus the open
         * line, including bytes hidden behind a NUL that Redis would hold. */
        return p->arena_len - (size_t)p->argc + p->line_total;
    }
}
