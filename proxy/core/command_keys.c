/* Command lookup, resolution and key extraction over the generated Redis 7.0
 * command table (proxy/core/command_table.c). Semantics follow Redis 7.0's
 * lookupCommand and getKeysFromCommandWithSpecs, so the answers match
 * COMMAND GETKEYS on a real redis-server. */
#include <stdlib.h>

#include "proxy/core/command_table.h"
#include "util/strconv.h"

#include <limits.h>
#include <string.h>

static inline unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Compare a (name, len) argument, case-insensitively, with a lowercase
 * NUL-terminated table name; byte order, as the generator sorts. */
static int name_cmp(const char *name, size_t len, const char *entry) {
    for (size_t i = 0; i < len; i++) {
        unsigned char e = (unsigned char)entry[i];
        if (e == 0) return 1;
        unsigned char c = lower((unsigned char)name[i]);
        if (c != e) return c < e ? -1 : 1;
    }
    return entry[len] == 0 ? 0 : -1;
}

static const command_def *bsearch_defs(const command_def *defs, int count, size_t skip,
                                       const char *name, size_t len) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, len, defs[mid].name + skip);
        if (c == 0) return &defs[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Pipelines and scripts repeat a few commands: a small cache, indexed by
 * the name's length and first and last letters, answers them with one
 * comparison instead of a binary search's cache misses. */
#define LOOKUP_CACHE_SIZE 64
static const command_def *lookup_cache[LOOKUP_CACHE_SIZE];

const command_def *command_lookup(const char *name, size_t len) {
    if (!name) return NULL;
    if (!len) return bsearch_defs(command_table, command_table_count, 0, name, len);
    unsigned h = ((unsigned)lower((unsigned char)name[0]) * 31u + (unsigned)lower((unsigned char)name[len - 1]) * 7u +
                  (unsigned)len) % LOOKUP_CACHE_SIZE;
    const command_def *d = lookup_cache[h];
    if (d && name_cmp(name, len, d->name) == 0) return d;
    d = bsearch_defs(command_table, command_table_count, 0, name, len);
    if (d) lookup_cache[h] = d;
    return d;
}

const command_def *command_lookup_sub(const command_def *container, const char *name, size_t len) {
    if (!container || !name || container->subcommand_count == 0) return NULL;
    /* Subcommand names are "container|sub" and sorted by the whole name,
     * which orders them by "sub" too. */
    size_t skip = strlen(container->name) + 1;
    return bsearch_defs(container->subcommands, container->subcommand_count, skip, name, len);
}

static inline size_t arg_len(char **argv, size_t *argvlen, int i) {
    return argvlen ? argvlen[i] : strlen(argv[i]);
}

const command_def *command_resolve(int argc, char **argv, size_t *argvlen, int *is_container_miss) {
    if (is_container_miss) *is_container_miss = 0;
    if (argc < 1 || !argv) return NULL;
    const command_def *base = command_lookup(argv[0], arg_len(argv, argvlen, 0));
    /* With argc == 1 a container is returned as is, so that the caller
     * reports the arity error on it, as Redis does. */
    if (!base || argc == 1 || base->subcommand_count == 0) return base;
    const command_def *sub = command_lookup_sub(base, argv[1], arg_len(argv, argvlen, 1));
    if (!sub && is_container_miss) *is_container_miss = 1;
    return sub;
}

/* ------------------------------------------------------------------------ */
/* Key extraction */

typedef struct {
    char **argv;
    size_t *argvlen;
    int argc;
    int *keys;
    uint32_t *flags;
    int max;
    int n;
} keyres;

static void add_key(keyres *r, int pos, uint32_t flags) {
    if (r->n < r->max) {
        if (r->keys) r->keys[r->n] = pos;
        if (r->flags) r->flags[r->n] = flags;
    }
    r->n++;
}

/* Redis compares option words with strcasecmp on C strings, so an argument
 * ends at its first NUL byte. */
static int arg_is(const keyres *r, int i, const char *word) {
    size_t len = arg_len(r->argv, r->argvlen, i);
    const char *p = r->argv[i];
    const char *nul = memchr(p, '\0', len);
    if (nul) len = (size_t)(nul - p);
    size_t wl = strlen(word);
    if (len != wl) return 0;
    for (size_t k = 0; k < len; k++)
        if (lower((unsigned char)p[k]) != lower((unsigned char)word[k])) return 0;
    return 1;
}


/* C's atoi as Redis's getkeys procs use it: leading spaces, optional sign,
 * digits, stop at anything else (including NUL); int of a saturated long. */
static int lenient_atoi(const char *s, size_t len) {
    size_t i = 0;
    while (i < len && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r'))) i++;
    int neg = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    unsigned long v = 0;
    int over = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULONG_MAX - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    long l;
    if (neg)
        l = (over || v > (unsigned long)LONG_MAX + 1) ? LONG_MIN
            : (v == (unsigned long)LONG_MAX + 1 ? LONG_MIN : -(long)v);
    else
        l = (over || v > (unsigned long)LONG_MAX) ? LONG_MAX : (long)v;
    return (int)(unsigned)(unsigned long)l; /* truncation as in (int)strtol() */
}

/* getKeysUsingKeySpecs: -1 when a spec cannot be applied to these arguments. */
static int keys_from_specs(const command_def *cmd, keyres *r) {
    int argc = r->argc;
    for (int j = 0; j < cmd->key_spec_count; j++) {
        const command_key_spec *spec = &cmd->key_specs[j];
        if (spec->flags & KSPEC_NOT_KEY) continue;

        int first = 0, last, step;
        if (spec->begin_type == KSPEC_BS_INDEX) {
            first = spec->index;
        } else if (spec->begin_type == KSPEC_BS_KEYWORD) {
            /* The end index itself is never examined: a keyword in the last
             * position (or at 1, searching backwards) has no key after it. */
            int start = spec->startfrom > 0 ? spec->startfrom : argc + spec->startfrom;
            int end = spec->startfrom > 0 ? argc - 1 : 1;
            for (int i = start; i != end; i = start <= end ? i + 1 : i - 1) {
                if (i >= argc || i < 1) break;
                if (arg_is(r, i, spec->keyword)) {
                    first = i + 1;
                    break;
                }
            }
            if (!first) continue; /* keyword absent: this spec has no keys */
        } else {
            return -1;
        }

        if (spec->find_type == KSPEC_FK_RANGE) {
            step = spec->keystep;
            if (spec->lastkey >= 0)
                last = first + spec->lastkey;
            else if (!spec->limit)
                last = argc + spec->lastkey;
            else
                last = first + ((argc - first) / spec->limit + spec->lastkey);
        } else if (spec->find_type == KSPEC_FK_KEYNUM) {
            step = spec->keynumstep;
            long long numkeys;
            int idx = first + spec->keynumidx;
            if (idx < 0 || idx >= argc) return -1;
            if (!string_to_ll(r->argv[idx], arg_len(r->argv, r->argvlen, idx), &numkeys) || numkeys < 0)
                return -1;
            first += spec->firstkey;
            /* Redis narrows numkeys to int; huge values end up out of range
             * either way, which 64-bit arithmetic keeps free of overflow. */
            long long l = (long long)first + (int)(unsigned)(unsigned long long)numkeys - 1;
            if (l >= argc) return -1;
            last = (int)l;
        } else {
            return -1;
        }

        if (last >= argc || last < first || first >= argc || step < 1) return -1;
        for (int i = first; i <= last; i += step) add_key(r, i, spec->flags);

        /* An incomplete spec fails the whole search so the getkeys proc,
         * which knows the rest, answers instead. */
        if (spec->flags & KSPEC_INCOMPLETE) return -1;
    }
    return r->n;
}

/* genericGetKeys: [storekey] numkeys key... ; keys first, store key last. */
static int keys_numkeys(keyres *r, int store, int count_idx, int first) {
    int num = lenient_atoi(r->argv[count_idx], arg_len(r->argv, r->argvlen, count_idx));
    /* Redis answers "no keys" for these; numkeys out of range is invalid. */
    if (num < 0 || num > r->argc - first) return -1;
    if (num == 0) return 0;
    for (int i = 0; i < num; i++) add_key(r, first + i, 0);
    if (store) add_key(r, store, 0);
    return r->n;
}

static int keys_sort(keyres *r) {
    static const struct { const char *name; int skip; } skips[] = {
        {"limit", 2}, {"get", 1}, {"by", 1}};
    int store = 0;
    add_key(r, 1, KSPEC_RO | KSPEC_ACCESS);
    for (int i = 2; i < r->argc; i++) {
        int skipped = 0;
        for (size_t j = 0; j < sizeof(skips) / sizeof(skips[0]); j++) {
            if (arg_is(r, i, skips[j].name)) {
                i += skips[j].skip;
                skipped = 1;
                break;
            }
        }
        /* The last STORE wins, as in SORT itself; its argument is not
         * skipped, so "STORE STORE x" stores into x. */
        if (!skipped && arg_is(r, i, "store") && i + 1 < r->argc) store = i + 1;
    }
    if (store) add_key(r, store, KSPEC_OW | KSPEC_UPDATE);
    return r->n;
}

static int keys_migrate(keyres *r) {
    static const struct { const char *name; int skip; } skips[] = {
        {"copy", 0}, {"replace", 0}, {"auth", 1}, {"auth2", 2}};
    int first = 3, num = 1;
    for (int i = 6; i < r->argc; i++) {
        if (arg_is(r, i, "keys")) {
            if (arg_len(r->argv, r->argvlen, 3) > 0) {
                num = 0; /* key and KEYS together: a syntax error for MIGRATE */
            } else {
                first = i + 1;
                num = r->argc - first;
            }
            break;
        }
        for (size_t j = 0; j < sizeof(skips) / sizeof(skips[0]); j++) {
            if (arg_is(r, i, skips[j].name)) {
                i += skips[j].skip;
                break;
            }
        }
    }
    for (int i = 0; i < num; i++) add_key(r, first + i, KSPEC_RW | KSPEC_ACCESS | KSPEC_DELETE);
    return r->n;
}

static int keys_georadius(keyres *r) {
    int stored = -1;
    for (int i = 5; i < r->argc; i++) {
        if ((arg_is(r, i, "store") || arg_is(r, i, "storedist")) && i + 1 < r->argc) {
            stored = i + 1;
            i++;
        }
    }
    add_key(r, 1, 0);
    if (stored != -1) add_key(r, stored, 0);
    return r->n;
}

static int keys_xread(keyres *r) {
    int streams = -1;
    for (int i = 1; i < r->argc; i++) {
        if (arg_is(r, i, "block") || arg_is(r, i, "count")) {
            i++;
        } else if (arg_is(r, i, "group")) {
            i += 2;
        } else if (arg_is(r, i, "noack")) {
            continue;
        } else if (arg_is(r, i, "streams")) {
            streams = i;
            break;
        } else {
            break;
        }
    }
    if (streams == -1) return -1;
    int num = r->argc - streams - 1;
    if (num == 0 || num % 2 != 0) return -1;
    num /= 2;
    for (int i = streams + 1; i < r->argc - num; i++) add_key(r, i, 0);
    return r->n;
}

static int keys_set(keyres *r) {
    for (int i = 3; i < r->argc; i++) {
        if (arg_is(r, i, "get")) {
            add_key(r, 1, KSPEC_RW | KSPEC_ACCESS | KSPEC_UPDATE);
            return 1;
        }
    }
    add_key(r, 1, KSPEC_OW | KSPEC_UPDATE);
    return 1;
}

static int keys_bitfield(keyres *r) {
    int readonly = 1;
    for (int i = 2; i < r->argc; i++) {
        int rem = r->argc - i - 1;
        if (arg_is(r, i, "get") && rem >= 2) {
            i += 2;
        } else if ((arg_is(r, i, "set") || arg_is(r, i, "incrby")) && rem >= 3) {
            readonly = 0;
            break;
        } else if (arg_is(r, i, "overflow") && rem >= 1) {
            i += 1;
        } else {
            readonly = 0; /* syntax error: assume it writes */
            break;
        }
    }
    add_key(r, 1, readonly ? (KSPEC_RO | KSPEC_ACCESS) : (KSPEC_RW | KSPEC_ACCESS | KSPEC_UPDATE));
    return 1;
}

static int keys_from_proc(const command_def *cmd, keyres *r) {
    switch (cmd->getkeys) {
    case CMD_GETKEYS_NUMKEYS_1: return keys_numkeys(r, 0, 1, 2);
    case CMD_GETKEYS_NUMKEYS_2: return keys_numkeys(r, 0, 2, 3);
    case CMD_GETKEYS_STORE_NUMKEYS_2: return keys_numkeys(r, 1, 2, 3);
    case CMD_GETKEYS_SORT: return keys_sort(r);
    case CMD_GETKEYS_SORT_RO: add_key(r, 1, KSPEC_RO | KSPEC_ACCESS); return 1;
    case CMD_GETKEYS_MIGRATE: return keys_migrate(r);
    case CMD_GETKEYS_GEORADIUS: return keys_georadius(r);
    case CMD_GETKEYS_XREAD: return keys_xread(r);
    case CMD_GETKEYS_SET: return keys_set(r);
    case CMD_GETKEYS_BITFIELD: return keys_bitfield(r);
    default: return -1;
    }
}

int command_get_keys(const command_def *cmd, int argc, char **argv, size_t *argvlen,
                     int *keys, uint32_t *flags_out, int max) {
    if (!cmd || argc < 1 || !argv) return -1;
    int has_keyspec = 0, has_varflags = 0;
    for (int j = 0; j < cmd->key_spec_count; j++) {
        if (!(cmd->key_specs[j].flags & KSPEC_NOT_KEY)) has_keyspec = 1;
        if (cmd->key_specs[j].flags & KSPEC_VARIABLE_FLAGS) has_varflags = 1;
    }
    if (!has_keyspec && cmd->getkeys == CMD_GETKEYS_NONE) return 0; /* no keys at all */
    /* Redis checks arity before looking for keys; every position below
     * relies on it. */
    if ((cmd->arity > 0 && cmd->arity != argc) || argc < -cmd->arity) return -1;

    keyres r = {argv, argvlen, argc, keys, flags_out, max < 0 ? 0 : max, 0};

    int n = -1;
    /* Key specs first, unless their flags depend on the arguments. */
    if (has_keyspec && !has_varflags) n = keys_from_specs(cmd, &r);
    if (n < 0 && cmd->getkeys != CMD_GETKEYS_NONE) {
        r.n = 0;
        n = keys_from_proc(cmd, &r);
    }
    /* No keys for a command that needs some: COMMAND GETKEYS calls that
     * invalid arguments. */
    if (n == 0 && !(cmd->flags & CMD_NO_MANDATORY_KEYS)) return -1;
    return n;
}

int command_keys_of_line(int argc, char **argv, const size_t *argvlen, int *pos, int max)
{
    int container_miss = 0;
    /* Neither function writes through argvlen. */
    const command_def *cmd = command_resolve(argc, argv, (size_t *)argvlen, &container_miss);
    if (!cmd) return -1;
    return command_get_keys(cmd, argc, argv, (size_t *)argvlen, pos, NULL, max);
}

int command_get_keys_any(const command_def *cmd, int argc, char **argv, size_t *argvlen, int *stack, int stack_n,
                         int **keys)
{
    *keys = stack;
    int n = command_get_keys(cmd, argc, argv, argvlen, stack, NULL, stack_n);
    if (n > stack_n) {
        *keys = malloc(sizeof(int) * (size_t)n);
        if (!*keys) abort();
        n = command_get_keys(cmd, argc, argv, argvlen, *keys, NULL, n);
    }
    return n;
}
