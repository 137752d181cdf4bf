/* Users and ACL rules with Redis 7.0's semantics: see acl.h. */
#include "proxy/core/acl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "proxy/core/config.h"
#include "util/files.h"
#include "proxy/core/reply.h"
#include "util/args.h"
#include "util/glob.h"
#include "util/strconv.h"

/* ---- command ids and categories -------------------------------------------- */

/* Redis's category list; the order is what ACL CAT and COMMAND show and what
 * the description of a user's command rules follows. */
static const char *const category_names[] = {
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog", "geo",
    "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection", "transaction",
    "scripting", NULL,
};

/* Every command and subcommand gets an id (its bit in a user's bitmap):
 * top-level commands first, in table order, then each container's
 * subcommands. */
static const command_def **ids;  /* id -> command */
static uint32_t *id_categories;  /* id -> category bits */
static int *id_parent;           /* id -> parent id, or -1 */
static int *first_sub_id;        /* top-level index -> id of its first subcommand */
static int id_count;
static acl_user **users;
static int nusers;
static acl_user *default_user;
static int pristine = 1;

#define FUTURE_BIT (ACL_CMD_WORDS * 64 - 1)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

static char *xmemdup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) abort();
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* Skips one RESP element; NULL if malformed. */
static const char *resp_skip(const char *p, const char *end)
{
    if (p >= end) return NULL;
    char type = *p;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL;
    long long n = strtoll(p + 1, NULL, 10);
    p = nl + 1;
    switch (type) {
    case '$':
        return n < 0 ? p : p + n + 2;
    case '*':
        for (long long i = 0; i < n && p; i++) p = resp_skip(p, end);
        return p;
    default:
        return p;
    }
}

/* The categories of a command, from its COMMAND INFO entry (element 7). */
static uint32_t parse_categories(const command_def *cmd)
{
    const char *p = cmd->info_resp, *end = cmd->info_resp + cmd->info_len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || *p != '*') return 0;
    p = nl + 1;
    for (int i = 0; i < 6 && p; i++) p = resp_skip(p, end);
    if (!p || *p != '*') return 0;
    long long n = strtoll(p + 1, NULL, 10);
    p = memchr(p, '\n', (size_t)(end - p));
    if (!p) return 0;
    p++;
    uint32_t bits = 0;
    for (long long i = 0; i < n; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || *p != '+' || p[1] != '@') return bits;
        bits |= acl_category_by_name(p + 2, (size_t)(nl - 1 - (p + 2)));
        p = nl + 1;
    }
    return bits;
}

static void build_ids(void)
{
    int total = command_table_count;
    for (int i = 0; i < command_table_count; i++) total += command_table[i].subcommand_count;
    if (total >= FUTURE_BIT) abort(); /* the table outgrew the bitmap */
    ids = xcalloc((size_t)total, sizeof(*ids));
    id_categories = xcalloc((size_t)total, sizeof(*id_categories));
    id_parent = xcalloc((size_t)total, sizeof(*id_parent));
    first_sub_id = xcalloc((size_t)command_table_count, sizeof(*first_sub_id));
    int next = command_table_count;
    for (int i = 0; i < command_table_count; i++) {
        ids[i] = &command_table[i];
        id_parent[i] = -1;
        first_sub_id[i] = next;
        for (int s = 0; s < command_table[i].subcommand_count; s++) {
            ids[next] = &command_table[i].subcommands[s];
            id_parent[next] = i;
            next++;
        }
    }
    id_count = total;
    for (int i = 0; i < id_count; i++) id_categories[i] = parse_categories(ids[i]);
}

static int command_id(const command_def *cmd)
{
    if (cmd >= command_table && cmd < command_table + command_table_count) return (int)(cmd - command_table);
    for (int i = 0; i < command_table_count; i++) {
        const command_def *t = &command_table[i];
        if (t->subcommand_count && cmd >= t->subcommands && cmd < t->subcommands + t->subcommand_count)
            return first_sub_id[i] + (int)(cmd - t->subcommands);
    }
    return -1;
}

const char *const *acl_category_names(void) { return category_names; }

uint32_t acl_category_by_name(const char *name, size_t len)
{
    for (int i = 0; category_names[i]; i++)
        if (strlen(category_names[i]) == len && !strncasecmp(category_names[i], name, len)) return 1u << i;
    return 0;
}

uint32_t acl_command_categories(const command_def *cmd)
{
    int id = command_id(cmd);
    return id < 0 ? 0 : id_categories[id];
}

/* Redis looks "name" or "container|sub" up in its original table. */
static const command_def *lookup_full(const char *name, size_t len)
{
    const char *bar = memchr(name, '|', len);
    if (!bar) return command_lookup(name, len);
    const char *rest = bar + 1;
    size_t restlen = len - (size_t)(rest - name);
    if (memchr(rest, '|', restlen)) return NULL;
    const command_def *top = command_lookup(name, (size_t)(bar - name));
    if (!top || !top->subcommand_count) return NULL;
    return command_lookup_sub(top, rest, restlen);
}

/* ---- bitmaps ------------------------------------------------------------------ */

static int bit_get(const uint64_t *bits, int id) { return (bits[id / 64] >> (id % 64)) & 1; }

static void bit_set(uint64_t *bits, int id, int v)
{
    if (v) bits[id / 64] |= 1ULL << (id % 64);
    else bits[id / 64] &= ~(1ULL << (id % 64));
}

static void firstargs_reset_one(acl_selector *s, int id)
{
    if (!s || !s->firstargs || !s->firstargs[id]) return;
    for (char **a = s->firstargs[id]; *a; a++) free(*a);
    free(s->firstargs[id]);
    s->firstargs[id] = NULL;
}

static void firstargs_reset(acl_selector *s)
{
    if (!s->firstargs) return;
    for (int i = 0; i < id_count; i++) firstargs_reset_one(s, i);
    free(s->firstargs);
    s->firstargs = NULL;
}

/* Allowing or blocking a container covers its subcommands as well. u may be
 * NULL when only the bitmap matters (describing rules). */
static void change_perm(acl_selector *u, uint64_t *bits, int *sel_flags, int id, int allow)
{
    bit_set(bits, id, allow);
    if (!allow && sel_flags) *sel_flags &= ~ACL_SEL_ALLCOMMANDS;
    firstargs_reset_one(u, id);
    if (id < command_table_count) {
        for (int s = 0; s < command_table[id].subcommand_count; s++) {
            bit_set(bits, first_sub_id[id] + s, allow);
            if (!allow && sel_flags) *sel_flags &= ~ACL_SEL_ALLCOMMANDS;
        }
    }
}

static void apply_category(acl_selector *u, uint64_t *bits, int *sel_flags, uint32_t cat, int allow)
{
    for (int i = 0; i < id_count; i++)
        if (id_categories[i] & cat) change_perm(u, bits, sel_flags, i, allow);
}

/* ---- users --------------------------------------------------------------------- */

static int selector_unrestricted(const acl_selector *s)
{
    int all = ACL_SEL_ALLKEYS | ACL_SEL_ALLCHANNELS | ACL_SEL_ALLCOMMANDS;
    return (s->flags & all) == all;
}

static void update_unrestricted(acl_user *u)
{
    u->unrestricted = selector_unrestricted(&u->root);
    for (int i = 0; i < u->nselectors; i++) u->unrestricted |= selector_unrestricted(&u->selectors[i]);
}

