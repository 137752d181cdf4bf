/* placement_tool: the owner of each key under util/placement.c, for
 * tests/integration/test_pool_placement.py.
 *
 *   placement_tool [--live 1,0,1...] DISTRIBUTION HASH TAG SERVER...
 *
 * DISTRIBUTION and HASH are twemproxy's names, TAG its hash_tag ("" or "-"
 * for none), each SERVER a line of its servers: list, "host:port:weight
 * [name]" or "/unix/path:weight [name]". Keys are read from stdin, one a
 * line (the '\n' is not part of the key); for each the index of its owner
 * among the SERVERs is printed, one a line, -1 when none is live.
 * Exit status 2 on a bad argument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/placement.h"

typedef struct server_spec {
    char *name;
    size_t name_len;
    unsigned weight;
} server_spec;

static int usage(const char *why)
{
    fprintf(stderr, "placement_tool: %s\n"
            "usage: placement_tool [--live 1,0,...] DISTRIBUTION HASH TAG 'host:port:weight [name]'...\n", why);
    return 2;
}

/* Reads a server line as twemproxy does, from its end: an optional " name",
 * then ":weight", then ":port" unless the address is a unix path. */
static int parse_server(const char *text, server_spec *out)
{
    char *s = strdup(text);
    if (!s)
        return -1;
    char *name = NULL;
    char *space = strrchr(s, ' ');
    if (space) {
        *space = '\0';
        name = space + 1;
    }
    char *colon = strrchr(s, ':');
    if (!colon)
        goto bad;
    *colon = '\0';
    char *end;
    long weight = strtol(colon + 1, &end, 10);
    if (*end || weight <= 0)
        goto bad;
    out->weight = (unsigned)weight;
    if (name) {
        out->name = strdup(name);
        out->name_len = strlen(name);
    } else {
        int port = 0;
        if (s[0] != '/') {
            char *pc = strrchr(s, ':');
            if (!pc)
                goto bad;
            *pc = '\0';
            port = (int)strtol(pc + 1, &end, 10);
            if (*end || port <= 0 || port > 65535)
                goto bad;
        }
        size_t len = placement_default_name(s, port, NULL, 0);
        out->name = malloc(len + 1);
        if (out->name)
            placement_default_name(s, port, out->name, len + 1);
        out->name_len = len;
    }
    free(s);
    return out->name ? 0 : -1;
bad:
    free(s);
    return -1;
}

int main(int argc, char **argv)
{
    int arg = 1;
    const char *live_list = NULL;
    if (argc > 2 && strcmp(argv[1], "--live") == 0) {
        live_list = argv[2];
        arg = 3;
    }
    if (argc - arg < 4)
        return usage("too few arguments");
    int distribution = placement_distribution_parse(argv[arg]);
    if (distribution < 0)
        return usage("unknown distribution");
    int hash = placement_hash_parse(argv[arg + 1]);
    if (hash < 0)
        return usage("unknown hash");
    const char *tag = strcmp(argv[arg + 2], "-") == 0 ? "" : argv[arg + 2];
    int n = argc - arg - 3;
    server_spec *specs = calloc((size_t)n, sizeof(*specs));
    placement_server *servers = calloc((size_t)n, sizeof(*servers));
    int *live = calloc((size_t)n, sizeof(*live));
    if (!specs || !servers || !live)
        return usage("out of memory");
    for (int i = 0; i < n; i++) {
        if (parse_server(argv[arg + 3 + i], &specs[i]) != 0)
            return usage("bad server");
        servers[i] = (placement_server){specs[i].name, specs[i].name_len, specs[i].weight};
        live[i] = 1;
    }
    placement *p = placement_new(distribution, hash, tag, servers, n);
    if (!p)
        return usage("placement refused the pool (bad tag, duplicate names?)");
    if (live_list) {
        const char *c = live_list;
        for (int i = 0; i < n; i++) {
            if (*c != '0' && *c != '1')
                return usage("--live wants one 0 or 1 per server, comma-separated");
            live[i] = *c == '1';
            c++;
            if (*c == ',')
                c++;
        }
        if (placement_set_live(p, live) != 0)
            return usage("out of memory");
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)got;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        printf("%d\n", placement_owner(p, line, len));
    }
    free(line);
    placement_free(p);
    for (int i = 0; i < n; i++)
        free(specs[i].name);
    free(specs);
    free(servers);
    free(live);
    return fflush(stdout) == 0 ? 0 : 1;
}
