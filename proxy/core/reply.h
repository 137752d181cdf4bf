/* RESP2 reply encoding into an evbuffer. */
#ifndef EVALPROXY_REPLY_H
#define EVALPROXY_REPLY_H

#include <stddef.h>

struct evbuffer;

void reply_status(struct evbuffer *b, const char *s);
/* Error text without '-' and CRLF; newlines inside are turned into spaces as Redis does. */
void reply_error(struct evbuffer *b, const char *err);
void reply_error_len(struct evbuffer *b, const char *err, size_t len);
/* Every error reply above counts in INFO's errorstats; this one is for an
 * error that is counted where it reaches the client. */
void reply_error_uncounted(struct evbuffer *b, const char *err);
void reply_errorf(struct evbuffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_integer(struct evbuffer *b, long long v);
void reply_bulk(struct evbuffer *b, const void *p, size_t len);
void reply_bulk_cstr(struct evbuffer *b, const char *s);
void reply_null_bulk(struct evbuffer *b);
void reply_null_array(struct evbuffer *b);
void reply_array(struct evbuffer *b, long long n);
void reply_ok(struct evbuffer *b);
/* DEBUG PROTOCOL type: Redis 7.0's sample reply of that type, in RESP2 or
 * RESP3; 0 when the type is unknown (nothing written). */
int reply_debug_protocol(struct evbuffer *b, const char *type, size_t len, int resp);

/* Not a reply: the buffer's bytes as a malloc'd NUL-terminated string (its
 * length in *len when len is not NULL); the buffer is freed. */
char *buffer_take_string(struct evbuffer *b, size_t *len);

#endif
