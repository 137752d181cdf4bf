/* Client-side caching: the table of keys read by tracking clients (by
 * client id, as Redis keeps it: a client that left is skipped when its key
 * changes), the BCAST prefixes, and the invalidation messages. A key's
 * trackers are told once the write's reply has come from the store, so a
 * read that ran before the write and is answered after it is invalidated
 * too; a key is forgotten once told, until read again. */
#include "proxy/core/tracking.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "proxy/core/command_table.h"
#include "proxy/core/config.h"
#include "proxy/core/key_events.h"
#include "proxy/core/reply.h"
#include "util/strconv.h"

enum {
    T_BCAST = 1 << 0,
    T_OPTIN = 1 << 1,
    T_OPTOUT = 1 << 2,
    T_NOLOOP = 1 << 3,
    T_CACHING = 1 << 4, /* CLIENT CACHING yes/no for the next command */
    T_BROKEN = 1 << 5,  /* the redirect client went away */
};

struct client_tracking {
    unsigned flags;
    unsigned long long redirect;
    int nprefixes;
    char **prefixes; /* BCAST; sorted, as Redis lists them */
    size_t *prefixlens;
};

/* ---- who tracks ----------------------------------------------------------------- */

static client **trackers;
static int ntrackers, captrackers;

int tracking_active(void) { return ntrackers > 0; }

static client *tracker_by_id(unsigned long long id)
{
    for (int i = 0; i < ntrackers; i++)
        if (trackers[i]->id == id) return trackers[i];
    return NULL;
}

static client *client_by_id(unsigned long long id)
{
    for (client *o = server.clients; o; o = o->next)
        if (o->id == id && !(o->flags & CLIENT_CLOSING)) return o;
    return NULL;
}

/* ---- the keys read (default mode) -------------------------------------------------- */

typedef struct key_entry {
    struct key_entry *next;
    unsigned long long *ids;
    int nids, capids;
    size_t len;
    char key[];
} key_entry;

static key_entry **buckets;
static size_t nbuckets, nkeys;
static unsigned long long nitems; /* client ids over all keys (INFO's tracking_total_items) */

static size_t hash_key(const char *k, size_t len)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return (size_t)h;
}

static key_entry **key_slot(const char *k, size_t len)
{
    if (!nbuckets) return NULL;
    key_entry **p = &buckets[hash_key(k, len) & (nbuckets - 1)];
    while (*p && !((*p)->len == len && !memcmp((*p)->key, k, len))) p = &(*p)->next;
    return p;
}

static void keys_grow(void)
{
    size_t n = nbuckets ? nbuckets * 2 : 256;
    key_entry **nb = calloc(n, sizeof(*nb));
    if (!nb) abort();
    for (size_t i = 0; i < nbuckets; i++)
        for (key_entry *e = buckets[i], *next; e; e = next) {
            next = e->next;
            key_entry **s = &nb[hash_key(e->key, e->len) & (n - 1)];
            e->next = *s;
            *s = e;
        }
    free(buckets);
    buckets = nb;
    nbuckets = n;
}

static void remember_key(unsigned long long id, const char *k, size_t len)
{
    if (nkeys >= nbuckets) keys_grow();
    key_entry **p = key_slot(k, len), *e = *p;
    if (!e) {
        e = calloc(1, sizeof(*e) + len);
        if (!e) abort();
        e->len = len;
        memcpy(e->key, k, len);
        *p = e;
        nkeys++;
    }
    for (int i = 0; i < e->nids; i++)
        if (e->ids[i] == id) return;
    if (e->nids == e->capids) {
        e->capids = e->capids ? e->capids * 2 : 2;
        e->ids = realloc(e->ids, sizeof(*e->ids) * (size_t)e->capids);
        if (!e->ids) abort();
    }
    e->ids[e->nids++] = id;
    nitems++;
}