acl_user *acl_user_new_unlinked(const char *name, size_t len)
{
    acl_user *u = xcalloc(1, sizeof(*u));
    u->name = xmemdup(name, len);
    u->namelen = len;
    u->flags = ACL_USER_OFF;
    /* Redis 7.0's acl-pubsub-default is resetchannels: no channels, no keys, no commands. */
    return u;
}

static void clear_keys(acl_selector *s)
{
    for (int i = 0; i < s->nkeys; i++) free(s->keys[i].pattern);
    free(s->keys);
    s->keys = NULL;
    s->nkeys = 0;
}

static void clear_channels(acl_selector *s)
{
    for (int i = 0; i < s->nchannels; i++) free(s->channels[i]);
    free(s->channels);
    free(s->chanlens);
    s->channels = NULL;
    s->chanlens = NULL;
    s->nchannels = 0;
}

static void selector_clear(acl_selector *s)
{
    clear_keys(s);
    clear_channels(s);
    firstargs_reset(s);
    memset(s, 0, sizeof(*s));
}

static void clear_selectors(acl_user *u)
{
    for (int i = 0; i < u->nselectors; i++) selector_clear(&u->selectors[i]);
    free(u->selectors);
    u->selectors = NULL;
    u->nselectors = 0;
}

void acl_user_free(acl_user *u)
{
    if (!u) return;
    selector_clear(&u->root);
    clear_selectors(u);
    free(u->passwords);
    free(u->name);
    free(u);
}

static void selector_copy(acl_selector *dst, const acl_selector *src)
{
    selector_clear(dst);
    dst->flags = src->flags;
    memcpy(dst->cmd_bits, src->cmd_bits, sizeof(dst->cmd_bits));
    dst->future_commands = src->future_commands;
    if (src->firstargs) {
        dst->firstargs = xcalloc((size_t)id_count, sizeof(char **));
        for (int i = 0; i < id_count; i++) {
            if (!src->firstargs[i]) continue;
            int n = 0;
            while (src->firstargs[i][n]) n++;
            dst->firstargs[i] = xcalloc((size_t)n + 1, sizeof(char *));
            for (int k = 0; k < n; k++) dst->firstargs[i][k] = xmemdup(src->firstargs[i][k], strlen(src->firstargs[i][k]));
        }
    }
    dst->nkeys = src->nkeys;
    dst->keys = src->nkeys ? xcalloc((size_t)src->nkeys, sizeof(*dst->keys)) : NULL;
    for (int i = 0; i < src->nkeys; i++) {
        dst->keys[i] = src->keys[i];
        dst->keys[i].pattern = xmemdup(src->keys[i].pattern, src->keys[i].len);
    }
    dst->nchannels = src->nchannels;
    if (src->nchannels) {
        dst->channels = xcalloc((size_t)src->nchannels, sizeof(char *));
        dst->chanlens = xcalloc((size_t)src->nchannels, sizeof(size_t));
        for (int i = 0; i < src->nchannels; i++) {
            dst->channels[i] = xmemdup(src->channels[i], src->chanlens[i]);
            dst->chanlens[i] = src->chanlens[i];
        }
    }
}

void acl_user_copy(acl_user *dst, const acl_user *src)
{
    free(dst->passwords);
    dst->flags = src->flags;
    dst->npasswords = src->npasswords;
    dst->passwords = NULL;
    if (src->npasswords) {
        dst->passwords = malloc(sizeof(*dst->passwords) * (size_t)src->npasswords);
        if (!dst->passwords) abort();
        memcpy(dst->passwords, src->passwords, sizeof(*dst->passwords) * (size_t)src->npasswords);
    }
    selector_copy(&dst->root, &src->root);
    clear_selectors(dst);
    if (src->nselectors) {
        dst->selectors = xcalloc((size_t)src->nselectors, sizeof(acl_selector));
        for (int i = 0; i < src->nselectors; i++) selector_copy(&dst->selectors[i], &src->selectors[i]);
        dst->nselectors = src->nselectors;
    }
    dst->unrestricted = src->unrestricted;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r) return r;
    return alen < blen ? -1 : alen > blen;
}

