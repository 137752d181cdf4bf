/* Key placement as twemproxy 0.5.0 does it: see placement.h. */
#include "util/placement.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- hash functions ---------------------------------------------------- */

/* MD5 (RFC 1321). */
static const uint32_t md5_sines[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static const uint8_t md5_shifts[4][4] = {
    {7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21},
};

static uint32_t rotl32(uint32_t x, unsigned k)
{
    return (x << k) | (x >> (32 - k));
}

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void md5_block(uint32_t state[4], const unsigned char block[64])
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = load_le32(block + 4 * i);
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g, round = i / 16;
        switch (round) {
        case 0: f = (b & c) | (~b & d); g = i; break;
        case 1: f = (d & b) | (~d & c); g = (5 * i + 1) % 16; break;
        case 2: f = b ^ c ^ d; g = (3 * i + 5) % 16; break;
        default: f = c ^ (b | ~d); g = (7 * i) % 16; break;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rotl32(a + f + md5_sines[i] + m[g], md5_shifts[round][i % 4]);
        a = t;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

static void md5_digest(const char *data, size_t len, unsigned char out[16])
{
    uint32_t state[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    const unsigned char *p = (const unsigned char *)data;
    size_t left = len;
    while (left >= 64) {
        md5_block(state, p);
        p += 64;
        left -= 64;
    }
    /* The tail, the 0x80 marker and the bit length fill one or two blocks. */
    unsigned char tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tail_len = left < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 8 + i] = (unsigned char)(bits >> (8 * i));
    md5_block(state, tail);
    if (tail_len == 128)
        md5_block(state, tail + 64);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(state[i] >> (8 * j));
}

/* Where twemproxy widens a key byte through plain char, so does this: the
 * same placement as nutcracker built for the same platform. */
static uint32_t char_widened(char c)
{
    return (uint32_t)c;
}

static uint32_t hash_one_at_a_time(const char *key, size_t len)
{
    uint32_t h = 0;
    for (size_t i = 0; i < len; i++) {
        h += char_widened(key[i]);
        h += h << 10;
        h ^= h >> 6;
    }
    h += h << 3;
    h ^= h >> 11;
    h += h << 15;
    return h;
}

static uint32_t hash_md5(const char *key, size_t len)
{
    unsigned char d[16];
    md5_digest(key, len, d);
    return load_le32(d);
}

/* CRC-16/XMODEM, except that the register is 32 bits wide and never
 * masked: twemproxy returns the bits shifted past 16 too, and modula sees them. */
static uint32_t hash_crc16(const char *key, size_t len)
{
    uint32_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t r = ((crc >> 8) ^ (unsigned char)key[i]) & 0xff;
        uint32_t t = r << 8;
        for (int b = 0; b < 8; b++)
            t = (t & 0x8000) ? ((t << 1) ^ 0x1021) : (t << 1);
        crc = (crc << 8) ^ (t & 0xffff);
    }
    return crc;
}

/* CRC-32 (IEEE, reflected), bit by bit: keys are short. */
static uint32_t crc32_ieee(const char *key, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned char)key[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? ((crc >> 1) ^ 0xedb88320u) : (crc >> 1);
    }
    return ~crc;
}

/* libmemcached's crc32: 15 bits of the CRC. */
static uint32_t hash_crc32(const char *key, size_t len)
{
    return (crc32_ieee(key, len) >> 16) & 0x7fff;
}

static uint32_t hash_crc32a(const char *key, size_t len)
{
    return crc32_ieee(key, len);
}

#define FNV64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME UINT64_C(0x100000001b3)
#define FNV32_OFFSET UINT32_C(2166136261)
#define FNV32_PRIME UINT32_C(16777619)

static uint32_t hash_fnv1_64(const char *key, size_t len)
{
    uint64_t h = FNV64_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h *= FNV64_PRIME;
        h ^= (uint64_t)key[i]; /* through plain char, as char_widened */
    }
    return (uint32_t)h;
}

/* twemproxy's "64-bit" fnv1a runs in 32 bits, on the low halves of the
 * 64-bit offset and prime. */
static uint32_t hash_fnv1a_64(const char *key, size_t len)
{
    uint32_t h = (uint32_t)FNV64_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= char_widened(key[i]);
        h *= (uint32_t)FNV64_PRIME;
    }
    return h;
}

