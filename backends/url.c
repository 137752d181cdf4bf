/* Backend URLs: redis://, rediss://, memcached://, memcacheds://, unix paths. */
#include "backends/backend.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *dup_range(const char *s, size_t len, int percent_decode)
{
    char *d = malloc(len + 1);
    if (!d) abort();
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (percent_decode && s[i] == '%' && i + 2 < len + 0 && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            d[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = '\0';
    return d;
}

void backend_url_free(backend_url *u)
{
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof(*u));
}

static int parse_db(const char *s, int *db)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000) return -1;
    *db = (int)v;
    return 0;
}

int backend_url_parse(const char *url, backend_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) >= sizeof(u->scheme)) {
        snprintf(err, errlen, "backend URL must look like redis://host:port[/db], rediss://host:port[/db] or unix:///path");
        return -1;
    }
    memcpy(u->scheme, url, (size_t)(sep - url));
    u->scheme[sep - url] = '\0';
    for (char *p = u->scheme; *p; p++) *p = (char)tolower((unsigned char)*p);
    const char *rest = sep + 3;

    if (!strcmp(u->scheme, "unix")) {
        const char *q = strchr(rest, '?');
        size_t plen = q ? (size_t)(q - rest) : strlen(rest);
        if (plen == 0 || rest[0] != '/') {
            snprintf(err, errlen, "unix backend URL needs an absolute path: unix:///path/to/socket");
            return -1;
        }
        u->host = dup_range(rest, plen, 0);
        if (q && (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &u->db) != 0)) {
            snprintf(err, errlen, "unix backend URL: only ?db=N is understood after the path");
            backend_url_free(u);
            return -1;
        }
        return 0;
    }
    int memcached = !strcmp(u->scheme, "memcached") || !strcmp(u->scheme, "memcacheds");
    if (strcmp(u->scheme, "redis") != 0 && strcmp(u->scheme, "rediss") != 0 && !memcached) {
        snprintf(err, errlen,
                 "unsupported backend scheme '%s' (expected redis://, rediss://, unix://, memcached:// or "
                 "memcacheds://)",
                 u->scheme);
        return -1;
    }
    u->tls = !strcmp(u->scheme, "rediss") || !strcmp(u->scheme, "memcacheds");
    const char *at = strrchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon) {
            if (colon > rest) u->user = dup_range(rest, (size_t)(colon - rest), 1);
            u->password = dup_range(colon + 1, (size_t)(at - colon - 1), 1);
        } else {
            u->password = dup_range(rest, (size_t)(at - rest), 1);
        }
        rest = at + 1;
    }
    const char *slash = strchr(rest, '/');
    size_t hplen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *hp = rest, *portp = NULL;
    size_t hlen;
    if (hplen && hp[0] == '[') {
        const char *close = memchr(hp, ']', hplen);
        if (!close) goto bad;
        u->host = dup_range(hp + 1, (size_t)(close - hp - 1), 0);
        hlen = 0;
        if ((size_t)(close - hp) + 1 < hplen) {
            if (close[1] != ':') goto bad;
            portp = close + 2;
        }
    } else {
        const char *colon = memchr(hp, ':', hplen);
        hlen = colon ? (size_t)(colon - hp) : hplen;
        if (hlen == 0) goto bad;
        u->host = dup_range(hp, hlen, 0);
        if (colon) portp = colon + 1;
    }
    u->port = memcached ? 11211 : 6379;
    if (portp) {
        size_t plen = (size_t)(rest + hplen - portp);
        char buf[16];
        if (plen == 0 || plen >= sizeof(buf)) goto bad;
        memcpy(buf, portp, plen);
        buf[plen] = '\0';
        char *end;
        long p = strtol(buf, &end, 10);
        if (*end || p <= 0 || p > 65535) goto bad;
        u->port = (int)p;
    }
    if (slash && slash[1] && parse_db(slash + 1, &u->db) != 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "invalid backend URL (expected %s://[user:password@]host:port[/db])", u->scheme);
    backend_url_free(u);
    return -1;
}
