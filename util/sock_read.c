/* A read takes what the socket has: into free space at the end of the input
 * buffer (READ_RESERVE: a chain as small as libevent gives a small read),
 * and what does not fit into a shared overflow area, added after; one that
 * fills both reads again, up to the caller's max. So no big chain is
 * allocated per small read (each is a fresh page under AddressSanitizer's
 * quarantine), and no FIONREAD is needed to size the read. */
#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "util/sock_read.h"

#define READ_RESERVE 512
#define READ_OVERFLOW 65536

size_t sock_read(struct evbuffer *in, int fd, size_t max, int *end)
{
    static char overflow[READ_OVERFLOW];
    size_t total = 0;
    *end = SOCK_READ_MORE;
    for (;;) {
        struct evbuffer_iovec v[2];
        struct iovec iov[3];
        int nv = evbuffer_reserve_space(in, READ_RESERVE, v, 2);
        if (nv <= 0) abort();
        size_t room = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            room += v[i].iov_len;
        }
        iov[nv].iov_base = overflow;
        iov[nv].iov_len = sizeof(overflow);
        ssize_t n = readv(fd, iov, nv + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int saved = errno;
            evbuffer_commit_space(in, v, 0);
            errno = saved;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (!total) *end = n == 0 ? SOCK_READ_EOF : SOCK_READ_ERROR;
            break;
        }
        size_t left = (size_t)n;
        for (int i = 0; i < nv; i++) {
            if (v[i].iov_len > left) v[i].iov_len = left;
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(in, v, nv);
        if (left) evbuffer_add(in, overflow, left);
        total += (size_t)n;
        if ((size_t)n < room + sizeof(overflow) || total >= max) break;
    }
    return total;
}