static uint32_t hash_fnv1_32(const char *key, size_t len)
{
    uint32_t h = FNV32_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h *= FNV32_PRIME;
        h ^= char_widened(key[i]);
    }
    return h;
}

static uint32_t hash_fnv1a_32(const char *key, size_t len)
{
    uint32_t h = FNV32_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= char_widened(key[i]);
        h *= FNV32_PRIME;
    }
    return h;
}

static uint32_t load_le16(const char *p)
{
    return (uint32_t)(unsigned char)p[0] | ((uint32_t)(unsigned char)p[1] << 8);
}

/* Paul Hsieh's SuperFastHash; the third byte of a 3-byte tail goes
 * through plain char in twemproxy. */
static uint32_t hash_hsieh(const char *key, size_t len)
{
    if (len == 0)
        return 0;
    uint32_t h = 0;
    size_t rem = len & 3;
    for (size_t n = len >> 2; n > 0; n--) {
        h += load_le16(key);
        uint32_t t = (load_le16(key + 2) << 11) ^ h;
        h = (h << 16) ^ t;
        key += 4;
        h += h >> 11;
    }
    switch (rem) {
    case 3:
        h += load_le16(key);
        h ^= h << 16;
        h ^= char_widened(key[2]) << 18;
        h += h >> 11;
        break;
    case 2:
        h += load_le16(key);
        h ^= h << 11;
        h += h >> 17;
        break;
    case 1:
        h += (unsigned char)key[0];
        h ^= h << 10;
        h += h >> 1;
        break;
    default:
        break;
    }
    h ^= h << 3;
    h += h >> 5;
    h ^= h << 4;
    h += h >> 17;
    h ^= h << 25;
    h += h >> 6;
    return h;
}