static void keys_clear(void)
{
    for (size_t i = 0; i < nbuckets; i++)
        while (buckets[i]) {
            key_entry *e = buckets[i];
            buckets[i] = e->next;
            free(e->ids);
            free(e);
        }
    nkeys = 0;
    nitems = 0;
}

/* ---- messages --------------------------------------------------------------------- */

/* Sends owner's invalidation of keys (a RESP array, or NULL: everything)
 * where Redis sends it: a RESP3 push to the client itself, or to its
 * redirect client (a push, or a __redis__:invalidate message to a RESP2
 * client with subscriptions). */
static void emit(client *owner, const char *keys, size_t len)
{
    client *dest = owner;
    int redirected = 0;
    struct client_tracking *t = owner->tracking;
    if (t->redirect) {
        dest = client_by_id(t->redirect);
        if (!dest) {
            t->flags |= T_BROKEN;
            if (owner->resp == 3) {
                struct evbuffer *out = client_push_buffer(owner);
                evbuffer_add_printf(out, ">2\r\n$21\r\ntracking-redir-broken\r\n:%llu\r\n", t->redirect);
                client_output_written(owner);
            }
            return;
        }
        redirected = 1;
    }
    struct evbuffer *out;
    if (dest->resp == 3) {
        out = client_push_buffer(dest);
        static const char head[] = ">2\r\n$10\r\ninvalidate\r\n";
        evbuffer_add(out, head, sizeof(head) - 1);
    } else if (redirected && client_subscribed(dest)) {
        out = client_push_buffer(dest);
        static const char head[] = "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";
        evbuffer_add(out, head, sizeof(head) - 1);
    } else {
        return;
    }
    if (keys) evbuffer_add(out, keys, len);
    else if (dest->resp == 3) evbuffer_add(out, "_\r\n", 3);
    else evbuffer_add(out, "$-1\r\n", 5);
    client_output_written(dest);
}

/* ---- BCAST ------------------------------------------------------------------------ */

typedef struct bcast_prefix {
    char *prefix;
    size_t len;
    unsigned long long *ids; /* clients with this prefix */
    int nids, capids;
    /* keys changed since the last flush, and who changed each (0: several) */
    struct evbuffer *pending;
    int npending;
    unsigned long long *writers;
    int capwriters;
} bcast_prefix;

static bcast_prefix *prefixes;
static int nprefixes, capprefixes;
static int flush_scheduled;

static bcast_prefix *prefix_find(const char *p, size_t len)
{
    for (int i = 0; i < nprefixes; i++)
        if (prefixes[i].len == len && !memcmp(prefixes[i].prefix, p, len)) return &prefixes[i];
    return NULL;
}

static void prefix_add_client(const char *p, size_t len, unsigned long long id)
{
    bcast_prefix *b = prefix_find(p, len);
    if (!b) {
        if (nprefixes == capprefixes) {
            capprefixes = capprefixes ? capprefixes * 2 : 4;
            prefixes = realloc(prefixes, sizeof(*prefixes) * (size_t)capprefixes);
            if (!prefixes) abort();
        }
        b = &prefixes[nprefixes++];
        memset(b, 0, sizeof(*b));
        b->prefix = malloc(len ? len : 1);
        if (!b->prefix || !(b->pending = evbuffer_new())) abort();
        memcpy(b->prefix, p, len);
        b->len = len;
    }
    if (b->nids == b->capids) {
        b->capids = b->capids ? b->capids * 2 : 2;
        b->ids = realloc(b->ids, sizeof(*b->ids) * (size_t)b->capids);
        if (!b->ids) abort();
    }
    b->ids[b->nids++] = id;
}

static void prefix_remove_client(unsigned long long id)
{
    for (int i = 0; i < nprefixes;) {
        bcast_prefix *b = &prefixes[i];
        for (int j = 0; j < b->nids;)
            if (b->ids[j] == id) b->ids[j] = b->ids[--b->nids];
            else j++;
        if (b->nids) {
            i++;
            continue;
        }
        free(b->prefix);
        free(b->ids);
        free(b->writers);
        evbuffer_free(b->pending);
        prefixes[i] = prefixes[--nprefixes];
    }
}

