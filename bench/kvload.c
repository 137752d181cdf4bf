/* kvload: one load generator for both protocols, so that evalproxy in front
 * of memcached (RESP) and twemproxy in front of memcached (memcache text
 * protocol) are driven alike: the same connections, pipeline depth, keys,
 * value size and get/set mix; only the bytes on the wire differ.
 *
 *   kvload -p PORT -P resp|mc [-c CONNS] [-d DEPTH] [-t SECONDS] [-r RANGE]
 *          [-s SETS_PER_10]
 *
 * Each connection sends DEPTH requests at once (GET, or SET of a 3-byte
 * value for SETS_PER_10 in 10 of them, keys kv:0..RANGE-1 at random) and
 * sends the next batch once all their replies are read. Prints one line:
 * ops=N seconds=S ops_per_sec=R avg_ms=L errors=E (L: the mean time from a
 * batch's send to its last reply). Exits 1 if a connection fails or a reply
 * is an error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

typedef struct conn {
    int fd;
    char in[BUF];
    size_t inlen;
    int owed;    /* replies of the batch not read yet */
    double sent; /* when the batch went */
} conn;

static int resp = 1, depth = 1, range = 10000, sets_per_10 = 1;
static unsigned long long ops, errors, batches;
static double lat_sum;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_batch(conn *c)
{
    char out[BUF];
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "kv:%d", rand() % range);
        int set = rand() % 10 < sets_per_10;
        if (resp && set)
            n += (size_t)snprintf(out + n, sizeof(out) - n, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n", kl, key);
        else if (resp)
            n += (size_t)snprintf(out + n, sizeof(out) - n, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, key);
        else if (set)
            n += (size_t)snprintf(out + n, sizeof(out) - n, "set %s 0 0 3\r\nxxx\r\n", key);
        else
            n += (size_t)snprintf(out + n, sizeof(out) - n, "get %s\r\n", key);
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(c->fd, out + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) { /* the batch is small: wait for room */
            usleep(50);
            continue;
        }
        if (w <= 0) die("write");
        off += (size_t)w;
    }
    c->owed = depth;
    c->sent = now();
}

/* Length of the first whole reply in p[0..len), 0 if not all there yet. */
static size_t reply_len(const char *p, size_t len, int *is_error)
{
    const char *eol = memmem(p, len, "\r\n", 2);
    if (!eol) return 0;
    size_t line = (size_t)(eol - p) + 2;
    *is_error = 0;
    if (resp) {
        if (p[0] == '-') *is_error = 1;
        if (p[0] != '$') return line;
        long n = strtol(p + 1, NULL, 10);
        if (n < 0) return line;
        return len >= line + (size_t)n + 2 ? line + (size_t)n + 2 : 0;
    }
    if (!strncmp(p, "END\r\n", 5) || !strncmp(p, "STORED\r\n", 8) || !strncmp(p, "NOT_STORED\r\n", 12)) return line;
    if (strncmp(p, "VALUE ", 6)) {
        *is_error = 1; /* ERROR, CLIENT_ERROR, SERVER_ERROR */
        return line;
    }
    /* VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n */
    const char *sp = memrchr(p, ' ', (size_t)(eol - p));
    long n = sp ? strtol(sp + 1, NULL, 10) : -1;
    if (n < 0) {
        *is_error = 1;
        return line;
    }
    size_t whole = line + (size_t)n + 2 + 5;
    return len >= whole ? whole : 0;
}

int main(int argc, char **argv)
{
    int port = 0, conns = 50;
    double seconds = 5;
    int opt;
    while ((opt = getopt(argc, argv, "p:P:c:d:t:r:s:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': resp = strcmp(optarg, "mc") != 0; break;
        case 'c': conns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'r': range = atoi(optarg); break;
        case 's': sets_per_10 = atoi(optarg); break;
        default: fprintf(stderr, "usage: kvload -p PORT -P resp|mc [-c N] [-d DEPTH] [-t S] [-r N] [-s N]\n"); return 2;
        }
    }
    if (!port || conns < 1 || depth < 1 || depth > 256 || range < 1) {
        fprintf(stderr, "kvload: bad arguments\n");
        return 2;
    }
    srand((unsigned)getpid());
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    conn *cs = calloc((size_t)conns, sizeof(*cs));
    if (!cs) die("calloc");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    }
    double start = now(), end = start + seconds;
    for (int i = 0; i < conns; i++) send_batch(&cs[i]);
    struct epoll_event evs[256];
    int running = conns;
    while (running > 0) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        double t = now();
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (r <= 0) {
                fprintf(stderr, "kvload: connection closed by the server\n");
                return 1;
            }
            c->inlen += (size_t)r;
            size_t off = 0;
            for (;;) {
                int err;
                size_t l = reply_len(c->in + off, c->inlen - off, &err);
                if (!l) break;
                if (err) errors++;
                off += l;
                ops++;
                c->owed--;
            }
            memmove(c->in, c->in + off, c->inlen - off);
            c->inlen -= off;
            if (c->owed > 0) continue;
            if (c->owed < 0) {
                fprintf(stderr, "kvload: more replies than requests\n");
                return 1;
            }
            lat_sum += t - c->sent;
            batches++;
            if (t < end) send_batch(c);
            else {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                running--;
            }
        }
    }
    double took = now() - start;
    printf("ops=%llu seconds=%.3f ops_per_sec=%.0f avg_ms=%.3f errors=%llu\n", ops, took, (double)ops / took,
           batches ? lat_sum / (double)batches * 1000.0 : 0.0, errors);
    return errors ? 1 : 0;
}
