/* Unit tests for util/placement.c: every hash against values computed by
 * twemproxy 0.5.0's own hash functions, the ketama layout against MD5
 * values from another implementation, and owners of fixed keys as a real
 * nutcracker 0.5.0 chose them (servers named, so ports do not matter). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/placement.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- hashes ---- */

static const struct {
    const char *key;
    size_t len;
    uint32_t want[12]; /* in enum placement_hash order */
} hash_vectors[] = {
    {"", 0, {0x00000000, 0xd98c1dd4, 0x00000000, 0x00000000, 0x00000000, 0x84222325, 0x84222325,
             0x811c9dc5, 0x811c9dc5, 0x00000000, 0x00000000, 0xdeadbefc}},
    {"a", 1, {0xca2e9442, 0xb975c10c, 0x00007c87, 0x000068b7, 0xe8b7be43, 0x8601b7be, 0x8601ec8c,
              0x050c5d7e, 0xe40c292c, 0x93642e87, 0x4b41757c, 0xe0a38690}},
    {"abc", 3, {0xed131f5b, 0x98500190, 0x7c749dd6, 0x00003524, 0x352441c2, 0x6bafadcb, 0x0541574b,
                0x439c2f4b, 0x1a47e90b, 0xe5186b3a, 0x7b0cc428, 0x8f415600}},
    {"123456789", 9, {0xc66b58c5, 0x94e7f925, 0x869031c3, 0x00004bf4, 0xcbf43926, 0x2bf916d6, 0x23c6cdfc,
                      0x24148816, 0xbb86b11c, 0xe4fc1670, 0xb7760690, 0x19777af6}},
    {"hello world", 11, {0x3e4a5a57, 0xbb3bb65e, 0xf2063be4, 0x00000d4a, 0x0d4a1185, 0xb1910e6f, 0x023cd2e7,
                         0x548da96f, 0xd58b3fa7, 0x4f799873, 0x5e19153b, 0x153343fb}},
    {"foo", 3, {0x238678dd, 0xdb18bdac, 0x0c3caf96, 0x00000c73, 0x8c736521, 0x6ba13533, 0xfed9d577,
                0x408f5e13, 0xa9f37ed7, 0x76d4d427, 0xc4e0338f, 0x99f84f99}},
    {"key:1234567890abcdef", 20, {0x7c8fe3a8, 0x25357afa, 0x2b123413, 0x00004d08, 0xcd087379, 0x5f51aec6,
                                  0xacba7814, 0xecb0f226, 0x119c82d4, 0x40bfd718, 0x76c059b7, 0x7e7c9dd3}},
    {"The quick brown fox jumps over the lazy dog", 43,
     {0x519e91f5, 0x9d7d109e, 0x22a3f0c8, 0x0000414f, 0x414fa339, 0x7de37ace, 0xe7e47110, 0xe9c86c6e,
      0x048fff90, 0x1c19ee97, 0x30c79125, 0x12b8163c}},
};

/* Bytes above 0x7f: twemproxy widens them through plain char, signed on x86-64. */
static const struct {
    const char *key;
    size_t len;
    uint32_t want[12];
} high_byte_vectors[] = {
    {"caf\xc3\xa9", 5, {0xd99c709e, 0xe47f1107, 0xf6269667, 0x000018ad, 0x98ad42b5, 0x8a06fef1, 0xcef6bb89,
                        0xd682f171, 0x7572c049, 0xde3f8855, 0xda11981f, 0xcb6225ad}},
    {"\xff\xfe\x80", 3, {0x54cc64c2, 0xdaeea645, 0x1e0d6e25, 0x0000265e, 0x265ea2ec, 0x93edf0fa, 0x8f0e6190,
                         0x914c917a, 0x626cb2b0, 0xb2876529, 0xa3e1075d, 0x201bd2b5}},
};

static void test_hash_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(hash_vectors); i++)
        for (int h = 0; h < 12; h++) {
            uint32_t got = placement_hash(h, hash_vectors[i].key, hash_vectors[i].len);
            if (got != hash_vectors[i].want[h])
                fail_msg("%s(\"%s\") = 0x%08x, want 0x%08x", placement_hash_name(h), hash_vectors[i].key, got,
                         hash_vectors[i].want[h]);
        }