/* One message per prefix per client with the keys changed since the last
 * turn of the event loop, as Redis sends them before it sleeps. NOLOOP
 * leaves out the keys only that client changed. */
static void bcast_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush_scheduled = 0;
    for (int i = 0; i < nprefixes; i++) {
        bcast_prefix *b = &prefixes[i];
        if (!b->npending) continue;
        size_t len = evbuffer_get_length(b->pending);
        const char *all = (const char *)evbuffer_pullup(b->pending, -1);
        for (int j = 0; j < b->nids; j++) {
            client *t = tracker_by_id(b->ids[j]);
            if (!t) continue;
            struct evbuffer *msg = evbuffer_new();
            if (!msg) abort();
            int n = 0;
            const char *p = all;
            for (int k = 0; k < b->npending; k++) {
                /* each pending key is one bulk: $len\r\n...\r\n */
                long long klen = strtoll(p + 1, NULL, 10);
                const char *data = strchr(p, '\n') + 1;
                size_t whole = (size_t)(data - p) + (size_t)klen + 2;
                if (!((t->tracking->flags & T_NOLOOP) && b->writers[k] == t->id)) {
                    evbuffer_add(msg, p, whole);
                    n++;
                }
                p += whole;
            }
            if (n) {
                char head[32];
                int hl = snprintf(head, sizeof(head), "*%d\r\n", n);
                evbuffer_prepend(msg, head, (size_t)hl);
                emit(t, (const char *)evbuffer_pullup(msg, -1), evbuffer_get_length(msg));
            }
            evbuffer_free(msg);
        }
        evbuffer_drain(b->pending, len);
        b->npending = 0;
    }
}

static void bcast_key(const char *k, size_t len, unsigned long long writer)
{
    for (int i = 0; i < nprefixes; i++) {
        bcast_prefix *b = &prefixes[i];
        if (b->len > len || memcmp(b->prefix, k, b->len)) continue;
        /* A key already pending once this turn is not repeated. */
        const char *p = (const char *)evbuffer_pullup(b->pending, -1);
        int found = -1;
        for (int j = 0; j < b->npending && found < 0; j++) {
            long long klen = strtoll(p + 1, NULL, 10);
            const char *data = strchr(p, '\n') + 1;
            if ((size_t)klen == len && !memcmp(data, k, len)) found = j;
            p = data + klen + 2;
        }
        if (found >= 0) {
            if (b->writers[found] != writer) b->writers[found] = 0;
            continue;
        }
        if (b->npending == b->capwriters) {
            b->capwriters = b->capwriters ? b->capwriters * 2 : 8;
            b->writers = realloc(b->writers, sizeof(*b->writers) * (size_t)b->capwriters);
            if (!b->writers) abort();
        }
        b->writers[b->npending++] = writer;
        reply_bulk(b->pending, k, len);
        if (!flush_scheduled) {
            struct timeval zero = {0, 0};
            flush_scheduled = event_base_once(server.base, -1, EV_TIMEOUT, bcast_flush, NULL, &zero) == 0;
        }
    }
}

/* ---- invalidation ----------------------------------------------------------------- */

static void invalidate_key_for(const char *k, size_t len, unsigned long long writer, int bcast);

/* tracking-table-max-keys: past it, keys are forgotten and their trackers
 * told (as if the key changed), a bounded number per call, as Redis does
 * from its event loop. Where the scan stopped, it goes on next time. */
void tracking_limit(void)
{
    static size_t cursor;
    long long max = config.tracking_table_max_keys;
    if (!max || (long long)nkeys <= max || !nbuckets) return;
    for (int budget = 1000; budget > 0 && (long long)nkeys > max; budget--) {
        cursor = (cursor + 1) % nbuckets;
        key_entry *e = buckets[cursor];
        if (!e) continue;
        /* The entry goes with the invalidation: its name is copied first. */
        char *k = malloc(e->len + 1);
        if (!k) abort();
        memcpy(k, e->key, e->len);
        size_t len = e->len;
        invalidate_key_for(k, len, 0, 0); /* BCAST clients are not told: the key did not change */
        free(k);
    }
}

