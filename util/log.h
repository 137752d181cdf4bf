/* Logging in redis-server's format and levels. */
#ifndef EVALPROXY_LOG_H
#define EVALPROXY_LOG_H

#include <stddef.h>

enum log_level { LL_DEBUG = 0, LL_VERBOSE, LL_NOTICE, LL_WARNING, LL_NOTHING };

void log_set_level(int level);
int log_get_level(void);
/* Opens `path` for appending ("" means stderr). Returns 0, or -1 with errno set. */
int log_set_file(const char *path);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raw message (binary-safe text from redis.log). */
void log_raw(int level, const char *msg, size_t len);

#define log_debug(...) do { if (log_get_level() <= LL_DEBUG) log_write(LL_DEBUG, __VA_ARGS__); } while (0)
#define log_verbose(...) do { if (log_get_level() <= LL_VERBOSE) log_write(LL_VERBOSE, __VA_ARGS__); } while (0)
#define log_notice(...) log_write(LL_NOTICE, __VA_ARGS__)
#define log_warning(...) log_write(LL_WARNING, __VA_ARGS__)

#endif
