#include "util/args.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void free_args(char **argv, int argc)
{
    if (!argv) return;
    for (int i = 0; i < argc; i++) free(argv[i]);
    free(argv);
}

/* Splitting as redis.conf lines are split: spaces separate, double quotes
 * with C escapes, single quotes with \' only, a quote must end the word. */
char **split_args(const char *line, int *argc)
{
    const char *p = line;
    char **argv = NULL;
    int n = 0;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        size_t cap = 16, len = 0;
        char *cur = malloc(cap);
        if (!cur) abort();
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            char add = 0;
            int have = 0;
            if (inq) {
                if (!*p) goto err;
                if (p[0] == '\\' && p[1] == 'x' && hex_digit((unsigned char)p[2]) >= 0 && hex_digit((unsigned char)p[3]) >= 0) {
                    add = (char)(hex_digit((unsigned char)p[2]) * 16 + hex_digit((unsigned char)p[3]));
                    have = 1;
                    p += 3;
                } else if (p[0] == '\\' && p[1]) {
                    p++;
                    switch (*p) {
                    case 'n': add = '\n'; break;
                    case 'r': add = '\r'; break;
                    case 't': add = '\t'; break;
                    case 'b': add = '\b'; break;
                    case 'a': add = '\a'; break;
                    default: add = *p; break;
                    }
                    have = 1;
                } else if (*p == '"') {
                    if (p[1] && !isspace((unsigned char)p[1])) goto err;
                    done = 1;
                } else {
                    add = *p;
                    have = 1;
                }
            } else if (insq) {
                if (!*p) goto err;
                if (p[0] == '\\' && p[1] == '\'') {
                    p++;
                    add = '\'';
                    have = 1;
                } else if (*p == '\'') {
                    if (p[1] && !isspace((unsigned char)p[1])) goto err;
                    done = 1;
                } else {
                    add = *p;
                    have = 1;
                }
            } else {
                switch (*p) {
                case ' ': case '\n': case '\r': case '\t': case '\0':
                    done = 1;
                    break;
                case '"': inq = 1; break;
                case '\'': insq = 1; break;
                default: add = *p; have = 1; break;
                }
            }
            if (have) {
                if (len + 2 > cap) {
                    cap *= 2;
                    cur = realloc(cur, cap);
                    if (!cur) abort();
                }
                cur[len++] = add;
            }
            if (*p) p++;
        }
        cur[len] = '\0';
        argv = realloc(argv, sizeof(char *) * (size_t)(n + 1));
        if (!argv) abort();
        argv[n++] = cur;
        continue;
    err:
        free(cur);
        free_args(argv, n);
        *argc = 0;
        return NULL;
    }
    if (!argv) {
        argv = malloc(sizeof(char *));
        if (!argv) abort();
    }
    *argc = n;
    return argv;
}

char **args_copy(int argc, char *const *argv, const size_t *argvlen, size_t **lens_out)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += argvlen[i] + 1;
    size_t head = (size_t)argc * (sizeof(char *) + sizeof(size_t));
    char *block = malloc(head + bytes + 1);
    if (!block) abort();
    char **copy = (char **)block;
    size_t *lens = (size_t *)(block + (size_t)argc * sizeof(char *));
    char *data = block + head;
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i], argvlen[i]);
        data[argvlen[i]] = '\0';
        copy[i] = data;
        lens[i] = argvlen[i];
        data += argvlen[i] + 1;
    }
    *lens_out = lens;
    return copy;
}