static void invalidate_key_for(const char *k, size_t len, unsigned long long writer, int bcast)
{
    key_entry **p = key_slot(k, len);
    if (p && *p) {
        key_entry *e = *p;
        *p = e->next;
        nkeys--;
        nitems -= (unsigned long long)e->nids;
        struct evbuffer *msg = evbuffer_new();
        if (!msg) abort();
        reply_array(msg, 1);
        reply_bulk(msg, k, len);
        const char *bytes = (const char *)evbuffer_pullup(msg, -1);
        size_t blen = evbuffer_get_length(msg);
        for (int i = 0; i < e->nids; i++) {
            client *t = tracker_by_id(e->ids[i]);
            if (!t || (t->tracking->flags & T_BCAST)) continue;
            if ((t->tracking->flags & T_NOLOOP) && t->id == writer) continue;
            emit(t, bytes, blen);
        }
        evbuffer_free(msg);
        free(e->ids);
        free(e);
    }
    if (bcast && nprefixes) bcast_key(k, len, writer);
}

static void invalidate_key(const char *k, size_t len, unsigned long long writer) { invalidate_key_for(k, len, writer, 1); }

void tracking_key_removed(const char *key, size_t len) { invalidate_key(key, len, 0); }

void tracking_flushed(void)
{
    if (!ntrackers) return;
    keys_clear();
    for (int i = 0; i < nprefixes; i++) {
        evbuffer_drain(prefixes[i].pending, evbuffer_get_length(prefixes[i].pending));
        prefixes[i].npending = 0;
    }
    for (int i = 0; i < ntrackers; i++) emit(trackers[i], NULL, 0);
}

struct tracked_write {
    unsigned long long writer;
    int flush;
    int nkeys;
    size_t *lens;
    char **keys;
};

tracked_write *tracking_write_begin(unsigned long long writer, const command_def *cmd, int argc, char **argv,
                                    size_t *argvlen)
{
    if (!ntrackers || !cmd || !(cmd->flags & CMD_WRITE)) return NULL;
    int flush = !strcmp(cmd->name, "flushall") || !strcmp(cmd->name, "flushdb") || !strcmp(cmd->name, "swapdb");
    int idx[64];
    int n = 0;
    if (!flush && (cmd->key_spec_count || cmd->getkeys)) n = command_get_keys(cmd, argc, argv, argvlen, idx, NULL, 64);
    if (n < 0) n = 0;
    if (n > 64) n = 64;
    if (!flush && !n) return NULL;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += argvlen[idx[i]];
    tracked_write *tw = malloc(sizeof(*tw) + (size_t)n * (sizeof(char *) + sizeof(size_t)) + bytes + 1);
    if (!tw) abort();
    tw->writer = writer;
    tw->flush = flush;
    tw->nkeys = n;
    tw->keys = (char **)(tw + 1);
    tw->lens = (size_t *)(tw->keys + n);
    char *data = (char *)(tw->lens + n);
    for (int i = 0; i < n; i++) {
        memcpy(data, argv[idx[i]], argvlen[idx[i]]);
        tw->keys[i] = data;
        tw->lens[i] = argvlen[idx[i]];
        data += tw->lens[i];
    }
    return tw;
}

void tracking_write_end(tracked_write *tw, int unchanged)
{
    if (!tw) return;
    if (!unchanged && ntrackers) {
        if (tw->flush) tracking_flushed();
        for (int i = 0; i < tw->nkeys; i++) invalidate_key(tw->keys[i], tw->lens[i], tw->writer);
    }
    free(tw);
}

/* ---- reads ------------------------------------------------------------------------ */

