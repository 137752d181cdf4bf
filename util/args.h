/* Splitting a line into arguments as redis.conf lines are split. */
#ifndef EVALPROXY_ARGS_H
#define EVALPROXY_ARGS_H

#include <stddef.h>

/* Splits a line into arguments like Redis's sdssplitargs (quotes, escapes).
 * Returns an argv allocated with malloc (free with free_args) or NULL on
 * unbalanced quotes. */
char **split_args(const char *line, int *argc);
void free_args(char **argv, int argc);

/* A copy of a command line in one allocation: the argv array, then the
 * lengths (*lens_out), then the bytes, each argument NUL-terminated. One
 * free(argv) frees it all. Aborts when memory runs out. */
char **args_copy(int argc, char *const *argv, const size_t *argvlen, size_t **lens_out);

#endif
