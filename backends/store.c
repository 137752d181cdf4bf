/* The store's release, its command set and Redis 7.0's wording of its errors. */
#include "backends/store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <hiredis/hiredis.h>

struct store_commands {
    char **names; /* lower case, sorted */
    size_t count;
    int has_subcommands; /* Redis 7.0 and later list them ("config|get") */
};

/* Compares a counted name with a NUL-terminated one, case-insensitively. */
static int name_cmp(const char *a, size_t alen, const char *b)
{
    size_t i = 0;
    for (; i < alen && b[i]; i++) {
        int d = tolower((unsigned char)a[i]) - (unsigned char)b[i];
        if (d) return d;
    }
    if (i < alen) return 1;
    return b[i] ? -1 : 0;
}

int store_since(const char *name, size_t len)
{
    int lo = 0, hi = store_since_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int d = name_cmp(name, len, store_since_table[mid].name);
        if (!d) return store_since_table[mid].since;
        if (d < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return 0;
}

int store_parse_version(const char *info, size_t len)
{
    static const char key[] = "redis_version:";
    const char *end = info + len;
    for (const char *p = info; p && p < end;) {
        size_t left = (size_t)(end - p);
        if (left > sizeof(key) - 1 && !memcmp(p, key, sizeof(key) - 1)) {
            p += sizeof(key) - 1;
            int part[3] = {0, 0, 0}, n = 0;
            while (p < end && n < 3) {
                if (!isdigit((unsigned char)*p)) return 0;
                long v = 0;
                while (p < end && isdigit((unsigned char)*p) && v < 10000) v = v * 10 + (*p++ - '0');
                part[n++] = (int)(v > 99 ? 99 : v);
                if (p < end && *p == '.') p++;
                else break;
            }
            if (!n || (!part[0] && !part[1] && !part[2])) return 0;
            return part[0] * 10000 + part[1] * 100 + part[2];
        }
        p = memchr(p, '\n', left);
        if (p) p++;
    }
    return 0;
}

const char *store_version_text(int version, char *buf, size_t len)
{
    snprintf(buf, len, "%d.%d.%d", version / 10000, version / 100 % 100, version % 100);
    return buf;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_name(store_commands *s, size_t *cap, const redisReply *name)
{
    if (!name || (name->type != REDIS_REPLY_STRING && name->type != REDIS_REPLY_STATUS)) return -1;
    if (s->count == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        char **n = realloc(s->names, *cap * sizeof(*n));
        if (!n) abort();
        s->names = n;
    }
    char *copy = malloc(name->len + 1);
    if (!copy) abort();
    for (size_t i = 0; i < name->len; i++) copy[i] = (char)tolower((unsigned char)name->str[i]);
    copy[name->len] = '\0';
    s->names[s->count++] = copy;
    return 0;
}

store_commands *store_commands_from_reply(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements) return NULL;
    store_commands *s = calloc(1, sizeof(*s));
    if (!s) abort();
    size_t cap = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || !e->elements || add_name(s, &cap, e->element[0]) != 0) continue;
        /* Redis 7.0: the tenth field lists the subcommands, each an entry
         * named "container|sub". */
        if (e->elements < 10 || e->element[9]->type != REDIS_REPLY_ARRAY) continue;
        s->has_subcommands = 1;
        const redisReply *subs = e->element[9];
        for (size_t j = 0; j < subs->elements; j++)
            if (subs->element[j]->type == REDIS_REPLY_ARRAY && subs->element[j]->elements)
                add_name(s, &cap, subs->element[j]->element[0]);
    }
    if (!s->count) {
        store_commands_free(s);
        return NULL;
    }
    qsort(s->names, s->count, sizeof(*s->names), cmp_names);
    return s;
}

void store_commands_free(store_commands *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->count; i++) free(s->names[i]);
    free(s->names);
    free(s);
}

size_t store_commands_count(const store_commands *s) { return s ? s->count : 0; }

static int listed(const store_commands *s, const char *name, size_t len)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int d = name_cmp(name, len, s->names[mid]);
        if (!d) return 1;
        if (d < 0) hi = mid;
        else lo = mid + 1;
    }
    return 0;
}

int store_has_command(const store_commands *s, int version, const char *name, size_t len)
{
    if (version <= 0) return -1;
    const char *bar = memchr(name, '|', len);
    size_t toplen = bar ? (size_t)(bar - name) : len;
    int since;
    if (s) {
        /* COMMAND is the store's own word (renamed commands appear under
         * their original names, modules' commands too). */
        if (!listed(s, name, toplen)) return 0;
        if (!bar) return 1;
        if (s->has_subcommands) return listed(s, name, len);
        /* Before 7.0 COMMAND names no subcommands: their releases tell. */
        since = store_since(name, len);
        return since ? since <= version : -1;
    }
    /* No COMMAND (before 2.8.13): a stock release of its time, whose
     * commands the table names all. */
    since = store_since(name, toplen);
    if (!since || since > version) return 0;
    if (!bar) return 1;
    since = store_since(name, len);
    return since ? since <= version : -1;
}

unsigned long long store_epoch_next(void)
{
    static unsigned long long epochs;
    return ++epochs;
}

/* ---- errors ------------------------------------------------------------------ */

typedef struct error_rewrite {
    const char *old_text; /* the whole line after '-' */
    const char *new_text;
} error_rewrite;