#if CHAR_MIN < 0
    for (size_t i = 0; i < N(high_byte_vectors); i++)
        for (int h = 0; h < 12; h++) {
            uint32_t got = placement_hash(h, high_byte_vectors[i].key, high_byte_vectors[i].len);
            if (got != high_byte_vectors[i].want[h])
                fail_msg("%s(high-byte key %zu) = 0x%08x, want 0x%08x", placement_hash_name(h), i, got,
                         high_byte_vectors[i].want[h]);
        }
#endif
}

/* md5 and crc32 as everyone computes them: the first little-endian word of
 * the digest; libmemcached's 15 bits of the CRC; the whole CRC. */
static void test_md5_crc32_known(void **state)
{
    (void)state;
    assert_int_equal(placement_hash(PLACEMENT_MD5, "abc", 3), 0x98500190);    /* md5 900150983cd2... */
    assert_int_equal(placement_hash(PLACEMENT_CRC32A, "123456789", 9), 0xcbf43926);
    assert_int_equal(placement_hash(PLACEMENT_CRC32, "123456789", 9), (0xcbf43926 >> 16) & 0x7fff);
    /* crc16's low 16 bits are CRC-16/XMODEM; twemproxy keeps the bits above. */
    assert_int_equal(placement_hash(PLACEMENT_CRC16, "123456789", 9) & 0xffff, 0x31c3);
    /* MD5 over block boundaries (55, 56, 64, 65 bytes) against known digests. */
    char buf[65];
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(placement_hash(PLACEMENT_MD5, buf, 55), 0xb67217ef); /* ef1772b6... */
    assert_int_equal(placement_hash(PLACEMENT_MD5, buf, 56), 0xc78a0c3b); /* 3b0c8ac7... */
    assert_int_equal(placement_hash(PLACEMENT_MD5, buf, 64), 0xd4424801); /* 014842d4... */
    assert_int_equal(placement_hash(PLACEMENT_MD5, buf, 65), 0x5ea443c7); /* c743a45e... */
}

/* jenkins reads words when the key is aligned and bytes otherwise in
 * twemproxy: the value must not depend on where the key sits. */
static void test_hash_alignment(void **state)
{
    (void)state;
    char buf[64];
    const char *key = "The quick brown fox jumps over";
    size_t len = strlen(key);
    for (int h = 0; h < 12; h++) {
        uint32_t first = placement_hash(h, key, len);
        for (int off = 1; off < 8; off++) {
            memcpy(buf + off, key, len);
            assert_int_equal(placement_hash(h, buf + off, len), first);
        }
    }
}

static void test_names(void **state)
{
    (void)state;
    static const char *const names[] = {"one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64",
                                        "fnv1a_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins"};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(placement_hash_parse(names[i]), i);
        assert_string_equal(placement_hash_name(i), names[i]);
    }
    assert_int_equal(placement_hash_parse("MD5"), -1);
    assert_int_equal(placement_hash_parse("fnv1a"), -1);
    assert_int_equal(placement_hash_parse(""), -1);
    assert_int_equal(placement_hash_parse(NULL), -1);
    assert_null(placement_hash_name(12));
    assert_int_equal(placement_distribution_parse("ketama"), PLACEMENT_KETAMA);
    assert_int_equal(placement_distribution_parse("modula"), PLACEMENT_MODULA);
    assert_int_equal(placement_distribution_parse("random"), PLACEMENT_RANDOM);
    assert_int_equal(placement_distribution_parse("vnode"), -1);
    assert_string_equal(placement_distribution_name(PLACEMENT_MODULA), "modula");
}

/* ---- server names ---- */

static void test_default_name(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(placement_default_name("10.0.0.1", 6379, buf, sizeof(buf)), 13);
    assert_string_equal(buf, "10.0.0.1:6379");
    /* libmemcached's rule: the memcached port is left out. */
    assert_int_equal(placement_default_name("10.0.0.1", 11211, buf, sizeof(buf)), 8);
    assert_string_equal(buf, "10.0.0.1");
    assert_int_equal(placement_default_name("cache.example", 11212, buf, sizeof(buf)), 19);
    assert_string_equal(buf, "cache.example:11212");
    /* Unix sockets keep the ':' before their weight. */
    assert_int_equal(placement_default_name("/tmp/redis.sock", 0, buf, sizeof(buf)), 16);
    assert_string_equal(buf, "/tmp/redis.sock:");
    assert_int_equal(placement_default_name("/tmp/a:b.sock", 0, buf, sizeof(buf)), 13);
    assert_string_equal(buf, "/tmp/a:b.sock");
    /* Too short a buffer: cut and terminated, the whole length returned. */
    char small[5];
    assert_int_equal(placement_default_name("10.0.0.1", 6379, small, sizeof(small)), 13);
    assert_string_equal(small, "10.0");
    assert_int_equal(placement_default_name("10.0.0.1", 6379, NULL, 0), 13);
}