/* MurmurHash2 with twemproxy's seed (0xdeadbeef times the length). */
static uint32_t hash_murmur(const char *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = (UINT32_C(0xdeadbeef) * (uint32_t)len) ^ (uint32_t)len;
    const unsigned char *p = (const unsigned char *)key;
    size_t left = len;
    while (left >= 4) {
        uint32_t k = load_le32(p);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        left -= 4;
    }
    switch (left) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* Bob Jenkins' lookup3 hashlittle, initial value 13. */
static uint32_t hash_jenkins(const char *key, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeef + (uint32_t)len + 13;
    const unsigned char *k = (const unsigned char *)key;
    if (len == 0)
        return c;
    while (len > 12) {
        a += load_le32(k);
        b += load_le32(k + 4);
        c += load_le32(k + 8);
        a -= c; a ^= rotl32(c, 4);  c += b;
        b -= a; b ^= rotl32(a, 6);  a += c;
        c -= b; c ^= rotl32(b, 8);  b += a;
        a -= c; a ^= rotl32(c, 16); c += b;
        b -= a; b ^= rotl32(a, 19); a += c;
        c -= b; c ^= rotl32(b, 4);  b += a;
        len -= 12;
        k += 12;
    }
    /* The last 1..12 bytes, zero-padded. */
    unsigned char last[12] = {0};
    memcpy(last, k, len);
    a += load_le32(last);
    b += load_le32(last + 4);
    c += load_le32(last + 8);
    c ^= b; c -= rotl32(b, 14);
    a ^= c; a -= rotl32(c, 11);
    b ^= a; b -= rotl32(a, 25);
    c ^= b; c -= rotl32(b, 16);
    a ^= c; a -= rotl32(c, 4);
    b ^= a; b -= rotl32(a, 14);
    c ^= b; c -= rotl32(b, 24);
    return c;
}

typedef uint32_t (*hash_fn)(const char *key, size_t len);

static const struct {
    const char *name;
    hash_fn fn;
} hashes[] = {
    [PLACEMENT_ONE_AT_A_TIME] = {"one_at_a_time", hash_one_at_a_time},
    [PLACEMENT_MD5] = {"md5", hash_md5},
    [PLACEMENT_CRC16] = {"crc16", hash_crc16},
    [PLACEMENT_CRC32] = {"crc32", hash_crc32},
    [PLACEMENT_CRC32A] = {"crc32a", hash_crc32a},
    [PLACEMENT_FNV1_64] = {"fnv1_64", hash_fnv1_64},
    [PLACEMENT_FNV1A_64] = {"fnv1a_64", hash_fnv1a_64},
    [PLACEMENT_FNV1_32] = {"fnv1_32", hash_fnv1_32},
    [PLACEMENT_FNV1A_32] = {"fnv1a_32", hash_fnv1a_32},
    [PLACEMENT_HSIEH] = {"hsieh", hash_hsieh},
    [PLACEMENT_MURMUR] = {"murmur", hash_murmur},
    [PLACEMENT_JENKINS] = {"jenkins", hash_jenkins},
};
#define NHASHES ((int)(sizeof(hashes) / sizeof(hashes[0])))

static const char *const distributions[] = {
    [PLACEMENT_KETAMA] = "ketama",
    [PLACEMENT_MODULA] = "modula",
    [PLACEMENT_RANDOM] = "random",
};
#define NDISTRIBUTIONS ((int)(sizeof(distributions) / sizeof(distributions[0])))

int placement_hash_parse(const char *name)
{
    for (int i = 0; name && i < NHASHES; i++)
        if (strcmp(name, hashes[i].name) == 0)
            return i;
    return -1;
}

int placement_distribution_parse(const char *name)
{
    for (int i = 0; name && i < NDISTRIBUTIONS; i++)
        if (strcmp(name, distributions[i]) == 0)
            return i;
    return -1;
}

const char *placement_hash_name(int hash)
{
    return hash >= 0 && hash < NHASHES ? hashes[hash].name : NULL;
}

const char *placement_distribution_name(int distribution)
{
    return distribution >= 0 && distribution < NDISTRIBUTIONS ? distributions[distribution] : NULL;
}

uint32_t placement_hash(int hash, const char *key, size_t len)
{
    if (hash < 0 || hash >= NHASHES)
        return 0;
    return hashes[hash].fn(key, len);
}

/* ---- server names ------------------------------------------------------- */

/* libmemcached left the port out of a server's ketama name when it was the
 * memcached default; twemproxy keeps that rule. */
#define MEMCACHED_DEFAULT_PORT 11211

size_t placement_default_name(const char *host, int port, char *buf, size_t buflen)
{
    int n;
    if (host[0] == '/')
        /* twemproxy cuts "/path:weight" at its last ':' but counts a port
         * field (empty) after the address, so the name keeps that ':';
         * a path with a ':' of its own is cut there and keeps its full text. */
        n = snprintf(buf, buflen, strchr(host, ':') ? "%s" : "%s:", host);
    else if (port == MEMCACHED_DEFAULT_PORT)
        n = snprintf(buf, buflen, "%s", host);
    else
        n = snprintf(buf, buflen, "%s:%d", host, port);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- layouts ------------------------------------------------------------ */

/* twemproxy's ketama: 160 points per server at equal weights, made in
 * fours from the MD5 of "name-i", the point names cut to 272 bytes. */
#define KETAMA_POINTS_PER_SERVER 160
#define KETAMA_POINTS_PER_HASH 4
#define KETAMA_MAX_POINT_NAME 273

typedef struct placement_point {
    uint32_t value;
    int owner;    /* index into the caller's servers */
    uint32_t seq; /* order of making: equal values keep it, as twemproxy's sort leaves them */
} placement_point;

struct placement {
    int distribution;
    int hash;
    char tag[2];
    int has_tag;
    int n;
    char **names;
    size_t *name_lens;
    unsigned *weights;
    int *by_name;    /* server indices in twemproxy's order: by name length, then bytes */
    int *live;
    int nlive;
    placement_point *points;
    int npoints;
};

/* twemproxy's order of server names: shorter first, then by bytes. */
static int name_order_cmp(const placement *p, int x, int y)
{
    if (p->name_lens[x] != p->name_lens[y])
        return p->name_lens[x] < p->name_lens[y] ? -1 : 1;
    return memcmp(p->names[x], p->names[y], p->name_lens[x]);
}

static int point_cmp(const void *a, const void *b)
{
    const placement_point *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Points of one server, with twemproxy's float arithmetic: the result
 * differs from the exact one for some weights, and must not. */
static uint32_t ketama_points_of(unsigned weight, unsigned total_weight, int nlive)
{
    float pct = (float)weight / (float)total_weight;
    float per_hash_groups = floorf((float)(pct * KETAMA_POINTS_PER_SERVER / 4 * (float)nlive + 0.0000000001));
    return (uint32_t)(per_hash_groups * 4);
}

static void ketama_point_values(const char *name, size_t name_len, uint32_t group, uint32_t out[4])
{
    char point_name[KETAMA_MAX_POINT_NAME];
    int len = snprintf(point_name, sizeof(point_name), "%.*s-%u", (int)name_len, name, group);
    size_t hashed = len < 0 ? 0 : (size_t)len;
    if (hashed >= sizeof(point_name))
        hashed = sizeof(point_name) - 1;
    unsigned char d[16];
    md5_digest(point_name, hashed, d);
    for (int i = 0; i < 4; i++)
        out[i] = load_le32(d + 4 * i);
}

/* Builds the layout for the live servers into fresh memory; -1 out of memory. */
static int build_layout(const placement *p, const int *live, placement_point **points_out, int *npoints_out)
{
    int nlive = 0;
    unsigned long long total_weight = 0;
    for (int i = 0; i < p->n; i++) {
        if (live[i]) {
            nlive++;
            total_weight += p->weights[i];
        }
    }
    size_t cap = 0;
    if (p->distribution == PLACEMENT_KETAMA) {
        for (int i = 0; i < p->n; i++)
            if (live[i])
                cap += ketama_points_of(p->weights[i], (unsigned)total_weight, nlive);
    } else if (p->distribution == PLACEMENT_MODULA) {
        cap = (size_t)total_weight;
    } else {
        cap = (size_t)nlive;
    }
    if (cap > (size_t)INT32_MAX)
        return -1;
    placement_point *points = calloc(cap ? cap : 1, sizeof(*points));
    if (!points)
        return -1;
    uint32_t seq = 0;
#define ADD_POINT(v, owner) do { points[seq] = (placement_point){(v), (owner), seq}; seq++; } while (0)
    for (int k = 0; k < p->n; k++) {
        int i = p->by_name[k];
        if (!live[i])
            continue;
        if (p->distribution == PLACEMENT_KETAMA) {
            uint32_t npoints = ketama_points_of(p->weights[i], (unsigned)total_weight, nlive);
            for (uint32_t g = 0; g < npoints / KETAMA_POINTS_PER_HASH; g++) {
                uint32_t values[4];
                ketama_point_values(p->names[i], p->name_lens[i], g, values);
                for (int j = 0; j < KETAMA_POINTS_PER_HASH; j++)
                    ADD_POINT(values[j], i);
            }
        } else if (p->distribution == PLACEMENT_MODULA) {
            for (unsigned w = 0; w < p->weights[i]; w++)
                ADD_POINT(0, i);
        } else {
            ADD_POINT(0, i);
        }
    }
#undef ADD_POINT
    if (p->distribution == PLACEMENT_KETAMA)
        qsort(points, seq, sizeof(*points), point_cmp);
    *points_out = points;
    *npoints_out = (int)seq;
    return 0;
}

placement *placement_new(int distribution, int hash, const char *hash_tag, const placement_server *servers, int n)
{
    if (distribution < 0 || distribution >= NDISTRIBUTIONS || hash < 0 || hash >= NHASHES || n < 1 || !servers)
        return NULL;
    if (hash_tag && hash_tag[0] && strlen(hash_tag) != 2)
        return NULL;
    for (int i = 0; i < n; i++)
        if (servers[i].weight == 0 || (!servers[i].name && servers[i].name_len))
            return NULL;
    placement *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->distribution = distribution;
    p->hash = hash;
    if (hash_tag && hash_tag[0]) {
        p->has_tag = 1;
        p->tag[0] = hash_tag[0];
        p->tag[1] = hash_tag[1];
    }
    p->n = n;
    p->names = calloc((size_t)n, sizeof(*p->names));
    p->name_lens = calloc((size_t)n, sizeof(*p->name_lens));
    p->weights = calloc((size_t)n, sizeof(*p->weights));
    p->by_name = calloc((size_t)n, sizeof(*p->by_name));
    p->live = calloc((size_t)n, sizeof(*p->live));
    if (!p->names || !p->name_lens || !p->weights || !p->by_name || !p->live)
        goto fail;
    for (int i = 0; i < n; i++) {
        p->names[i] = malloc(servers[i].name_len + 1);
        if (!p->names[i])
            goto fail;
        if (servers[i].name_len)
            memcpy(p->names[i], servers[i].name, servers[i].name_len);
        p->names[i][servers[i].name_len] = '\0';
        p->name_lens[i] = servers[i].name_len;
        p->weights[i] = servers[i].weight;
        p->by_name[i] = i;
        p->live[i] = 1;
    }
    /* twemproxy sorts its servers by name when it reads its configuration;
     * modula and random count in that order, not the file's. */
    for (int k = 1; k < n; k++) {
        int v = p->by_name[k], j = k;
        for (; j > 0 && name_order_cmp(p, p->by_name[j - 1], v) > 0; j--)
            p->by_name[j] = p->by_name[j - 1];
        p->by_name[j] = v;
    }
    for (int k = 0; k + 1 < n; k++)
        if (name_order_cmp(p, p->by_name[k], p->by_name[k + 1]) == 0)
            goto fail;
    if (placement_set_live(p, p->live) != 0)
        goto fail;
    return p;
fail:
    placement_free(p);
    return NULL;
}

int placement_set_live(placement *p, const int *live)
{
    int *flags = malloc((size_t)p->n * sizeof(*flags));
    if (!flags)
        return -1;
    int nlive = 0;
    for (int i = 0; i < p->n; i++) {
        flags[i] = live[i] != 0;
        nlive += flags[i];
    }
    placement_point *points;
    int npoints;
    if (build_layout(p, flags, &points, &npoints) != 0) {
        free(flags);
        return -1;
    }
    memcpy(p->live, flags, (size_t)p->n * sizeof(*flags));
    free(flags);
    free(p->points);
    p->points = points;
    p->npoints = npoints;
    p->nlive = nlive;
    return 0;
}

/* Per-thread generator for the random distribution (xorshift64*), so
 * placement leaves the process's random() sequence alone. */
static _Thread_local uint64_t random_state;

static uint32_t random_next(void)
{
    if (random_state == 0)
        random_state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)&random_state ^ UINT64_C(0x9e3779b97f4a7c15);
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return (uint32_t)((random_state * UINT64_C(0x2545f4914f6cdd1d)) >> 32);
}

int placement_owner(const placement *p, const char *key, size_t len)
{
    if (p->nlive == 0 || p->npoints == 0)
        return -1;
    if (p->n == 1)
        return 0;
    if (p->distribution == PLACEMENT_RANDOM)
        return p->points[random_next() % (uint32_t)p->npoints].owner;
    /* A tag counts only when it has something between its two characters;
     * otherwise the whole key is hashed. */
    if (p->has_tag && len > 0) {
        const char *open = memchr(key, p->tag[0], len);
        if (open) {
            const char *after = open + 1;
            const char *close = memchr(after, p->tag[1], len - (size_t)(after - key));
            if (close && close - open > 1) {
                key = after;
                len = (size_t)(close - after);
            }
        }
    }
    uint32_t h = len == 0 ? 0 : placement_hash(p->hash, key, len);
    if (p->distribution == PLACEMENT_MODULA)
        return p->points[h % (uint32_t)p->npoints].owner;
    /* ketama: the first point at or above h, wrapping past the last. */
    int lo = 0, hi = p->npoints;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (p->points[mid].value < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return p->points[lo == p->npoints ? 0 : lo].owner;
}

int placement_points(const placement *p, uint32_t *values, int *owners, int max)
{
    for (int i = 0; i < p->npoints && i < max; i++) {
        if (values)
            values[i] = p->points[i].value;
        if (owners)
            owners[i] = p->points[i].owner;
    }
    return p->npoints;
}

void placement_free(placement *p)
{
    if (!p)
        return;
    if (p->names)
        for (int i = 0; i < p->n; i++)
            free(p->names[i]);
    free(p->names);
    free(p->name_lens);
    free(p->weights);
    free(p->by_name);
    free(p->live);
    free(p->points);
    free(p);
}