/* Texts some older release words differently from Redis 7.0 (found by
 * sending the same commands to each release and to 7.0). */
static const error_rewrite rewrites[] = {
    /* 2.4: no WRONGTYPE prefix, which clients map to their own error class. */
    {"ERR Operation against a key holding the wrong kind of value",
     "WRONGTYPE Operation against a key holding the wrong kind of value"},
    /* 2.4 */
    {"ERR value is not a double", "ERR value is not a valid float"},
    {"ERR min or max is not a double", "ERR min or max is not a float"},
    /* Before 6.0 timeouts were whole seconds. */
    {"ERR timeout is not an integer or out of range", "ERR timeout is not a float or out of range"},
    /* 2.6 to 3.2 */
    {"ERR hash value is not a valid float", "ERR hash value is not a float"},
    /* 2.6 and 2.8: RESTORE onto an existing key. */
    {"ERR Target key name is busy.", "BUSYKEY Target key name already exists."},
    /* Before 6.0 the limit was fixed. */
    {"ERR string exceeds maximum allowed size (512MB)", "ERR string exceeds maximum allowed size (proto-max-bulk-len)"},
};

/* "<prefix>WORD" (WORD letters only, as older releases named the command:
 * "in SETEX", "in set", "for MSET") becomes "<prefix>'word' command". */
static size_t name_the_command(const char *prefix, const char *err, size_t len, char *out, size_t cap)
{
    size_t pl = strlen(prefix);
    if (len <= pl || len - pl > 32 || memcmp(err, prefix, pl) != 0) return 0;
    for (size_t i = pl; i < len; i++)
        if (!isalpha((unsigned char)err[i])) return 0;
    if (len + 11 > cap) return 0;
    memcpy(out, prefix, pl);
    size_t n = pl;
    out[n++] = '\'';
    for (size_t i = pl; i < len; i++) out[n++] = (char)tolower((unsigned char)err[i]);
    memcpy(out + n, "' command", 9);
    return n + 9;
}

int store_error_context(const char *name, size_t len)
{
    static const char *const names[] = {NULL, "exec", "zunionstore", "zinterstore", "spop"};
    if (len != 4 && len != 11) return STORE_CONTEXT_NONE;
    for (int i = 1; i < (int)(sizeof(names) / sizeof(*names)); i++)
        if (strlen(names[i]) == len && !strncasecmp(name, names[i], len)) return i;
    return STORE_CONTEXT_NONE;
}

/* Copies text into out; its length, or 0 when it does not fit. */
static size_t put(char *out, size_t cap, const char *text)
{
    size_t n = strlen(text);
    if (n > cap) return 0;
    memcpy(out, text, n);
    return n;
}

size_t store_error_normalise(int version, int context, const char *err, size_t len, char *out, size_t cap)
{
    if (version <= 0 || version >= 70000 || len < 4 || memcmp(err, "ERR ", 4) != 0) return 0;
    static const char at_least[] = "ERR at least 1 input key is needed for ZUNIONSTORE/ZINTERSTORE";
    if ((context == STORE_CONTEXT_ZUNIONSTORE || context == STORE_CONTEXT_ZINTERSTORE) &&
        len == sizeof(at_least) - 1 && !memcmp(err, at_least, len))
        return put(out, cap, context == STORE_CONTEXT_ZUNIONSTORE
                                 ? "ERR at least 1 input key is needed for 'zunionstore' command"
                                 : "ERR at least 1 input key is needed for 'zinterstore' command");
    /* SPOP with a negative count (3.2 to 6.2); LSET's own "index out of
     * range" is 7.0's text too, so only SPOP's is reworded. */
    if (context == STORE_CONTEXT_SPOP && len == 22 && !memcmp(err, "ERR index out of range", 22))
        return put(out, cap, "ERR value is out of range, must be positive");
    for (size_t i = 0; i < sizeof(rewrites) / sizeof(*rewrites); i++) {
        size_t ol = strlen(rewrites[i].old_text);
        if (ol != len || memcmp(err, rewrites[i].old_text, len) != 0) continue;
        return put(out, cap, rewrites[i].new_text);
    }
    /* "invalid expire time in SETEX" (2.4), "in set" (2.6 to 6.2); "wrong
     * number of arguments for MSET" (the commands that count pairs, before
     * 7.0): Redis 7.0 names the command as "'setex' command". */
    size_t n = name_the_command("ERR invalid expire time in ", err, len, out, cap);
    if (!n) n = name_the_command("ERR wrong number of arguments for ", err, len, out, cap);
    return n;
}

/* ---- INFO ---------------------------------------------------------------------- */

void store_info_keyspace(const char *info, size_t len, struct evbuffer *out)
{
    const char *end = info + len;
    for (const char *p = info; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r') n--;
        size_t d = 2;
        if (n > 2 && !memcmp(p, "db", 2)) {
            while (d < n && isdigit((unsigned char)p[d])) d++;
            if (d > 2 && n - d > 6 && !memcmp(p + d, ":keys=", 6)) {
                evbuffer_add(out, p, n);
                if (!memmem(p, n, ",avg_ttl=", 9)) evbuffer_add(out, ",avg_ttl=0", 10);
                evbuffer_add(out, "\r\n", 2);
            }
        }
        p = nl ? nl + 1 : end;
    }
}