/* A server with the 11211 rule lands where a server named by its host does. */
static void test_default_name_places_as_host(void **state)
{
    (void)state;
    char a[64], b[64];
    size_t la = placement_default_name("10.0.0.1", 11211, a, sizeof(a));
    size_t lb = placement_default_name("10.0.0.2", 11211, b, sizeof(b));
    placement_server by_rule[] = {{a, la, 1}, {b, lb, 1}};
    placement_server by_host[] = {{"10.0.0.1", 8, 1}, {"10.0.0.2", 8, 1}};
    placement *p = placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, by_rule, 2);
    placement *q = placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, by_host, 2);
    assert_non_null(p);
    assert_non_null(q);
    uint32_t values[320];
    assert_int_equal(placement_points(p, values, NULL, 320), 320);
    /* "10.0.0.1-0" is one of the point names. */
    const uint32_t want[4] = {0x2194783c, 0x36d6a85b, 0xf1edf592, 0x40a9b8cf};
    for (int j = 0; j < 4; j++) {
        int found = 0;
        for (int i = 0; i < 320; i++)
            found |= values[i] == want[j];
        assert_true(found);
    }
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(key, sizeof(key), "key:%d", i);
        assert_int_equal(placement_owner(p, key, (size_t)len), placement_owner(q, key, (size_t)len));
    }
    placement_free(p);
    placement_free(q);
}

/* ---- layouts ---- */

static int count_owned(const int *owners, int n, int who)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += owners[i] == who;
    return c;
}

static void test_ketama_layout(void **state)
{
    (void)state;
    placement_server servers[] = {{"127.0.0.1:6379", 14, 1}, {"alpha", 5, 1}, {"b", 1, 1}};
    placement *p = placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, servers, 3);
    assert_non_null(p);
    uint32_t values[480];
    int owners[480];
    assert_int_equal(placement_points(p, values, owners, 480), 480);
    for (int i = 0; i + 1 < 480; i++)
        assert_true(values[i] <= values[i + 1]);
    for (int s = 0; s < 3; s++)
        assert_int_equal(count_owned(owners, 480, s), 160);
    /* Points are the four little-endian words of md5("name-i"), i = 0..39. */
    const struct {
        int server;
        uint32_t value;
    } want[] = {
        {0, 0x8bb75706}, {0, 0x081066aa}, {0, 0x6c98c6fe}, {0, 0x28ff9e77}, /* 127.0.0.1:6379-0 */
        {1, 0xc1564609}, {1, 0x6c227d97}, {1, 0xed850783}, {1, 0xe698ea9a}, /* alpha-0 */
        {1, 0xf4b70e3c}, {1, 0x3ef183ff}, {1, 0x466c67fb}, {1, 0x0e55d707}, /* alpha-39 */
    };
    for (size_t j = 0; j < N(want); j++) {
        int found = 0;
        for (int i = 0; i < 480; i++)
            found |= values[i] == want[j].value && owners[i] == want[j].server;
        if (!found)
            fail_msg("point 0x%08x of server %d missing", want[j].value, want[j].server);
    }
    /* A key goes to the first point at or above its hash, past the last to the first. */
    for (int i = 0; i < 480; i += 37) {
        char key[16];
        int len = snprintf(key, sizeof(key), "k%d", i);
        uint32_t h = placement_hash(PLACEMENT_MD5, key, (size_t)len);
        int at = 0;
        while (at < 480 && values[at] < h)
            at++;
        assert_int_equal(placement_owner(p, key, (size_t)len), owners[at == 480 ? 0 : at]);
    }
    placement_free(p);
}

static void ketama_counts(const unsigned *weights, int n, const int *want)
{
    placement_server servers[8];
    char names[8][8];
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "s%d", i);
        servers[i] = (placement_server){names[i], strlen(names[i]), weights[i]};
    }
    placement *p = placement_new(PLACEMENT_KETAMA, PLACEMENT_FNV1A_64, NULL, servers, n);
    assert_non_null(p);
    int total = placement_points(p, NULL, NULL, 0);
    int *owners = calloc((size_t)total, sizeof(*owners));
    assert_non_null(owners);
    placement_points(p, NULL, owners, total);
    for (int i = 0; i < n; i++)
        if (count_owned(owners, total, i) != want[i])
            fail_msg("server %d of weight %u has %d points, want %d", i, weights[i],
                     count_owned(owners, total, i), want[i]);
    free(owners);
    placement_free(p);
}

