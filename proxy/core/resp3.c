/* RESP3 conversion, generic part: nulls become RESP3 nulls; the per-command
 * shapes (maps, sets, doubles) come with the shape table. */
#include "proxy/core/resp3.h"
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
struct resp3_shape { int x; };
static const struct resp3_shape generic;
const resp3_shape *resp3_shape_for(const char *name, int argc, char **argv, const size_t *argvlen) { (void)name; (void)argc; (void)argv; (void)argvlen; return &generic; }
static long scan(const char *in, size_t len, struct evbuffer *out)
{
    const char *nl = memchr(in, '\n', len);
    if (!nl) return 0;
    size_t hl = (size_t)(nl - in) + 1;
    long long n = atoll(in + 1);
    if ((in[0] == '$' || in[0] == '*') && n < 0) { if (out) evbuffer_add(out, "_\r\n", 3); return (long)hl; }
    if (in[0] == '$') { if (hl + (size_t)n + 2 > len) return 0; if (out) evbuffer_add(out, in, hl + (size_t)n + 2); return (long)(hl + (size_t)n + 2); }
    if (in[0] == '*') { if (out) evbuffer_add(out, in, hl); size_t off = hl; for (long long i = 0; i < n; i++) { long r = scan(in + off, len - off, out); if (r <= 0) return r; off += (size_t)r; } return (long)off; }
    if (out) evbuffer_add(out, in, hl);
    return (long)hl;
}
long resp3_convert(const resp3_shape *s, const char *in, size_t len, struct evbuffer *out)
{
    (void)s;
    long n = scan(in, len, NULL);
    if (n <= 0) return n;
    struct evbuffer *tmp = evbuffer_new();
    scan(in, len, tmp);
    evbuffer_add_buffer(out, tmp);
    evbuffer_free(tmp);
    return n;
}
long resp3_convert_exec(const resp3_shape *const *shapes, int n, const char *in, size_t len, struct evbuffer *out) { (void)shapes; (void)n; return resp3_convert(NULL, in, len, out); }