static int find_index(const char *name, size_t len, int *found)
{
    int lo = 0, hi = nusers;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int r = name_cmp(users[mid]->name, users[mid]->namelen, name, len);
        if (r == 0) {
            *found = 1;
            return mid;
        }
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

acl_user *acl_find_user(const char *name, size_t len)
{
    int found;
    int i = find_index(name, len, &found);
    return found ? users[i] : NULL;
}

static void insert_user(acl_user *u)
{
    int found;
    int i = find_index(u->name, u->namelen, &found);
    users = realloc(users, sizeof(*users) * (size_t)(nusers + 1));
    if (!users) abort();
    memmove(users + i + 1, users + i, sizeof(*users) * (size_t)(nusers - i));
    users[i] = u;
    nusers++;
}

acl_user *acl_create_user(const char *name, size_t len)
{
    if (acl_find_user(name, len)) return NULL;
    acl_user *u = acl_user_new_unlinked(name, len);
    insert_user(u);
    pristine = 0;
    return u;
}

acl_user *acl_remove_user(const char *name, size_t len)
{
    int found;
    int i = find_index(name, len, &found);
    if (!found) return NULL;
    acl_user *u = users[i];
    memmove(users + i, users + i + 1, sizeof(*users) * (size_t)(nusers - i - 1));
    nusers--;
    u->deleted = 1;
    pristine = 0;
    return u;
}

acl_user **acl_users(int *count)
{
    *count = nusers;
    return users;
}

void acl_user_retain(acl_user *u) { u->refs++; }

void acl_user_release(acl_user *u)
{
    if (--u->refs == 0 && u->deleted) acl_user_free(u);
}

static void make_default(acl_user *u)
{
    acl_set_user(u, "+@all", 5);
    acl_set_user(u, "~*", 2);
    acl_set_user(u, "&*", 2);
    acl_set_user(u, "on", 2);
    acl_set_user(u, "nopass", 6);
}

void acl_init(void)
{
    if (ids) return;
    build_ids();
    default_user = acl_user_new_unlinked("default", 7);
    make_default(default_user);
    default_user->refs = 1; /* never freed while the proxy runs */
    insert_user(default_user);
    pristine = 1;
}

acl_user *acl_default_user(void)
{
    acl_init();
    return default_user;
}

/* ---- passwords ------------------------------------------------------------------- */

static void hash_password(const char *pass, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(pass, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) abort();
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[i * 2] = hex[md[i] >> 4];
        out[i * 2 + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static int valid_hash(const char *h, size_t len)
{
    if (len != 64) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return 0;
    return 1;
}

static int find_password(const acl_user *u, const char *hash)
{
    for (int i = 0; i < u->npasswords; i++)
        if (!memcmp(u->passwords[i], hash, 64)) return i;
    return -1;
}

acl_user *acl_check_credentials(const char *user, size_t ulen, const char *pass, size_t plen)
{
    acl_user *u = acl_find_user(user, ulen);
    if (!u || (u->flags & ACL_USER_OFF)) return NULL;
    if (u->flags & ACL_USER_NOPASS) return u;
    char hash[65];
    hash_password(pass, plen, hash);
    int ok = 0;
    /* Every stored hash is compared, in constant time each. */
    for (int i = 0; i < u->npasswords; i++) ok |= !CRYPTO_memcmp(u->passwords[i], hash, 64);
    return ok ? u : NULL;
}

void acl_set_default_password(const char *pass, size_t len)
{
    acl_user *u = acl_default_user();
    int was_pristine = pristine; /* requirepass alone needs no user lines */
    acl_set_user(u, "resetpass", 9);
    if (pass && len) {
        /* Any bytes, NUL included, as Redis's ">" rule takes them. */
        char *op = malloc(len + 2);
        if (!op) abort();
        op[0] = '>';
        memcpy(op + 1, pass, len);
        op[len + 1] = '\0';
        acl_set_user(u, op, len + 1);
        free(op);
    } else {
        acl_set_user(u, "nopass", 6);
    }
    pristine = was_pristine;
}

/* ---- rules ------------------------------------------------------------------------ */

int acl_has_spaces(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (isspace((unsigned char)s[i]) || s[i] == 0) return 1;
    return 0;
}

static int op_is(const char *op, size_t len, const char *word)
{
    return strlen(word) == len && !strncasecmp(op, word, len);
}

static int add_key_pattern(acl_selector *u, const char *op, size_t len)
{
    if (u->flags & ACL_SEL_ALLKEYS) return ACL_ERR_KEYS_AFTER_ALL;
    int perms = 0;
    size_t off = 1;
    if (op[0] == '%') {
        for (; off < len; off++) {
            int ch = toupper((unsigned char)op[off]);
            if (ch == 'R' && !(perms & ACL_PERM_READ)) perms |= ACL_PERM_READ;
            else if (ch == 'W' && !(perms & ACL_PERM_WRITE)) perms |= ACL_PERM_WRITE;
            else if (op[off] == '~') {
                off++;
                break;
            } else return ACL_ERR_SYNTAX;
        }
        /* "%~x" would grant nothing and could not be described back. */
        if (!perms) return ACL_ERR_SYNTAX;
    } else {
        perms = ACL_PERM_ALL;
    }
    const char *pat = op + off;
    size_t plen = len - off;
    if (acl_has_spaces(pat, plen)) return ACL_ERR_SYNTAX;
    for (int i = 0; i < u->nkeys; i++) {
        if (u->keys[i].len == plen && !memcmp(u->keys[i].pattern, pat, plen)) {
            u->keys[i].perms |= perms;
            u->flags &= ~ACL_SEL_ALLKEYS;
            return ACL_ERR_NONE;
        }
    }
    u->keys = realloc(u->keys, sizeof(*u->keys) * (size_t)(u->nkeys + 1));
    if (!u->keys) abort();
    u->keys[u->nkeys++] = (acl_key_pattern){xmemdup(pat, plen), plen, perms};
    u->flags &= ~ACL_SEL_ALLKEYS;
    return ACL_ERR_NONE;
}

static int add_channel(acl_selector *u, const char *op, size_t len)
{
    if (u->flags & ACL_SEL_ALLCHANNELS) return ACL_ERR_CHANS_AFTER_ALL;
    const char *pat = op + 1;
    size_t plen = len - 1;
    if (acl_has_spaces(pat, plen)) return ACL_ERR_SYNTAX;
    int dup = 0;
    for (int i = 0; i < u->nchannels; i++)
        if (u->chanlens[i] == plen && !memcmp(u->channels[i], pat, plen)) dup = 1;
    if (!dup) {
        u->channels = realloc(u->channels, sizeof(char *) * (size_t)(u->nchannels + 1));
        u->chanlens = realloc(u->chanlens, sizeof(size_t) * (size_t)(u->nchannels + 1));
        if (!u->channels || !u->chanlens) abort();
        u->channels[u->nchannels] = xmemdup(pat, plen);
        u->chanlens[u->nchannels] = plen;
        u->nchannels++;
    }
    u->flags &= ~ACL_SEL_ALLCHANNELS;
    return ACL_ERR_NONE;
}

static void add_firstarg(acl_selector *u, int id, const char *arg, size_t len)
{
    if (!u->firstargs) u->firstargs = xcalloc((size_t)id_count, sizeof(char **));
    int n = 0;
    if (u->firstargs[id]) {
        for (; u->firstargs[id][n]; n++)
            if (!strcasecmp(u->firstargs[id][n], arg)) return;
    }
    u->firstargs[id] = realloc(u->firstargs[id], sizeof(char *) * (size_t)(n + 2));
    if (!u->firstargs[id]) abort();
    u->firstargs[id][n] = xmemdup(arg, len);
    u->firstargs[id][n + 1] = NULL;
}

static int allow_command_rule(acl_selector *u, const char *name, size_t len)
{
    const char *bar = NULL;
    for (size_t i = len; i > 0; i--)
        if (name[i - 1] == '|') {
            bar = name + i - 1;
            break;
        }
    if (!bar) {
        const command_def *cmd = command_lookup(name, len);
        if (!cmd) return ACL_ERR_UNKNOWN;
        change_perm(u, u->cmd_bits, &u->flags, command_id(cmd), 1);
        return ACL_ERR_NONE;
    }
    const command_def *cmd = lookup_full(name, (size_t)(bar - name));
    if (!cmd) return ACL_ERR_UNKNOWN;
    if (id_parent[command_id(cmd)] >= 0) return ACL_ERR_SUB_FIRSTARG;
    const char *sub = bar + 1;
    size_t sublen = len - (size_t)(sub - name);
    if (sublen == 0) return ACL_ERR_SYNTAX;
    if (cmd->subcommand_count) {
        const command_def *sc = lookup_full(name, len);
        if (!sc) return ACL_ERR_UNKNOWN;
        change_perm(u, u->cmd_bits, &u->flags, command_id(sc), 1);
    } else {
        /* "+select|0": the command stays blocked except with this first argument. */
        add_firstarg(u, command_id(cmd), sub, sublen);
    }
    return ACL_ERR_NONE;
}

static int set_selector_rule(acl_selector *u, const char *op, size_t len)
{
    if (op_is(op, len, "allkeys") || op_is(op, len, "~*")) {
        u->flags |= ACL_SEL_ALLKEYS;
        clear_keys(u);
    } else if (op_is(op, len, "resetkeys")) {
        u->flags &= ~ACL_SEL_ALLKEYS;
        clear_keys(u);
    } else if (op_is(op, len, "allchannels") || op_is(op, len, "&*")) {
        u->flags |= ACL_SEL_ALLCHANNELS;
        clear_channels(u);
    } else if (op_is(op, len, "resetchannels")) {
        u->flags &= ~ACL_SEL_ALLCHANNELS;
        clear_channels(u);
    } else if (op_is(op, len, "allcommands") || op_is(op, len, "+@all")) {
        memset(u->cmd_bits, 0xff, sizeof(u->cmd_bits));
        u->future_commands = 1;
        u->flags |= ACL_SEL_ALLCOMMANDS;
        firstargs_reset(u);
    } else if (op_is(op, len, "nocommands") || op_is(op, len, "-@all")) {
        memset(u->cmd_bits, 0, sizeof(u->cmd_bits));
        u->future_commands = 0;
        u->flags &= ~ACL_SEL_ALLCOMMANDS;
        firstargs_reset(u);
    } else if (op[0] == '~' || op[0] == '%') {
        return add_key_pattern(u, op, len);
    } else if (op[0] == '&') {
        return add_channel(u, op, len);
    } else if (op[0] == '+' && (len < 2 || op[1] != '@')) {
        return allow_command_rule(u, op + 1, len - 1);
    } else if (op[0] == '-' && (len < 2 || op[1] != '@')) {
        const command_def *cmd = lookup_full(op + 1, len - 1);
        if (!cmd) return ACL_ERR_UNKNOWN;
        change_perm(u, u->cmd_bits, &u->flags, command_id(cmd), 0);
    } else if (op[0] == '+' || op[0] == '-') {
        uint32_t cat = acl_category_by_name(op + 2, len - 2);
        if (!cat) return ACL_ERR_UNKNOWN;
        apply_category(u, u->cmd_bits, &u->flags, cat, op[0] == '+');
    } else {
        return ACL_ERR_SYNTAX;
    }
    return ACL_ERR_NONE;
}

/* "(rule rule ...)": a new selector with these rules, or none if one fails. */
static int add_selector(acl_user *u, const char *op, size_t len)
{
    char *inner = xmemdup(op + 1, len - 2);
    int argc = 0;
    char **argv = split_args(inner, &argc);
    free(inner);
    if (!argv) return ACL_ERR_SYNTAX;
    acl_selector sel;
    memset(&sel, 0, sizeof(sel));
    for (int i = 0; i < argc; i++) {
        int rc = set_selector_rule(&sel, argv[i], strlen(argv[i]));
        if (rc != ACL_ERR_NONE) {
            selector_clear(&sel);
            free_args(argv, argc);
            return rc;
        }
    }
    free_args(argv, argc);
    u->selectors = realloc(u->selectors, sizeof(acl_selector) * (size_t)(u->nselectors + 1));
    if (!u->selectors) abort();
    u->selectors[u->nselectors++] = sel;
    return ACL_ERR_NONE;
}

static int set_user_rule(acl_user *u, const char *op, size_t len)
{
    if (len == 0) return ACL_ERR_NONE;
    if (op_is(op, len, "on")) {
        u->flags = (u->flags | ACL_USER_ON) & ~ACL_USER_OFF;
    } else if (op_is(op, len, "off")) {
        u->flags = (u->flags | ACL_USER_OFF) & ~ACL_USER_ON;
    } else if (op_is(op, len, "skip-sanitize-payload")) {
        u->flags = (u->flags | ACL_USER_SKIP_SANITIZE) & ~ACL_USER_SANITIZE;
    } else if (op_is(op, len, "sanitize-payload")) {
        u->flags = (u->flags | ACL_USER_SANITIZE) & ~ACL_USER_SKIP_SANITIZE;
    } else if (op_is(op, len, "nopass")) {
        u->flags |= ACL_USER_NOPASS;
        u->npasswords = 0;
    } else if (op_is(op, len, "resetpass")) {
        u->flags &= ~ACL_USER_NOPASS;
        u->npasswords = 0;
    } else if (op[0] == '>' || op[0] == '#') {
        char hash[65];
        if (op[0] == '>') {
            hash_password(op + 1, len - 1, hash);
        } else {
            if (!valid_hash(op + 1, len - 1)) return ACL_ERR_BAD_HASH;
            memcpy(hash, op + 1, 64);
            hash[64] = '\0';
        }
        if (find_password(u, hash) < 0) {
            u->passwords = realloc(u->passwords, sizeof(*u->passwords) * (size_t)(u->npasswords + 1));
            if (!u->passwords) abort();
            memcpy(u->passwords[u->npasswords++], hash, 65);
        }
        u->flags &= ~ACL_USER_NOPASS;
    } else if (op[0] == '<' || op[0] == '!') {
        char hash[65];
        if (op[0] == '<') {
            hash_password(op + 1, len - 1, hash);
        } else {
            if (!valid_hash(op + 1, len - 1)) return ACL_ERR_BAD_HASH;
            memcpy(hash, op + 1, 64);
            hash[64] = '\0';
        }
        int i = find_password(u, hash);
        if (i < 0) return ACL_ERR_NO_SUCH_PASS;
        memmove(u->passwords + i, u->passwords + i + 1, sizeof(*u->passwords) * (size_t)(u->npasswords - i - 1));
        u->npasswords--;
    } else if (op[0] == '(' && op[len - 1] == ')') {
        return add_selector(u, op, len);
    } else if (op_is(op, len, "clearselectors")) {
        clear_selectors(u);
    } else if (op_is(op, len, "reset")) {
        set_user_rule(u, "resetpass", 9);
        set_user_rule(u, "resetkeys", 9);
        set_user_rule(u, "resetchannels", 13);
        set_user_rule(u, "off", 3);
        set_user_rule(u, "sanitize-payload", 16);
        set_user_rule(u, "clearselectors", 14);
        set_user_rule(u, "-@all", 5);
    } else {
        return set_selector_rule(&u->root, op, len);
    }
    return ACL_ERR_NONE;
}

int acl_set_user(acl_user *u, const char *op, size_t len)
{
    int rc = set_user_rule(u, op, len);
    update_unrestricted(u);
    if (u == default_user) pristine = 0;
    return rc;
}

const char *acl_error_text(int err)
{
    switch (err) {
    case ACL_ERR_UNKNOWN: return "Unknown command or category name in ACL";
    case ACL_ERR_SYNTAX: return "Syntax error";
    case ACL_ERR_KEYS_AFTER_ALL:
        return "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any "
               "effect. Try 'resetkeys' to start with an empty list of patterns";
    case ACL_ERR_CHANS_AFTER_ALL:
        return "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have "
               "any effect. Try 'resetchannels' to start with an empty list of channels";
    case ACL_ERR_NO_SUCH_PASS: return "The password you are trying to remove from the user does not exist";
    case ACL_ERR_BAD_HASH:
        return "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
    case ACL_ERR_DUPLICATE_USER: return "Duplicate user found. A user can only be defined once in config files";
    case ACL_ERR_SUB_FIRSTARG: return "Allowing first-arg of a subcommand is not supported";
    default: return "Wrong format";
    }
}

/* ---- checks ------------------------------------------------------------------------ */

static int key_allowed(const acl_selector *s, const char *key, size_t len, uint32_t kflags)
{
    if (s->flags & ACL_SEL_ALLKEYS) return 1;
    int need = 0;
    if (kflags & KSPEC_ACCESS) need |= ACL_PERM_READ;
    if (kflags & (KSPEC_INSERT | KSPEC_DELETE | KSPEC_UPDATE)) need |= ACL_PERM_WRITE;
    for (int i = 0; i < s->nkeys; i++) {
        const acl_key_pattern *p = &s->keys[i];
        if ((p->perms & need) != need) continue;
        if (glob_match(p->pattern, p->len, key, len, 0)) return 1;
    }
    return 0;
}

/* PSUBSCRIBE patterns must appear literally in the list; channels are
 * matched against the list's patterns. */
static int channel_in_list(const acl_selector *s, const char *ch, size_t len, int literal)
{
    for (int i = 0; i < s->nchannels; i++) {
        if (literal ? (s->chanlens[i] == len && !memcmp(s->channels[i], ch, len))
                    : glob_match(s->channels[i], s->chanlens[i], ch, len, 0))
            return 1;
    }
    return 0;
}

int acl_channel_allowed(const acl_user *u, const char *ch, size_t len, int literal)
{
    for (int i = -1; i < u->nselectors; i++) {
        const acl_selector *s = i < 0 ? &u->root : &u->selectors[i];
        if ((s->flags & ACL_SEL_ALLCHANNELS) || channel_in_list(s, ch, len, literal)) return 1;
    }
    return 0;
}

/* The keys of a command, found once for every selector that asks. */
typedef struct key_cache {
    int ready, n;
    int *keys;
    uint32_t *flags;
    int stack_keys[32];
    uint32_t stack_flags[32];
} key_cache;

static void key_cache_fill(key_cache *kc, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    kc->ready = 1;
    kc->keys = kc->stack_keys;
    kc->flags = kc->stack_flags;
    kc->n = command_get_keys(cmd, argc, argv, argvlen, kc->keys, kc->flags, 32);
    if (kc->n > 32) {
        kc->keys = malloc(sizeof(int) * (size_t)kc->n);
        kc->flags = malloc(sizeof(uint32_t) * (size_t)kc->n);
        if (!kc->keys || !kc->flags) abort();
        kc->n = command_get_keys(cmd, argc, argv, argvlen, kc->keys, kc->flags, kc->n);
    }
    /* Arguments the command would reject name no keys, as in Redis. */
    if (kc->n < 0) kc->n = 0;
}

static int selector_check(const acl_selector *s, const command_def *cmd, int id, int argc, char **argv,
                          size_t *argvlen, int *argpos, key_cache *kc)
{
    if (!(s->flags & ACL_SEL_ALLCOMMANDS) && !(cmd->flags & CMD_NO_AUTH) && !bit_get(s->cmd_bits, id)) {
        char **allowed = s->firstargs ? s->firstargs[id] : NULL;
        int idx = id_parent[id] >= 0 ? 2 : 1;
        if (!allowed || argc <= idx) return ACL_DENIED_CMD;
        int hit = 0;
        for (; *allowed && !hit; allowed++) hit = !strcasecmp(argv[idx], *allowed);
        if (!hit) return ACL_DENIED_CMD;
    }
    if (!(s->flags & ACL_SEL_ALLKEYS) && (cmd->key_spec_count || cmd->getkeys)) {
        if (!kc->ready) key_cache_fill(kc, cmd, argc, argv, argvlen);
        for (int i = 0; i < kc->n; i++) {
            int k = kc->keys[i];
            if (!key_allowed(s, argv[k], argvlen ? argvlen[k] : strlen(argv[k]), kc->flags[i])) {
                *argpos = k;
                return ACL_DENIED_KEY;
            }
        }
    }
    if (!(s->flags & ACL_SEL_ALLCHANNELS)) {
        const char *n = cmd->name;
        int last = -1, literal = 0;
        if (!strcmp(n, "publish") || !strcmp(n, "spublish")) last = 1;
        else if (!strcmp(n, "subscribe") || !strcmp(n, "ssubscribe")) last = argc - 1;
        else if (!strcmp(n, "psubscribe")) last = argc - 1, literal = 1;
        for (int j = 1; j <= last && j < argc; j++) {
            if (!channel_in_list(s, argv[j], argvlen ? argvlen[j] : strlen(argv[j]), literal)) {
                *argpos = j;
                return ACL_DENIED_CHANNEL;
            }
        }
    }
    return ACL_OK;
}

int acl_check_command(const acl_user *u, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                      int *argpos)
{
    if (u->unrestricted) return ACL_OK;
    int id = command_id(cmd);
    if (id < 0) return ACL_DENIED_CMD;
    key_cache kc;
    kc.ready = 0;
    /* One selector that allows the command is enough. Otherwise Redis
     * reports the most specific denial (channel > key > command), and among
     * equals the one at the latest argument. */
    int relevant = ACL_DENIED_CMD, last_pos = 0, rc = ACL_DENIED_CMD;
    for (int i = -1; i < u->nselectors; i++) {
        const acl_selector *s = i < 0 ? &u->root : &u->selectors[i];
        int pos = 0;
        rc = selector_check(s, cmd, id, argc, argv, argvlen, &pos, &kc);
        if (rc == ACL_OK) break;
        if (rc > relevant || (rc == relevant && pos > last_pos)) {
            relevant = rc;
            last_pos = pos;
        }
    }
    if (kc.ready && kc.keys != kc.stack_keys) {
        free(kc.keys);
        free(kc.flags);
    }
    if (rc == ACL_OK) return ACL_OK;
    if (argpos) *argpos = last_pos;
    return relevant;
}

/* Redis's ACLSelectorHasUnrestrictedKeyAccess for read access. */
static int selector_reads_all_keys(const acl_selector *s)
{
    if (s->flags & ACL_SEL_ALLKEYS) return 1;
    for (int i = 0; i < s->nkeys; i++)
        if ((s->keys[i].perms & ACL_PERM_READ) && s->keys[i].len == 1 && s->keys[i].pattern[0] == '*') return 1;
    return 0;
}

static int sort_full_key_access(const acl_user *u, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int id = command_id(cmd);
    if (id < 0) return 0;
    key_cache kc;
    kc.ready = 0;
    int full = 0;
    for (int i = -1; i < u->nselectors && !full; i++) {
        const acl_selector *s = i < 0 ? &u->root : &u->selectors[i];
        int pos = 0;
        full = selector_check(s, cmd, id, argc, argv, argvlen, &pos, &kc) == ACL_OK && selector_reads_all_keys(s);
    }
    if (kc.ready && kc.keys != kc.stack_keys) {
        free(kc.keys);
        free(kc.flags);
    }
    return full;
}

const char *acl_sort_option_denied(const acl_user *u, const command_def *cmd, int argc, char **argv,
                                   size_t *argvlen)
{
    if (u->unrestricted || (strcmp(cmd->name, "sort") && strcmp(cmd->name, "sort_ro"))) return NULL;
    int readonly = !strcmp(cmd->name, "sort_ro"), full = -1;
    /* Walk the options as Redis's sortCommand parses them; an argument it
     * rejects first for another reason is left to the store to answer. */
    for (int j = 2; j < argc; j++) {
        int left = argc - j - 1;
        const char *a = argv[j];
        if (!strcasecmp(a, "asc") || !strcasecmp(a, "desc") || !strcasecmp(a, "alpha")) continue;
        if (!strcasecmp(a, "limit") && left >= 2) {
            long long v;
            if (!string_to_ll(argv[j + 1], argvlen[j + 1], &v) || !string_to_ll(argv[j + 2], argvlen[j + 2], &v))
                return NULL;
            j += 2;
            continue;
        }
        if (!readonly && !strcasecmp(a, "store") && left >= 1) {
            j++;
            continue;
        }
        int by = !strcasecmp(a, "by");
        if ((by || !strcasecmp(a, "get")) && left >= 1) {
            j++;
            if (by && !strchr(argv[j], '*')) continue; /* a constant: nothing is looked up */
            if (full < 0) full = sort_full_key_access(u, cmd, argc, argv, argvlen);
            if (!full)
                return by ? "ERR BY option of SORT denied due to insufficient ACL permissions."
                          : "ERR GET option of SORT denied due to insufficient ACL permissions.";
            continue;
        }
        return NULL;
    }
    return NULL;
}

static void collect_channels(const acl_user *u, const acl_selector **list, int *n)
{
    *n = 0;
    list[(*n)++] = &u->root;
    for (int i = 0; i < u->nselectors; i++) list[(*n)++] = &u->selectors[i];
}

int acl_channels_may_revoke(const acl_user *old, const acl_user *upcoming)
{
    const acl_selector **a = xcalloc((size_t)old->nselectors + 1, sizeof(*a));
    const acl_selector **b = xcalloc((size_t)upcoming->nselectors + 1, sizeof(*b));
    int na, nb, revoked = 0;
    collect_channels(old, a, &na);
    collect_channels(upcoming, b, &nb);
    for (int j = 0; j < nb; j++)
        if (b[j]->flags & ACL_SEL_ALLCHANNELS) goto done;
    for (int i = 0; i < na && !revoked; i++)
        for (int c = 0; c < a[i]->nchannels && !revoked; c++) {
            int found = 0;
            for (int j = 0; j < nb && !found; j++)
                for (int d = 0; d < b[j]->nchannels && !found; d++)
                    found = a[i]->chanlens[c] == b[j]->chanlens[d] &&
                            !memcmp(a[i]->channels[c], b[j]->channels[d], a[i]->chanlens[c]);
            if (!found) revoked = 1;
        }
done:
    free(a);
    free(b);
    return revoked;
}

/* ---- descriptions --------------------------------------------------------------------- */

static struct evbuffer *buf_new(void)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) abort();
    return b;
}

static void buf_cat(struct evbuffer *b, const char *s) { evbuffer_add(b, s, strlen(s)); }

static void count_category(const uint64_t *bits, uint32_t cat, unsigned long *on, unsigned long *off)
{
    *on = *off = 0;
    for (int i = 0; i < id_count; i++)
        if (id_categories[i] & cat) {
            if (bit_get(bits, i)) (*on)++;
            else (*off)++;
        }
}

static void describe_single(const acl_selector *u, uint64_t *fake, int id, struct evbuffer *b)
{
    int userbit = bit_get(u->cmd_bits, id), fakebit = bit_get(fake, id);
    if (userbit != fakebit) {
        buf_cat(b, userbit ? "+" : "-");
        buf_cat(b, ids[id]->name);
        buf_cat(b, " ");
        change_perm(NULL, fake, NULL, id, userbit);
    }
    if (id < command_table_count)
        for (int s = 0; s < command_table[id].subcommand_count; s++) describe_single(u, fake, first_sub_id[id] + s, b);
    if (!userbit && u->firstargs && u->firstargs[id]) {
        for (char **a = u->firstargs[id]; *a; a++) {
            buf_cat(b, "+");
            buf_cat(b, ids[id]->name);
            buf_cat(b, "|");
            buf_cat(b, *a);
            buf_cat(b, " ");
        }
    }
}

/* Redis's description: +@all or -@all, then the categories that fit best one
 * after the other, then single commands to make the bitmap match exactly.
 * Single commands follow the command table's order (Redis's follows its
 * hash table, which varies from one process to the next). */
char *acl_describe_commands(const acl_selector *u)
{
    struct evbuffer *b = buf_new();
    int additive = !u->future_commands;
    uint64_t fake[ACL_CMD_WORDS], temp[ACL_CMD_WORDS];
    memset(fake, additive ? 0 : 0xff, sizeof(fake));
    memcpy(temp, u->cmd_bits, sizeof(temp));
    buf_cat(b, additive ? "-@all " : "+@all ");
    char applied[32] = {0};
    for (;;) {
        int best = -1;
        unsigned long mindiff = ULONG_MAX, maxsame = 0;
        for (int j = 0; category_names[j]; j++) {
            if (applied[j]) continue;
            unsigned long on, off;
            count_category(temp, 1u << j, &on, &off);
            unsigned long diff = additive ? off : on, same = additive ? on : off;
            if (same > diff && (diff < mindiff || (diff == mindiff && same > maxsame))) {
                best = j;
                mindiff = diff;
                maxsame = same;
            }
        }
        if (best < 0) break;
        apply_category(NULL, fake, NULL, 1u << best, additive);
        apply_category(NULL, temp, NULL, 1u << best, !additive);
        buf_cat(b, additive ? "+@" : "-@");
        buf_cat(b, category_names[best]);
        buf_cat(b, " ");
        applied[best] = 1;
    }
    for (int i = 0; i < command_table_count; i++) describe_single(u, fake, i, b);
    size_t len;
    char *text = buffer_take_string(b, &len);
    if (len) text[len - 1] = '\0'; /* the last space */
    return text;
}

static void describe_pattern(struct evbuffer *b, const acl_key_pattern *p)
{
    buf_cat(b, p->perms == ACL_PERM_ALL ? "~" : p->perms == ACL_PERM_READ ? "%R~" : "%W~");
    evbuffer_add(b, p->pattern, p->len);
}

char *acl_describe_keys(const acl_selector *u)
{
    struct evbuffer *b = buf_new();
    if (u->flags & ACL_SEL_ALLKEYS) {
        buf_cat(b, "~*");
    } else {
        for (int i = 0; i < u->nkeys; i++) {
            if (i) buf_cat(b, " ");
            describe_pattern(b, &u->keys[i]);
        }
    }
    return buffer_take_string(b, NULL);
}

char *acl_describe_channels(const acl_selector *u)
{
    struct evbuffer *b = buf_new();
    if (u->flags & ACL_SEL_ALLCHANNELS) {
        buf_cat(b, "&*");
    } else {
        for (int i = 0; i < u->nchannels; i++) {
            if (i) buf_cat(b, " ");
            buf_cat(b, "&");
            evbuffer_add(b, u->channels[i], u->chanlens[i]);
        }
    }
    return buffer_take_string(b, NULL);
}

/* Keys, channels, then command rules, as one selector appears in ACL LIST. */
static void describe_selector(struct evbuffer *b, const acl_selector *s)
{
    if (s->flags & ACL_SEL_ALLKEYS) {
        buf_cat(b, "~* ");
    } else {
        for (int i = 0; i < s->nkeys; i++) {
            describe_pattern(b, &s->keys[i]);
            buf_cat(b, " ");
        }
    }
    if (s->flags & ACL_SEL_ALLCHANNELS) {
        buf_cat(b, "&* ");
    } else {
        buf_cat(b, "resetchannels ");
        for (int i = 0; i < s->nchannels; i++) {
            buf_cat(b, "&");
            evbuffer_add(b, s->channels[i], s->chanlens[i]);
            buf_cat(b, " ");
        }
    }
    char *rules = acl_describe_commands(s);
    buf_cat(b, rules);
    free(rules);
}

char *acl_describe_user(const acl_user *u)
{
    static const struct { int flag; const char *name; } flag_names[] = {
        {ACL_USER_ON, "on"}, {ACL_USER_OFF, "off"}, {ACL_USER_NOPASS, "nopass"},
        {ACL_USER_SKIP_SANITIZE, "skip-sanitize-payload"}, {ACL_USER_SANITIZE, "sanitize-payload"}, {0, NULL},
    };
    struct evbuffer *b = buf_new();
    for (int i = 0; flag_names[i].name; i++)
        if (u->flags & flag_names[i].flag) {
            buf_cat(b, flag_names[i].name);
            buf_cat(b, " ");
        }
    for (int i = 0; i < u->npasswords; i++) {
        buf_cat(b, "#");
        evbuffer_add(b, u->passwords[i], 64);
        buf_cat(b, " ");
    }
    for (int i = -1; i < u->nselectors; i++) {
        const acl_selector *s = i < 0 ? &u->root : &u->selectors[i];
        if (i >= 0) buf_cat(b, " (");
        describe_selector(b, s);
        if (i >= 0) buf_cat(b, ")");
    }
    return buffer_take_string(b, NULL);
}

char **acl_merge_selector_args(int argc, char **argv, size_t *argvlen, int *merged_argc, size_t **merged_lens,
                               int *bad)
{
    char **out = xcalloc((size_t)argc + 1, sizeof(char *));
    size_t *lens = xcalloc((size_t)argc + 1, sizeof(size_t));
    int n = 0, open_at = -1;
    struct evbuffer *cur = buf_new();
    for (int j = 0; j < argc; j++) {
        const char *op = argv[j];
        size_t len = argvlen[j];
        if (open_at < 0 && len && op[0] == '(' && op[len - 1] != ')') {
            open_at = j;
            evbuffer_drain(cur, evbuffer_get_length(cur));
            evbuffer_add(cur, op, len);
            continue;
        }
        if (open_at >= 0) {
            buf_cat(cur, " ");
            evbuffer_add(cur, op, len);
            if (len && op[len - 1] == ')') {
                lens[n] = evbuffer_get_length(cur);
                out[n] = xmemdup((const char *)evbuffer_pullup(cur, -1), lens[n]);
                n++;
                open_at = -1;
            }
            continue;
        }
        out[n] = xmemdup(op, len);
        lens[n++] = len;
    }
    evbuffer_free(cur);
    if (open_at >= 0) {
        for (int i = 0; i < n; i++) free(out[i]);
        free(out);
        free(lens);
        *bad = open_at;
        return NULL;
    }
    *merged_argc = n;
    *merged_lens = lens;
    return out;
}

/* ---- configuration and the ACL file ------------------------------------------------ */

typedef struct pending_user {
    int argc;
    char **argv; /* name, then rules */
} pending_user;

static pending_user *pending;
static int npending;

const char *acl_config_user(int argc, char **argv)
{
    static char why[512];
    acl_init();
    if (argc < 1) return "wrong number of arguments";
    for (int i = 0; i < npending; i++)
        if (!strcmp(pending[i].argv[0], argv[0])) {
            snprintf(why, sizeof(why), "Error in user declaration '%s': %s", argv[0],
                     acl_error_text(ACL_ERR_DUPLICATE_USER));
            return why;
        }
    size_t *lens = xcalloc((size_t)argc, sizeof(size_t));
    for (int i = 1; i < argc; i++) lens[i] = strlen(argv[i]);
    int nrules = 0, bad = 0;
    size_t *rlens = NULL;
    char **rules = acl_merge_selector_args(argc - 1, argv + 1, lens + 1, &nrules, &rlens, &bad);
    free(lens);
    if (!rules) {
        snprintf(why, sizeof(why), "Error in user declaration '%s': Unmatched parenthesis", argv[1 + bad]);
        return why;
    }
    free(rlens);
    /* Rules are tried on a scratch user now so mistakes stop the start. */
    acl_user *fake = acl_user_new_unlinked("", 0);
    for (int i = 0; i < nrules; i++) {
        int rc = acl_set_user(fake, rules[i], strlen(rules[i]));
        if (rc != ACL_ERR_NONE && rc != ACL_ERR_UNKNOWN) {
            snprintf(why, sizeof(why), "Error in user declaration '%s': %s", rules[i], acl_error_text(rc));
            acl_user_free(fake);
            free_args(rules, nrules);
            return why;
        }
    }
    acl_user_free(fake);
    pending = realloc(pending, sizeof(*pending) * (size_t)(npending + 1));
    if (!pending) abort();
    pending_user *p = &pending[npending++];
    p->argc = nrules + 1;
    p->argv = xcalloc((size_t)nrules + 1, sizeof(char *));
    p->argv[0] = xmemdup(argv[0], strlen(argv[0]));
    for (int i = 0; i < nrules; i++) p->argv[i + 1] = rules[i];
    free(rules);
    return NULL;
}

int acl_config_user_count(void) { return npending; }

static void free_pending(void)
{
    for (int i = 0; i < npending; i++) free_args(pending[i].argv, pending[i].argc);
    free(pending);
    pending = NULL;
    npending = 0;
}

static void ignore_gone(void *ctx, acl_user *u) { (void)ctx, (void)u; }

int acl_load_startup(const char *aclfile, char *err, size_t errlen)
{
    acl_init();
    if (aclfile && aclfile[0] && npending) {
        snprintf(err, errlen,
                 "users are declared both with 'user' directives and in the aclfile '%s': use one or the other",
                 aclfile);
        free_pending();
        return -1;
    }
    for (int i = 0; i < npending; i++) {
        pending_user *p = &pending[i];
        if (acl_has_spaces(p->argv[0], strlen(p->argv[0]))) {
            snprintf(err, errlen, "spaces are not allowed in user names");
            free_pending();
            return -1;
        }
        acl_user *u = acl_create_user(p->argv[0], strlen(p->argv[0]));
        if (!u) {
            u = default_user; /* only "default" can exist already */
            acl_set_user(u, "reset", 5);
        }
        for (int j = 1; j < p->argc; j++) {
            int rc = acl_set_user(u, p->argv[j], strlen(p->argv[j]));
            if (rc != ACL_ERR_NONE) {
                snprintf(err, errlen, "error in ACL rule '%s' of user '%s': %s", p->argv[j], p->argv[0],
                         acl_error_text(rc));
                free_pending();
                return -1;
            }
        }
    }
    free_pending();
    if (aclfile && aclfile[0]) {
        char *errors = acl_load_file(aclfile, ignore_gone, NULL);
        if (errors) {
            snprintf(err, errlen, "ACL file errors: %s", errors);
            free(errors);
            return -1;
        }
    }
    return 0;
}

static int trim_char(char ch, const char *set) { return ch && strchr(set, ch) != NULL; }

char *acl_load_file(const char *path, void (*gone)(void *ctx, acl_user *u), void *ctx)
{
    acl_init();
    struct evbuffer *errs = buf_new();
    size_t text_len;
    char *text = file_read_all(path, &text_len);
    if (!text) {
        evbuffer_add_printf(errs, "Error loading ACLs, opening file '%s': %s", path, strerror(errno));
        return buffer_take_string(errs, NULL);
    }

    /* Loaded into a new set, swapped in only if every line is good. */
    acl_user **old_users = users;
    int old_n = nusers, old_pristine = pristine;
    users = NULL;
    nusers = 0;
    int linenum = 0;
    char *cursor = text;
    for (;;) {
        char *nl = strchr(cursor, '\n');
        if (nl) *nl = '\0';
        char *line = cursor;
        linenum++;
        /* Trim spaces, tabs and line ends at both sides. */
        while (trim_char(*line, " \t\r\n")) line++;
        size_t len = strlen(line);
        while (len && trim_char(line[len - 1], " \t\r\n")) line[--len] = '\0';
        if (len) {
            /* Split on single spaces, as the file format is written. */
            int argc = 0;
            char **argv = NULL;
            char *p = line;
            for (;;) {
                char *sp = strchr(p, ' ');
                argv = realloc(argv, sizeof(char *) * (size_t)(argc + 1));
                if (!argv) abort();
                argv[argc++] = p;
                if (!sp) break;
                *sp = '\0';
                p = sp + 1;
            }
            if (strcmp(argv[0], "user") || argc < 2) {
                evbuffer_add_printf(errs, "%s:%d should start with user keyword followed by the username. ", path, linenum);
            } else if (acl_has_spaces(argv[1], strlen(argv[1]))) {
                evbuffer_add_printf(errs, "'%s:%d: username '%s' contains invalid characters. ", path, linenum, argv[1]);
            } else {
                acl_user *u = acl_create_user(argv[1], strlen(argv[1]));
                if (!u) {
                    evbuffer_add_printf(errs, "WARNING: Duplicate user '%s' found on line %d. ", argv[1], linenum);
                } else {
                    size_t *lens = xcalloc((size_t)argc, sizeof(size_t));
                    for (int j = 2; j < argc; j++) lens[j] = strlen(argv[j]);
                    int nrules = 0, bad = 0;
                    size_t *rlens = NULL;
                    char **rules = acl_merge_selector_args(argc - 2, argv + 2, lens + 2, &nrules, &rlens, &bad);
                    free(lens);
                    if (!rules)
                        evbuffer_add_printf(errs, "%s:%d: Unmatched parenthesis in selector definition.", path, linenum);
                    for (int j = 0; rules && j < nrules; j++) {
                        char *op = rules[j];
                        size_t oplen = rlens[j];
                        while (oplen && trim_char(op[oplen - 1], "\t\r\n")) op[--oplen] = '\0';
                        while (trim_char(*op, "\t\r\n")) op++, oplen--;
                        int rc = acl_set_user(u, op, oplen);
                        if (rc != ACL_ERR_NONE) evbuffer_add_printf(errs, "%s:%d: %s. ", path, linenum, acl_error_text(rc));
                    }
                    if (rules) free_args(rules, nrules);
                    free(rlens);
                }
            }
            free(argv);
        }
        if (!nl) break;
        cursor = nl + 1;
    }
    free(text);
    acl_user **new_users = users;
    int new_n = nusers;
    if (evbuffer_get_length(errs) == 0) {
        /* The default user keeps its identity (clients refer to it); it takes
         * the file's rules, or the built-in ones if the file has none. */
        users = old_users;
        nusers = old_n;
        acl_user *loaded_default = NULL;
        for (int i = 0; i < new_n; i++)
            if (new_users[i]->namelen == 7 && !memcmp(new_users[i]->name, "default", 7)) loaded_default = new_users[i];
        if (!loaded_default) {
            loaded_default = acl_user_new_unlinked("default", 7);
            make_default(loaded_default);
        }
        acl_user_copy(default_user, loaded_default);
        for (int i = 0; i < old_n; i++) {
            acl_user *u = old_users[i];
            if (u == default_user) continue;
            u->deleted = 1;
            acl_user_retain(u); /* gone() may drop the clients' references */
            if (gone) gone(ctx, u);
            acl_user_release(u);
        }
        free(old_users);
        users = NULL;
        nusers = 0;
        for (int i = 0; i < new_n; i++) {
            if (new_users[i] == loaded_default) {
                acl_user_free(loaded_default);
                loaded_default = NULL;
                insert_user(default_user);
            } else {
                insert_user(new_users[i]);
            }
        }
        if (loaded_default) {
            acl_user_free(loaded_default);
            insert_user(default_user);
        }
        free(new_users);
        pristine = 0;
        evbuffer_free(errs);
        return NULL;
    }
    for (int i = 0; i < new_n; i++) acl_user_free(new_users[i]);
    free(new_users);
    users = old_users;
    nusers = old_n;
    pristine = old_pristine;
    buf_cat(errs, "WARNING: ACL errors detected, no change to the previously active ACL rules was performed");
    return buffer_take_string(errs, NULL);
}

char *acl_config_lines(void)
{
    struct evbuffer *b = buf_new();
    for (int i = 0; i < nusers; i++) {
        buf_cat(b, "user ");
        evbuffer_add(b, users[i]->name, users[i]->namelen);
        buf_cat(b, " ");
        char *d = acl_describe_user(users[i]);
        buf_cat(b, d);
        free(d);
        buf_cat(b, "\n");
    }
    return buffer_take_string(b, NULL);
}

int acl_save_file(const char *path)
{
    char *text = acl_config_lines();
    int rc = file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int acl_is_pristine(void) { return pristine && nusers == 1; }

/* ---- log --------------------------------------------------------------------------- */

static acl_log_entry *log_head;

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void log_entry_free(acl_log_entry *e)
{
    free(e->object);
    free(e->username);
    free(e->cinfo);
    free(e);
}

void acl_log_add(int reason, int context, const char *object, size_t olen, const char *username, size_t ulen,
                 const char *cinfo, size_t clen, long long max_len)
{
    long long now = now_ms();
    /* Similar entries within a minute are folded together, looking at the
     * newest ten only, as Redis does. */
    acl_log_entry *prev = NULL, *e = log_head;
    for (int scanned = 0; e && scanned < 10; scanned++, prev = e, e = e->next) {
        long long delta = e->ctime_ms - now;
        if (delta < 0) delta = -delta;
        if (e->reason == reason && e->context == context && delta <= 60000 && e->object_len == olen &&
            !memcmp(e->object, object, olen) && e->username_len == ulen && !memcmp(e->username, username, ulen)) {
            if (prev) {
                prev->next = e->next;
                e->next = log_head;
                log_head = e;
            }
            free(e->cinfo);
            e->cinfo = xmemdup(cinfo, clen);
            e->cinfo_len = clen;
            e->ctime_ms = now;
            e->count++;
            return;
        }
    }
    e = xcalloc(1, sizeof(*e));
    e->count = 1;
    e->reason = reason;
    e->context = context;
    e->object = xmemdup(object, olen);
    e->object_len = olen;
    e->username = xmemdup(username, ulen);
    e->username_len = ulen;
    e->cinfo = xmemdup(cinfo, clen);
    e->cinfo_len = clen;
    e->ctime_ms = now;
    e->next = log_head;
    log_head = e;
    long long n = 0;
    for (acl_log_entry *x = log_head; x; x = x->next) {
        n++;
        if (n == max_len && x->next) {
            acl_log_entry *rest = x->next;
            x->next = NULL;
            while (rest) {
                acl_log_entry *nx = rest->next;
                log_entry_free(rest);
                rest = nx;
            }
            break;
        }
    }
    if (max_len <= 0) acl_log_reset();
}

acl_log_entry *acl_log_entries(void) { return log_head; }

void acl_log_reset(void)
{
    while (log_head) {
        acl_log_entry *n = log_head->next;
        log_entry_free(log_head);
        log_head = n;
    }
}

void acl_shutdown(void)
{
    acl_log_reset();
    for (int i = 0; i < nusers; i++)
        if (users[i] != default_user && users[i]->refs == 0) acl_user_free(users[i]);
    free(users);
    users = NULL;
    nusers = 0;
    acl_user_free(default_user);
    default_user = NULL;
    free(ids);
    free(id_categories);
    free(id_parent);
    free(first_sub_id);
    ids = NULL;
    free_pending();
}
