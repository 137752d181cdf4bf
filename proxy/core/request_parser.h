/* Incremental RESP request parser: multibulk and inline commands, with
 * Redis 7.0's limits and protocol error texts. Pure: no sockets, no libevent. */
#ifndef EVALPROXY_REQUEST_PARSER_H
#define EVALPROXY_REQUEST_PARSER_H

#include <stddef.h>

#define PROTO_INLINE_MAX_SIZE (1024 * 64) /* inline or count line still open at the end of a read */
#define PROTO_UNAUTH_MAX_MULTIBULK 10     /* multibulk count before AUTH */
#define PROTO_UNAUTH_MAX_BULK 16384       /* bulk length before AUTH */

enum request_parse_result {
    REQUEST_PARSE_MORE = 0,  /* every byte given was consumed; no complete command */
    REQUEST_PARSE_DONE = 1,  /* a command is ready in argc/argv/argvlen */
    REQUEST_PARSE_ERROR = 2, /* protocol error: `error` holds Redis's text */
};

typedef struct request_parser {
    /* Settings the owner may change between calls. */
    long long proto_max_bulk_len; /* Redis default 512 MB */
    int authenticated;            /* 0 applies Redis's unauthenticated limits */

    /* The command most recently completed (valid after REQUEST_PARSE_DONE until
     * the next request_parser_feed() call). Each argv[i] is NUL-terminated (the
     * NUL is not counted in argvlen[i]) and may contain NUL bytes. */
    int argc;
    char **argv;
    size_t *argvlen;
    int is_inline; /* the command arrived as an inline line */

    /* After REQUEST_PARSE_ERROR: the error text without '-' and CRLF, e.g.
     * "ERR Protocol error: invalid multibulk length". */
    char error[128];

    /* Private state. */
    int state;
    long long multibulk_left; /* arguments still expected */
    long long bulk_len;       /* length of the bulk being read, -1 if none */
    size_t bulk_have;         /* bytes of that bulk already stored */
    char *line;               /* partial inline line */
    size_t line_len, line_cap;
    char *arena;              /* argument bytes of the current command */
    size_t arena_len, arena_cap;
    size_t *offsets;          /* argument start offsets into arena */
    int argv_cap;
    size_t line_total;        /* bytes of the current line seen so far (64 KB rule) */
    char hdr[24];             /* start of a count/bulk-length line; longer is invalid anyway */
    int line_kind;            /* which line is open, for the "too big" text */
    int skip_left;            /* separator bytes still to skip (not checked, as in Redis) */
} request_parser;

void request_parser_init(request_parser *p);
void request_parser_free(request_parser *p);

/* Feed `len` bytes. Sets *consumed to the bytes used. Returns DONE as soon as
 * one command is complete (the caller feeds the rest afterwards), MORE when all
 * input was consumed without completing a command, ERROR on a protocol error
 * (after which the connection must be closed, as Redis does). Empty inline
 * lines and multibulks of count <= 0 are skipped, as in Redis. Each call
 * stands for one read: a line left open at its end with more than
 * PROTO_INLINE_MAX_SIZE bytes is an error, as Redis checks after a read. */
int request_parser_feed(request_parser *p, const char *buf, size_t len, size_t *consumed);

/* Bytes currently buffered inside the parser for an incomplete command
 * (counted against client-query-buffer-limit by the owner). */
size_t request_parser_pending(const request_parser *p);

#endif