void tracking_read(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct client_tracking *t = c ? c->tracking : NULL;
    if (!t || (t->flags & T_BCAST) || !cmd || !(cmd->flags & CMD_READONLY)) return;
    if ((t->flags & T_OPTIN) && !(t->flags & T_CACHING)) return;
    if ((t->flags & T_OPTOUT) && (t->flags & T_CACHING)) return;
    if (!cmd->key_spec_count && !cmd->getkeys) return;
    int idx[64];
    int n = command_get_keys(cmd, argc, argv, argvlen, idx, NULL, 64);
    for (int i = 0; i < n && i < 64; i++) remember_key(c->id, argv[idx[i]], argvlen[idx[i]]);
}

void tracking_read_declared(client *c, const command_def *read, int nkeys, char **keys, size_t *keylens)
{
    struct client_tracking *t = c ? c->tracking : NULL;
    if (!t || (t->flags & T_BCAST) || !read || !(read->flags & CMD_READONLY)) return;
    if ((t->flags & T_OPTIN) && !(t->flags & T_CACHING)) return;
    if ((t->flags & T_OPTOUT) && (t->flags & T_CACHING)) return;
    for (int i = 0; i < nkeys; i++) remember_key(c->id, keys[i], keylens[i]);
}

void tracking_command_done(client *c)
{
    struct client_tracking *t = c->tracking;
    if (!t || !(t->flags & T_CACHING) || c->multi) return;
    /* Any CLIENT subcommand keeps it, as in Redis. */
    if (c->last_cmd && !strncmp(c->last_cmd, "client|", 7)) return;
    t->flags &= ~T_CACHING;
}

/* ---- on, off ---------------------------------------------------------------------- */

static void tracking_off(client *c)
{
    struct client_tracking *t = c->tracking;
    if (!t) return;
    if (t->flags & T_BCAST) prefix_remove_client(c->id);
    for (int i = 0; i < t->nprefixes; i++) free(t->prefixes[i]);
    free(t->prefixes);
    free(t->prefixlens);
    free(t);
    c->tracking = NULL;
    for (int i = 0; i < ntrackers; i++)
        if (trackers[i] == c) {
            trackers[i] = trackers[--ntrackers];
            break;
        }
    if (!ntrackers) keys_clear(); /* nobody left to tell */
}

void tracking_client_gone(client *c) { tracking_off(c); }

static int overlaps(const char *a, size_t al, const char *b, size_t bl)
{
    return !memcmp(a, b, al < bl ? al : bl);
}

static void add_prefix(struct client_tracking *t, const char *p, size_t len)
{
    int at = 0;
    while (at < t->nprefixes) {
        size_t l = t->prefixlens[at] < len ? t->prefixlens[at] : len;
        int d = memcmp(t->prefixes[at], p, l);
        if (d > 0 || (d == 0 && t->prefixlens[at] > len)) break;
        at++;
    }
    t->prefixes = realloc(t->prefixes, sizeof(char *) * (size_t)(t->nprefixes + 1));
    t->prefixlens = realloc(t->prefixlens, sizeof(size_t) * (size_t)(t->nprefixes + 1));
    if (!t->prefixes || !t->prefixlens) abort();
    memmove(t->prefixes + at + 1, t->prefixes + at, sizeof(char *) * (size_t)(t->nprefixes - at));
    memmove(t->prefixlens + at + 1, t->prefixlens + at, sizeof(size_t) * (size_t)(t->nprefixes - at));
    t->prefixes[at] = malloc(len + 1);
    if (!t->prefixes[at]) abort();
    memcpy(t->prefixes[at], p, len);
    t->prefixes[at][len] = '\0';
    t->prefixlens[at] = len;
    t->nprefixes++;
}

static int word(const char *s, size_t len, const char *w) { return strlen(w) == len && !strncasecmp(s, w, len); }

