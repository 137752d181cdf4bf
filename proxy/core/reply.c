#include "proxy/core/reply.h"
#include "proxy/core/command_stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>


static void add_prefixed_number(struct evbuffer *b, char prefix, long long v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%c%lld\r\n", prefix, v);
    evbuffer_add(b, buf, (size_t)n);
}

void reply_status(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "+", 1);
    evbuffer_add(b, s, strlen(s));
    evbuffer_add(b, "\r\n", 2);
}

void reply_ok(struct evbuffer *b) { evbuffer_add(b, "+OK\r\n", 5); }

static void add_error(struct evbuffer *b, const char *err, size_t len)
{
    evbuffer_add(b, "-", 1);
    /* A CR or LF would end the error line early: Redis replaces them. */
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (err[i] == '\r' || err[i] == '\n') {
            evbuffer_add(b, err + start, i - start);
            evbuffer_add(b, " ", 1);
            start = i + 1;
        }
    }
    evbuffer_add(b, err + start, len - start);
    evbuffer_add(b, "\r\n", 2);
}

void reply_error_len(struct evbuffer *b, const char *err, size_t len)
{
    stats_error_reply(err, len);
    add_error(b, err, len);
}

void reply_error_uncounted(struct evbuffer *b, const char *err) { add_error(b, err, strlen(err)); }

void reply_error(struct evbuffer *b, const char *err) { reply_error_len(b, err, strlen(err)); }

void reply_errorf(struct evbuffer *b, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(buf)) n = sizeof(buf) - 1;
    reply_error_len(b, buf, (size_t)n);
}

void reply_integer(struct evbuffer *b, long long v) { add_prefixed_number(b, ':', v); }

void reply_bulk(struct evbuffer *b, const void *p, size_t len)
{
    add_prefixed_number(b, '$', (long long)len);
    evbuffer_add(b, p, len);
    evbuffer_add(b, "\r\n", 2);
}

void reply_bulk_cstr(struct evbuffer *b, const char *s) { reply_bulk(b, s, strlen(s)); }
void reply_null_bulk(struct evbuffer *b) { evbuffer_add(b, "$-1\r\n", 5); }
void reply_null_array(struct evbuffer *b) { evbuffer_add(b, "*-1\r\n", 5); }
void reply_array(struct evbuffer *b, long long n) { add_prefixed_number(b, '*', n); }

char *buffer_take_string(struct evbuffer *b, size_t *len)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    if (!s) abort();
    evbuffer_remove(b, s, n);
    evbuffer_free(b);
    s[n] = '\0';
    if (len) *len = n;
    return s;
}

int reply_debug_protocol(struct evbuffer *b, const char *type, size_t len, int resp)
{
    static const char *const names[] = {"string", "integer", "double", "bignum", "null", "array", "set",
                                        "map",    "attrib",  "push",   "verbatim", "true", "false", NULL};
    int which = -1;
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && !strncasecmp(type, names[i], len)) which = i;
    int r3 = resp == 3;
    switch (which) {
    case 0: reply_bulk_cstr(b, "Hello World"); break;
    case 1: reply_integer(b, 12345); break;
    case 2: evbuffer_add_printf(b, r3 ? ",3.141\r\n" : "$5\r\n3.141\r\n"); break;
    case 3:
        evbuffer_add_printf(b, r3 ? "(%s\r\n" : "$37\r\n%s\r\n", "1234567999999999999999999999999999999");
        break;
    case 4: evbuffer_add_printf(b, r3 ? "_\r\n" : "$-1\r\n"); break;
    case 5:
    case 6:
        evbuffer_add_printf(b, "%c3\r\n:0\r\n:1\r\n:2\r\n", which == 6 && r3 ? '~' : '*');
        break;
    case 7:
        if (r3) evbuffer_add_printf(b, "%%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n");
        else evbuffer_add_printf(b, "*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n");
        break;
    case 8:
        if (r3) evbuffer_add_printf(b, "|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n");
        reply_bulk_cstr(b, "Some real reply following the attribute");
        break;
    case 9:
        if (!r3) {
            reply_error(b, "ERR RESP2 is not supported by this command");
            break;
        }
        evbuffer_add_printf(b, ">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n");
        reply_bulk_cstr(b, "Some real reply following the push reply");
        break;
    case 10:
        if (r3) evbuffer_add_printf(b, "=29\r\ntxt:This is a verbatim\nstring\r\n");
        else evbuffer_add_printf(b, "$25\r\nThis is a verbatim\nstring\r\n");
        break;
    case 11: evbuffer_add_printf(b, r3 ? "#t\r\n" : ":1\r\n"); break;
    case 12: evbuffer_add_printf(b, r3 ? "#f\r\n" : ":0\r\n"); break;
    default: return 0;
    }
    return 1;
}