/* Points per server from weights, in twemproxy's float arithmetic (which
 * gives weight 29 of 60, and 6 of 25 over five servers, four points fewer
 * than exact arithmetic would). */
static void test_ketama_weights(void **state)
{
    (void)state;
    ketama_counts((const unsigned[]){1, 2, 3}, 3, (const int[]){80, 160, 240});
    ketama_counts((const unsigned[]){29, 1, 30}, 3, (const int[]){228, 8, 240});
    ketama_counts((const unsigned[]){1, 6, 6, 6, 6}, 5, (const int[]){28, 188, 188, 188, 188});
    ketama_counts((const unsigned[]){100, 100}, 2, (const int[]){160, 160});
    ketama_counts((const unsigned[]){1, 1, 1, 1, 1, 1, 1}, 7, (const int[]){160, 160, 160, 160, 160, 160, 160});
}

/* Point names are cut to 272 bytes: a long name's points all hash the same cut name. */
static void test_ketama_long_name(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'x', sizeof(name));
    placement_server servers[] = {{name, sizeof(name), 1}, {"short", 5, 1}};
    placement *p = placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, servers, 2);
    assert_non_null(p);
    uint32_t values[320];
    int owners[320];
    assert_int_equal(placement_points(p, values, owners, 320), 320);
    const uint32_t cut[4] = {0xe2fda1a3, 0xec747d9d, 0x77e62eba, 0x4f8ecdd6}; /* md5 of 272 'x' */
    int of_long = 0;
    for (int i = 0; i < 320; i++) {
        if (owners[i] != 0)
            continue;
        of_long++;
        assert_true(values[i] == cut[0] || values[i] == cut[1] || values[i] == cut[2] || values[i] == cut[3]);
    }
    assert_int_equal(of_long, 160);
    placement_free(p);
}