static void tracking_subcommand(client *c, int argc, char **argv, size_t *argvlen, struct evbuffer *out)
{
    unsigned options = 0;
    long long redir = 0;
    int nprefix = 0;
    char **pfx = calloc((size_t)argc, sizeof(char *));
    size_t *pfxlen = calloc((size_t)argc, sizeof(size_t));
    if (!pfx || !pfxlen) abort();
    for (int j = 3; j < argc; j++) {
        int more = argc - 1 - j;
        if (word(argv[j], argvlen[j], "redirect") && more) {
            j++;
            if (redir != 0) {
                reply_error(out, "ERR A client can only redirect to a single other client");
                goto done;
            }
            if (!string_to_ll(argv[j], argvlen[j], &redir)) {
                reply_error(out, "ERR value is not an integer or out of range");
                goto done;
            }
            if (!client_by_id((unsigned long long)redir)) {
                reply_error(out, "ERR The client ID you want redirect to does not exist");
                goto done;
            }
        } else if (word(argv[j], argvlen[j], "bcast")) {
            options |= T_BCAST;
        } else if (word(argv[j], argvlen[j], "optin")) {
            options |= T_OPTIN;
        } else if (word(argv[j], argvlen[j], "optout")) {
            options |= T_OPTOUT;
        } else if (word(argv[j], argvlen[j], "noloop")) {
            options |= T_NOLOOP;
        } else if (word(argv[j], argvlen[j], "prefix") && more) {
            j++;
            pfx[nprefix] = argv[j];
            pfxlen[nprefix++] = argvlen[j];
        } else {
            reply_error(out, "ERR syntax error");
            goto done;
        }
    }
    if (word(argv[2], argvlen[2], "on")) {
        struct client_tracking *t = c->tracking;
        if (!(options & T_BCAST) && nprefix) {
            reply_error(out, "ERR PREFIX option requires BCAST mode to be enabled");
            goto done;
        }
        if (t && !!(t->flags & T_BCAST) != !!(options & T_BCAST)) {
            reply_error(out, "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and "
                             "then re-enabling it with a different mode.");
            goto done;
        }
        if ((options & T_BCAST) && (options & (T_OPTIN | T_OPTOUT))) {
            reply_error(out, "ERR OPTIN and OPTOUT are not compatible with BCAST");
            goto done;
        }
        if ((options & T_OPTIN) && (options & T_OPTOUT)) {
            reply_error(out, "ERR You can't specify both OPTIN mode and OPTOUT mode");
            goto done;
        }
        if (t && (((options & T_OPTIN) && (t->flags & T_OPTOUT)) || ((options & T_OPTOUT) && (t->flags & T_OPTIN)))) {
            reply_error(out, "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and "
                             "then re-enabling it with a different mode.");
            goto done;
        }
        if (options & T_BCAST) {
            for (int i = 0; i < nprefix; i++) {
                for (int k = 0; t && k < t->nprefixes; k++)
                    if (overlaps(t->prefixes[k], t->prefixlens[k], pfx[i], pfxlen[i])) {
                        reply_errorf(out,
                                     "ERR Prefix '%.*s' overlaps with an existing prefix '%s'. Prefixes for a "
                                     "single client must not overlap.",
                                     (int)pfxlen[i], pfx[i], t->prefixes[k]);
                        goto done;
                    }
                for (int k = i + 1; k < nprefix; k++)
                    if (overlaps(pfx[i], pfxlen[i], pfx[k], pfxlen[k])) {
                        reply_errorf(out,
                                     "ERR Prefix '%.*s' overlaps with another provided prefix '%.*s'. Prefixes "
                                     "for a single client must not overlap.",
                                     (int)pfxlen[i], pfx[i], (int)pfxlen[k], pfx[k]);
                        goto done;
                    }
            }
        }
        if (!t) {
            t = c->tracking = calloc(1, sizeof(*t));
            if (!t) abort();
            if (ntrackers == captrackers) {
                captrackers = captrackers ? captrackers * 2 : 8;
                trackers = realloc(trackers, sizeof(*trackers) * (size_t)captrackers);
                if (!trackers) abort();
            }
            trackers[ntrackers++] = c;
            key_events_want(tracking_key_removed);
        }
        t->flags &= ~(T_BROKEN | T_BCAST | T_OPTIN | T_OPTOUT | T_NOLOOP);
        t->redirect = (unsigned long long)redir;
        if (options & T_BCAST) {
            t->flags |= T_BCAST;
            if (!nprefix && !t->nprefixes) {
                add_prefix(t, "", 0);
                prefix_add_client("", 0, c->id);
            }
            for (int i = 0; i < nprefix; i++) {
                add_prefix(t, pfx[i], pfxlen[i]);
                prefix_add_client(pfx[i], pfxlen[i], c->id);
            }
        }
        t->flags |= options & (T_OPTIN | T_OPTOUT | T_NOLOOP);
    } else if (word(argv[2], argvlen[2], "off")) {
        tracking_off(c);
    } else {
        reply_error(out, "ERR syntax error");
        goto done;
    }
    reply_ok(out);
done:
    free(pfx);
    free(pfxlen);
}

