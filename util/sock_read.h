/* Reading a non-blocking socket into an evbuffer without libevent's
 * FIONREAD before each read (one system call more per read). */
#ifndef EVALPROXY_SOCK_READ_H
#define EVALPROXY_SOCK_READ_H

#include <stddef.h>

struct evbuffer;

enum { SOCK_READ_MORE = 0, SOCK_READ_EOF = 1, SOCK_READ_ERROR = 2 };

/* Reads what fd holds, up to about max bytes, into the end of in. Returns
 * the bytes read; when none were, *end says why: SOCK_READ_MORE (nothing
 * there yet), SOCK_READ_EOF or SOCK_READ_ERROR (errno set). An end met
 * after some data is left for the next read to see. */
size_t sock_read(struct evbuffer *in, int fd, size_t max, int *end);

#endif