static void test_modula_layout(void **state)
{
    (void)state;
    /* Listed out of name order: twemproxy sorts by name length, then bytes,
     * and modula counts weights in that order: "b" x1, "alpha" x2, "gamma-long" x3. */
    placement_server servers[] = {{"gamma-long", 10, 3}, {"b", 1, 1}, {"alpha", 5, 2}};
    placement *p = placement_new(PLACEMENT_MODULA, PLACEMENT_CRC32A, NULL, servers, 3);
    assert_non_null(p);
    int owners[6];
    assert_int_equal(placement_points(p, NULL, owners, 6), 6);
    const int want[6] = {1, 2, 2, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        assert_int_equal(owners[i], want[i]);
    for (int i = 0; i < 100; i++) {
        char key[16];
        int len = snprintf(key, sizeof(key), "m%d", i);
        uint32_t h = placement_hash(PLACEMENT_CRC32A, key, (size_t)len);
        assert_int_equal(placement_owner(p, key, (size_t)len), want[h % 6]);
    }
    placement_free(p);
}

/* Owners a real nutcracker 0.5.0 gave these keys, servers named
 * "gamma-long", "b", "alpha" (in that order), distribution, hash and tag
 * as given. */
static const char *const nutcracker_keys[] = {
    "", "a", "foo", "bar", "user:1000", "user:1001", "{user1000}:following", "{user1000}:followers",
    "{}", "{}abc", "abc{", "x{y}z", "{a}{b}", "session:9f8e7d", "counter", "caf\xc3\xa9", "\xff\xfe\x80",
    "k1", "k2", "k3", "k4", "k5", "k6", "k7",
};

static const struct {
    int distribution, hash;
    const char *tag;
    unsigned weights[3];
    int owners[24];
} nutcracker_cases[] = {
    {PLACEMENT_KETAMA, PLACEMENT_MD5, "{}", {1, 1, 1},
     {0, 2, 2, 1, 0, 1, 0, 0, 0, 2, 1, 1, 2, 1, 1, 1, 1, 0, 2, 1, 2, 2, 2, 0}},
    {PLACEMENT_KETAMA, PLACEMENT_FNV1A_64, NULL, {29, 1, 30},
     {0, 2, 0, 0, 0, 0, 2, 0, 0, 2, 2, 1, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0}},
    {PLACEMENT_MODULA, PLACEMENT_CRC32, "{}", {3, 1, 2},
     {1, 0, 2, 2, 1, 0, 1, 1, 1, 0, 1, 0, 0, 2, 1, 0, 1, 1, 2, 1, 0, 0, 1, 0}},
    {PLACEMENT_KETAMA, PLACEMENT_MURMUR, NULL, {1, 2, 3},
     {2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 2, 2, 2, 1, 0, 2, 0, 2, 1, 0, 2, 1}},
};

static void test_owners_as_nutcracker(void **state)
{
    (void)state;
    for (size_t c = 0; c < N(nutcracker_cases); c++) {
        placement_server servers[] = {{"gamma-long", 10, nutcracker_cases[c].weights[0]},
                                      {"b", 1, nutcracker_cases[c].weights[1]},
                                      {"alpha", 5, nutcracker_cases[c].weights[2]}};
        placement *p = placement_new(nutcracker_cases[c].distribution, nutcracker_cases[c].hash,
                                     nutcracker_cases[c].tag, servers, 3);
        assert_non_null(p);
        for (size_t k = 0; k < N(nutcracker_keys); k++) {
#if CHAR_MIN >= 0
            if (strpbrk(nutcracker_keys[k], "\x80\xa9\xc3\xfe\xff"))
                continue;
#endif
            int got = placement_owner(p, nutcracker_keys[k], strlen(nutcracker_keys[k]));
            if (got != nutcracker_cases[c].owners[k])
                fail_msg("case %zu key \"%s\": owner %d, nutcracker %d", c, nutcracker_keys[k], got,
                         nutcracker_cases[c].owners[k]);
        }
        placement_free(p);
    }
}

/* ---- hash tags ---- */

static void test_hash_tags(void **state)
{
    (void)state;
    placement_server servers[] = {{"s0", 2, 1}, {"s1", 2, 1}, {"s2", 2, 1}, {"s3", 2, 1}};
    placement *p = placement_new(PLACEMENT_MODULA, PLACEMENT_CRC32A, "{}", servers, 4);
    placement *none = placement_new(PLACEMENT_MODULA, PLACEMENT_CRC32A, NULL, servers, 4);
    placement *dollar = placement_new(PLACEMENT_MODULA, PLACEMENT_CRC32A, "$$", servers, 4);
    assert_non_null(p);
    assert_non_null(none);
    assert_non_null(dollar);
#define OWNER(pl, s) placement_owner((pl), (s), strlen(s))
    /* The part between the first '{' and the next '}' is hashed. */
    assert_int_equal(OWNER(p, "{user1}:a"), OWNER(none, "user1"));
    assert_int_equal(OWNER(p, "x{user1}y{z}"), OWNER(none, "user1"));
    assert_int_equal(OWNER(p, "{{user1}"), OWNER(none, "{user1"));
    assert_int_equal(OWNER(p, "}{user1}"), OWNER(none, "user1"));
    /* Empty tag, no closing brace, no braces: the whole key. */
    assert_int_equal(OWNER(p, "{}user1"), OWNER(none, "{}user1"));
    assert_int_equal(OWNER(p, "{}{user1}"), OWNER(none, "{}{user1}"));
    assert_int_equal(OWNER(p, "{user1"), OWNER(none, "{user1"));
    assert_int_equal(OWNER(p, "user1}"), OWNER(none, "user1}"));
    assert_int_equal(OWNER(p, "plain"), OWNER(none, "plain"));
    /* Same character twice. */
    assert_int_equal(OWNER(dollar, "a$user1$b"), OWNER(none, "user1"));
    assert_int_equal(OWNER(dollar, "a$$user1$"), OWNER(none, "a$$user1$"));
    /* The empty key hashes to 0: with modula, the first server in name order. */
    assert_int_equal(placement_owner(none, "", 0), 0);
    assert_int_equal(OWNER(p, "{}"), OWNER(none, "{}"));
#undef OWNER
    placement_free(p);
    placement_free(none);
    placement_free(dollar);
}

/* ---- live servers ---- */

static void test_set_live(void **state)
{
    (void)state;
    placement_server servers[] = {{"s0", 2, 1}, {"s1", 2, 2}, {"s2", 2, 3}};
    for (int dist = 0; dist < 3; dist++) {
        placement *p = placement_new(dist, PLACEMENT_FNV1A_64, NULL, servers, 3);
        assert_non_null(p);
        int before[500];
        char key[16];
        for (int i = 0; i < 500; i++)
            before[i] = placement_owner(p, key, (size_t)snprintf(key, sizeof(key), "k%d", i));
        assert_int_equal(placement_set_live(p, (const int[]){1, 0, 1}), 0);
        for (int i = 0; i < 500; i++) {
            int o = placement_owner(p, key, (size_t)snprintf(key, sizeof(key), "k%d", i));
            assert_true(o == 0 || o == 2);
        }
        if (dist == PLACEMENT_KETAMA) {
            /* Points are recounted for two live servers of weights 1 and 3. */
            int owners[400];
            int n = placement_points(p, NULL, owners, 400);
            assert_int_equal(n, 320);
            assert_int_equal(count_owned(owners, n, 0), 80);
            assert_int_equal(count_owned(owners, n, 2), 240);
        }
        if (dist == PLACEMENT_MODULA)
            assert_int_equal(placement_points(p, NULL, NULL, 0), 4);
        if (dist == PLACEMENT_RANDOM)
            assert_int_equal(placement_points(p, NULL, NULL, 0), 2);
        assert_int_equal(placement_set_live(p, (const int[]){0, 0, 0}), 0);
        assert_int_equal(placement_owner(p, "k1", 2), -1);
        assert_int_equal(placement_owner(p, "", 0), -1);
        assert_int_equal(placement_set_live(p, (const int[]){1, 7, 1}), 0);
        if (dist != PLACEMENT_RANDOM)
            for (int i = 0; i < 500; i++)
                assert_int_equal(placement_owner(p, key, (size_t)snprintf(key, sizeof(key), "k%d", i)), before[i]);
        placement_free(p);
    }
}

static void test_single_server(void **state)
{
    (void)state;
    placement_server one[] = {{"only", 4, 5}};
    for (int dist = 0; dist < 3; dist++) {
        placement *p = placement_new(dist, PLACEMENT_MD5, "{}", one, 1);
        assert_non_null(p);
        assert_int_equal(placement_owner(p, "anything", 8), 0);
        assert_int_equal(placement_owner(p, "", 0), 0);
        assert_int_equal(placement_set_live(p, (const int[]){0}), 0);
        assert_int_equal(placement_owner(p, "anything", 8), -1);
        placement_free(p);
    }
}

/* Random: a live server each time, weights ignored (as twemproxy). */
static void test_random(void **state)
{
    (void)state;
    placement_server servers[] = {{"s0", 2, 1}, {"s1", 2, 10}, {"s2", 2, 1}};
    placement *p = placement_new(PLACEMENT_RANDOM, PLACEMENT_MD5, NULL, servers, 3);
    assert_non_null(p);
    int counts[3] = {0};
    for (int i = 0; i < 30000; i++) {
        int o = placement_owner(p, "same", 4);
        assert_true(o >= 0 && o < 3);
        counts[o]++;
    }
    for (int i = 0; i < 3; i++)
        assert_true(counts[i] > 9000 && counts[i] < 11000);
    placement_free(p);
}

static void test_refused(void **state)
{
    (void)state;
    placement_server ok[] = {{"a", 1, 1}, {"b", 1, 1}};
    placement_server zero[] = {{"a", 1, 1}, {"b", 1, 0}};
    placement_server dup[] = {{"a", 1, 1}, {"b", 1, 1}, {"a", 1, 2}};
    assert_null(placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, "{", ok, 2));
    assert_null(placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, "{}}", ok, 2));
    assert_null(placement_new(PLACEMENT_KETAMA, 12, NULL, ok, 2));
    assert_null(placement_new(3, PLACEMENT_MD5, NULL, ok, 2));
    assert_null(placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, ok, 0));
    assert_null(placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, NULL, zero, 2));
    assert_null(placement_new(PLACEMENT_MODULA, PLACEMENT_MD5, NULL, dup, 3));
    placement *p = placement_new(PLACEMENT_KETAMA, PLACEMENT_MD5, "", ok, 2);
    assert_non_null(p);
    placement_free(p);
    placement_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_md5_crc32_known),
        cmocka_unit_test(test_hash_alignment),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_default_name),
        cmocka_unit_test(test_default_name_places_as_host),
        cmocka_unit_test(test_ketama_layout),
        cmocka_unit_test(test_ketama_weights),
        cmocka_unit_test(test_ketama_long_name),
        cmocka_unit_test(test_modula_layout),
        cmocka_unit_test(test_owners_as_nutcracker),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_set_live),
        cmocka_unit_test(test_single_server),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