static void caching_subcommand(client *c, char *arg, size_t len, struct evbuffer *out)
{
    struct client_tracking *t = c->tracking;
    if (!t) {
        reply_error(out, "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or "
                         "OPTOUT mode enabled");
    } else if (word(arg, len, "yes")) {
        if (t->flags & T_OPTIN) t->flags |= T_CACHING, reply_ok(out);
        else reply_error(out, "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.");
    } else if (word(arg, len, "no")) {
        if (t->flags & T_OPTOUT) t->flags |= T_CACHING, reply_ok(out);
        else reply_error(out, "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.");
    } else {
        reply_error(out, "ERR syntax error");
    }
}

static long long redirect_of(const client *c)
{
    return c->tracking ? (long long)c->tracking->redirect : -1;
}

static void info_subcommand(client *c, struct evbuffer *out)
{
    struct client_tracking *t = c->tracking;
    reply_array(out, 6);
    reply_bulk_cstr(out, "flags");
    if (!t) {
        reply_array(out, 1);
        reply_bulk_cstr(out, "off");
    } else {
        static const struct {
            unsigned bit, need;
            const char *name;
        } names[] = {{T_BCAST, 0, "bcast"},           {T_OPTIN, 0, "optin"},       {T_OPTOUT, 0, "optout"},
                     {T_CACHING, T_OPTIN, "caching-yes"}, {T_CACHING, T_OPTOUT, "caching-no"},
                     {T_NOLOOP, 0, "noloop"},         {T_BROKEN, 0, "broken_redirect"}};
        int n = 1;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if ((t->flags & names[i].bit) && (!names[i].need || (t->flags & names[i].need))) n++;
        reply_array(out, n);
        reply_bulk_cstr(out, "on");
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if ((t->flags & names[i].bit) && (!names[i].need || (t->flags & names[i].need)))
                reply_bulk_cstr(out, names[i].name);
    }
    reply_bulk_cstr(out, "redirect");
    reply_integer(out, redirect_of(c));
    reply_bulk_cstr(out, "prefixes");
    reply_array(out, t ? t->nprefixes : 0);
    for (int i = 0; t && i < t->nprefixes; i++) reply_bulk(out, t->prefixes[i], t->prefixlens[i]);
}

void tracking_client_command(client *c, int argc, char **argv, size_t *argvlen, struct evbuffer *out)
{
    const char *sub = argv[1];
    size_t len = argvlen[1];
    if (word(sub, len, "tracking")) tracking_subcommand(c, argc, argv, argvlen, out);
    else if (word(sub, len, "caching")) caching_subcommand(c, argv[2], argvlen[2], out);
    else if (word(sub, len, "getredir")) reply_integer(out, redirect_of(c));
    else info_subcommand(c, out);
}
void tracking_info(unsigned long *clients, unsigned long long *keys, unsigned long long *items,
                   unsigned long long *prefixes)
{
    *clients = (unsigned long)ntrackers;
    *keys = nkeys;
    *items = nitems;
    *prefixes = (unsigned long long)nprefixes;
}
