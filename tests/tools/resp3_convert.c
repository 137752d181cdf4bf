/* resp3_convert: converts RESP2 replies to RESP3 with proxy/core/resp3.c.
 *
 *   resp3_convert CMD [ARG...]          one RESP2 reply on stdin -> RESP3 on stdout
 *   resp3_convert --exec CMD [ARG...] [-- CMD [ARG...]]...
 *                                       the reply to EXEC of the queued commands
 *   resp3_convert --batch               records on stdin, each a request (a RESP
 *                                       array of bulks: "cmd" and the command, or
 *                                       "exec" and the queued commands separated
 *                                       by "--") followed by its RESP2 reply; the
 *                                       RESP3 replies are written one after another
 *
 * Exit status 2 when a reply is incomplete or not RESP2. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/core/command_table.h"
#include "proxy/core/resp3.h"

static const resp3_shape *shape_of(int argc, char **argv, size_t *argvlen)
{
    int miss = 0;
    const command_def *d = argc > 0 ? command_resolve(argc, argv, argvlen, &miss) : NULL;
    if (!d)
        return resp3_shape_for(NULL, argc, argv, argvlen);
    return resp3_shape_for(d->name, argc, argv, argvlen);
}

/* Shapes of the commands in argv separated by "--". */
static int exec_shapes(int argc, char **argv, size_t *argvlen, const resp3_shape **shapes)
{
    int n = 0, start = 0;
    for (int i = 0; i <= argc; i++) {
        if (i == argc || (argvlen[i] == 2 && memcmp(argv[i], "--", 2) == 0)) {
            if (i > start)
                shapes[n++] = shape_of(i - start, argv + start, argvlen + start);
            start = i + 1;
        }
    }
    return n;
}

static long convert(int exec, int argc, char **argv, size_t *argvlen, const char *in, size_t len,
                    struct evbuffer *out)
{
    if (exec) {
        const resp3_shape **shapes = calloc((size_t)argc + 1, sizeof(*shapes));
        int n = exec_shapes(argc, argv, argvlen, shapes);
        long r = resp3_convert_exec(shapes, n, in, len, out);
        free(shapes);
        return r;
    }
    return resp3_convert(shape_of(argc, argv, argvlen), in, len, out);
}

static char *read_all(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    *len = n;
    return buf;
}

static void flush(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    fwrite(evbuffer_pullup(out, (ev_ssize_t)n), 1, n, stdout);
    evbuffer_drain(out, n);
}

/* One request of a batch: an array of bulks. Returns bytes taken or -1. */
static long parse_request(const char *p, size_t len, int *argc, char ***argv, size_t **argvlen)
{
    char *end;
    if (len < 4 || p[0] != '*')
        return -1;
    long k = strtol(p + 1, &end, 10);
    if (k < 1 || end[0] != '\r')
        return -1;
    size_t pos = (size_t)(end - p) + 2;
    *argv = calloc((size_t)k, sizeof(char *));
    *argvlen = calloc((size_t)k, sizeof(size_t));
    for (long i = 0; i < k; i++) {
        if (pos >= len || p[pos] != '$')
            return -1;
        long n = strtol(p + pos + 1, &end, 10);
        if (n < 0 || end[0] != '\r')
            return -1;
        pos = (size_t)(end - p) + 2;
        if (pos + (size_t)n + 2 > len)
            return -1;
        /* Arguments are binary: strndup would stop at a NUL inside one. */
        (*argv)[i] = malloc((size_t)n + 1);
        if (!(*argv)[i])
            return -1;
        memcpy((*argv)[i], p + pos, (size_t)n);
        (*argv)[i][n] = '\0';
        (*argvlen)[i] = (size_t)n;
        pos += (size_t)n + 2;
    }
    *argc = (int)k;
    return (long)pos;
}

static int batch(void)
{
    size_t len, pos = 0;
    char *in = read_all(&len);
    struct evbuffer *out = evbuffer_new();
    int status = 0;
    while (pos < len) {
        int argc = 0;
        char **argv = NULL;
        size_t *argvlen = NULL;
        long r = parse_request(in + pos, len - pos, &argc, &argv, &argvlen);
        if (r < 0) {
            status = 2;
            break;
        }
        pos += (size_t)r;
        int exec = argvlen[0] == 4 && memcmp(argv[0], "exec", 4) == 0;
        long c = convert(exec, argc - 1, argv + 1, argvlen + 1, in + pos, len - pos, out);
        for (int i = 0; i < argc; i++)
            free(argv[i]);
        free(argv);
        free(argvlen);
        if (c <= 0) {
            status = 2;
            break;
        }
        pos += (size_t)c;
        flush(out);
    }
    evbuffer_free(out);
    free(in);
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--batch") == 0)
        return batch();
    int exec = argc > 1 && strcmp(argv[1], "--exec") == 0;
    int first = exec ? 2 : 1;
    if (argc <= first) {
        fprintf(stderr, "usage: resp3_convert [--exec] CMD [ARG...] [-- CMD...] < reply\n"
                        "       resp3_convert --batch < records\n");
        return 1;
    }
    int n = argc - first;
    size_t *argvlen = calloc((size_t)n, sizeof(size_t));
    for (int i = 0; i < n; i++)
        argvlen[i] = strlen(argv[first + i]);
    size_t len;
    char *in = read_all(&len);
    struct evbuffer *out = evbuffer_new();
    long r = convert(exec, n, argv + first, argvlen, in, len, out);
    flush(out);
    evbuffer_free(out);
    free(in);
    free(argvlen);
    if (r <= 0) {
        fprintf(stderr, "resp3_convert: %s\n", r == 0 ? "incomplete reply" : "not a RESP2 reply");
        return 2;
    }
    return 0;
}
