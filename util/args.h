/* Splitting a line into arguments as redis.conf lines are split. */
#ifndef EVALPROXY_ARGS_H
#define EVALPROXY_ARGS_H

/* Splits a line into arguments like Redis's sdssplitargs (quotes, escapes).
 * Returns an argv allocated with malloc (free with free_args) or NULL on
 * unbalanced quotes. */
char **split_args(const char *line, int *argc);
void free_args(char **argv, int argc);

#endif
