/* Unit tests for the key -> slot function and the Redis Cluster slot map:
 * slots as redis-server 7.0.15 answers CLUSTER KEYSLOT, and CLUSTER SLOTS
 * replies in the shapes 7.0 sends (read from RESP text with hiredis's
 * reader, as the backends read them). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "backends/cluster_map.h"
#include "util/cluster_slot.h"

static void test_crc16_vectors(void **state)
{
    (void)state;
    assert_int_equal(cluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(cluster_crc16("", 0), 0);
    assert_int_equal(cluster_crc16("A", 1), 0x58E5);
    /* Bytes >= 0x80 are taken unsigned. */
    assert_int_equal(cluster_crc16("\xff", 1), 0x1EF0);
    assert_int_equal(cluster_crc16("\x00\x00", 2), 0);
}

/* Each answer is redis-server 7.0.15's CLUSTER KEYSLOT. */
static const struct {
    const char *key;
    size_t len;
    unsigned slot;
} slots[] = {
    {"foo", 3, 12182},
    {"bar", 3, 5061},
    {"{user1000}.following", 20, 3443},
    {"{user1000}.followers", 20, 3443},
    {"foo{}{bar}", 10, 8363},
    {"foo{{bar}}zap", 13, 4015},
    {"{bar", 4, 4015},
    {"foo{bar}{zap}", 13, 5061},
    {"{}", 2, 15257},
    {"{", 1, 4092},
    {"}", 1, 12090},
    {"", 0, 0},
    {"a{b}c", 5, 3300},
    {"123456789", 9, 12739},
    {"{a}b", 4, 15495},
    {"a", 1, 15495},
    {"hello world", 11, 15332},
    {"foo{bar", 7, 15278},
};

static void test_key_slots_as_redis(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        unsigned got = cluster_key_slot(slots[i].key, slots[i].len);
        if (got != slots[i].slot) fail_msg("key '%s': slot %u, Redis says %u", slots[i].key, got, slots[i].slot);
    }
    /* A NUL byte is part of the key, inside a tag too. */
    assert_int_equal(cluster_key_slot("x{a\0b}y", 7), cluster_crc16("a\0b", 3) & 16383);
    assert_int_not_equal(cluster_key_slot("a\0b", 3), cluster_key_slot("a", 1));
    /* The tag ends at the first '}' after the first '{'. */
    assert_int_equal(cluster_key_slot("{a}}", 4), cluster_key_slot("a", 1));
    assert_int_equal(cluster_key_slot("x}{a}", 5), cluster_key_slot("a", 1));
}

/* ---------------------------------------------------------------------- */

static redisReply *parse(const char *resp)
{
    redisReader *r = redisReaderCreate();
    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define ID_C "cccccccccccccccccccccccccccccccccccccccc"
#define ID_D "dddddddddddddddddddddddddddddddddddddddd"

/* A 7.0 node entry: endpoint, port, id, and the networking metadata as a
 * flat array in RESP2. */
static const char *node7(char *buf, size_t len, const char *host, int port, const char *id)
{
    snprintf(buf, len, "*4\r\n$%zu\r\n%s\r\n:%d\r\n$40\r\n%s\r\n*0\r\n", strlen(host), host, port, id);
    return buf;
}

static void assert_owner_range(const cluster_map *m, int from, int to, int idx)
{
    for (int s = from; s <= to; s++)
        if (m->owner[s] != idx) fail_msg("slot %d: owner %d, expected %d", s, m->owner[s], idx);
}

static void test_three_masters(void **state)
{
    (void)state;
    char a[200], b[200], c[200], text[1000];
    snprintf(text, sizeof text, "*3\r\n*3\r\n:0\r\n:5460\r\n%s*3\r\n:5461\r\n:10922\r\n%s*3\r\n:10923\r\n:16383\r\n%s",
             node7(a, sizeof a, "127.0.0.1", 7001, ID_A), node7(b, sizeof b, "127.0.0.1", 7002, ID_B),
             node7(c, sizeof c, "127.0.0.1", 7003, ID_C));
    redisReply *r = parse(text);
    cluster_map m;
    char err[200] = "";
    assert_int_equal(cluster_map_from_slots(r, "10.0.0.1", &m, err, sizeof err), 0);
    assert_int_equal(m.nnodes, 3);
    assert_int_equal(m.nmasters, 3);
    assert_string_equal(m.nodes[0].host, "127.0.0.1");
    assert_int_equal(m.nodes[0].port, 7001);
    assert_string_equal(m.nodes[0].id, ID_A);
    assert_int_equal(m.nodes[1].port, 7002);
    assert_int_equal(m.nodes[2].port, 7003);
    assert_owner_range(&m, 0, 5460, 0);
    assert_owner_range(&m, 5461, 10922, 1);
    assert_owner_range(&m, 10923, 16383, 2);
    assert_int_equal(cluster_map_find(&m, "127.0.0.1", 7002), 1);
    assert_int_equal(cluster_map_find(&m, "127.0.0.1", 7004), -1);
    assert_int_equal(cluster_map_find(&m, "127.0.0.2", 7001), -1);
    /* The owner of a key is found through its slot. */
    assert_int_equal(m.owner[cluster_key_slot("foo", 3)], 2);
    assert_int_equal(m.owner[cluster_key_slot("bar", 3)], 0);
    cluster_map_free(&m);
    assert_int_equal(m.nnodes, 0);
    assert_null(m.nodes);
    assert_int_equal(m.owner[0], -1);
    freeReplyObject(r);
}

/* What redis-server 7.0.15 answered for 3 masters with a replica each,
 * started by tests/integration/cluster_harness.py: ranges in slot order,
 * each master followed by its replica, metadata empty. */
#define ID_M1 "7168355df97b48207e147c94af71ea8965877884"
#define ID_R1 "16ba55c9de238419c603cba6dfc815ba16ce21e5"
#define ID_M2 "eb8c1166b97d8084c8d283aa377646c6ac2a8acd"
#define ID_R2 "4fb7a758118ebfe520be1b128e9af7bd3fe8551a"
#define ID_M3 "88305af72335d6eef7329d5d7edec981a71e3260"
#define ID_R3 "3652ffec25d9f52b73c611bce4f3ace1c9cdfd33"
static const char captured_3_3[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:30785\r\n$40\r\n" ID_M1 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:31754\r\n$40\r\n" ID_R1 "\r\n*0\r\n"
    "*4\r\n:5461\r\n:10921\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:22935\r\n$40\r\n" ID_M2 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:28754\r\n$40\r\n" ID_R2 "\r\n*0\r\n"
    "*4\r\n:10922\r\n:16383\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:30796\r\n$40\r\n" ID_M3 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:23216\r\n$40\r\n" ID_R3 "\r\n*0\r\n";

static void test_masters_with_replicas(void **state)
{
    (void)state;
    redisReply *r = parse(captured_3_3);
    cluster_map m;
    char err[200] = "";
    assert_int_equal(cluster_map_from_slots(r, "127.0.0.1", &m, err, sizeof err), 0);
    assert_int_equal(m.nmasters, 3);
    assert_int_equal(m.nnodes, 6);
    int want_ports[] = {30785, 22935, 30796, 31754, 28754, 23216};
    const char *want_ids[] = {ID_M1, ID_M2, ID_M3, ID_R1, ID_R2, ID_R3};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(m.nodes[i].host, "127.0.0.1");
        assert_int_equal(m.nodes[i].port, want_ports[i]);
        assert_string_equal(m.nodes[i].id, want_ids[i]);
    }
    assert_owner_range(&m, 0, 5460, 0);
    assert_owner_range(&m, 5461, 10921, 1);
    assert_owner_range(&m, 10922, 16383, 2);
    /* A replica is known (a failover can be told apart from a new node)
     * but owns nothing. */
    assert_int_equal(cluster_map_find(&m, "127.0.0.1", 28754), 4);
    for (int s = 0; s < CLUSTER_SLOT_COUNT; s++) assert_true(m.owner[s] >= 0 && m.owner[s] < 3);
    cluster_map_free(&m);
    freeReplyObject(r);
}

static void test_failover_and_roles(void **state)
{
    (void)state;
    char a[200], b[200], d[200], text[1200];
    snprintf(text, sizeof text, "*2\r\n*4\r\n:0\r\n:8191\r\n%s%s*4\r\n:8192\r\n:16383\r\n%s%s",
             node7(d, sizeof d, "127.0.0.1", 7004, ID_D), node7(a, sizeof a, "127.0.0.1", 7001, ID_A),
             node7(b, sizeof b, "127.0.0.1", 7002, ID_B), node7(d, sizeof d, "127.0.0.1", 7004, ID_D));
    redisReply *r = parse(text);
    cluster_map m;
    assert_int_equal(cluster_map_from_slots(r, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.nmasters, 2);
    assert_int_equal(m.nnodes, 3);
    assert_int_equal(m.nodes[0].port, 7004);
    assert_int_equal(m.nodes[1].port, 7002);
    assert_int_equal(m.nodes[2].port, 7001);
    assert_owner_range(&m, 0, 8191, 0);
    assert_owner_range(&m, 8192, 16383, 1);
    cluster_map_free(&m);
    freeReplyObject(r);
}

/* 7.0.15 on a node that was never met: "" with the default endpoint type,
 * nil with unknown-endpoint, "?" with hostname and no hostname set; the
 * metadata then carries the (empty) ip. */
static void test_unknown_endpoints(void **state)
{
    (void)state;
    const char *texts[] = {
        "*2\r\n*3\r\n:0\r\n:5\r\n*4\r\n$0\r\n\r\n:23999\r\n$40\r\n" ID_A "\r\n*0\r\n"
        "*3\r\n:100\r\n:100\r\n*4\r\n$0\r\n\r\n:23999\r\n$40\r\n" ID_A "\r\n*0\r\n",
        "*2\r\n*3\r\n:0\r\n:5\r\n*4\r\n$-1\r\n:23999\r\n$40\r\n" ID_A "\r\n*2\r\n$2\r\nip\r\n$0\r\n\r\n"
        "*3\r\n:100\r\n:100\r\n*4\r\n$-1\r\n:23999\r\n$40\r\n" ID_A "\r\n*2\r\n$2\r\nip\r\n$0\r\n\r\n",
        "*2\r\n*3\r\n:0\r\n:5\r\n*4\r\n$1\r\n?\r\n:23999\r\n$40\r\n" ID_A "\r\n*2\r\n$2\r\nip\r\n$0\r\n\r\n"
        "*3\r\n:100\r\n:100\r\n*4\r\n$1\r\n?\r\n:23999\r\n$40\r\n" ID_A "\r\n*2\r\n$2\r\nip\r\n$0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        redisReply *r = parse(texts[i]);
        cluster_map m;
        char err[200] = "";
        assert_int_equal(cluster_map_from_slots(r, "192.0.2.7", &m, err, sizeof err), 0);
        assert_int_equal(m.nnodes, 1);
        assert_int_equal(m.nmasters, 1);
        assert_string_equal(m.nodes[0].host, "192.0.2.7");
        assert_int_equal(m.nodes[0].port, 23999);
        assert_owner_range(&m, 0, 5, 0);
        assert_owner_range(&m, 6, 99, -1);
        assert_owner_range(&m, 100, 100, 0);
        assert_owner_range(&m, 101, 16383, -1);
        cluster_map_free(&m);
        /* Without the asked host there is nowhere to go. */
        err[0] = '\0';
        assert_int_equal(cluster_map_from_slots(r, NULL, &m, err, sizeof err), -1);
        assert_true(strstr(err, "unknown") != NULL);
        assert_int_equal(m.nnodes, 0);
        cluster_map_free(&m);
        freeReplyObject(r);
    }
}

/* cluster-preferred-endpoint-type hostname: the endpoint is the name, the
 * ip moves to the metadata. Names are compared without case. */
static void test_hostnames(void **state)
{
    (void)state;
    const char *text =
        "*2\r\n"
        "*3\r\n:0\r\n:8191\r\n*4\r\n$13\r\nnode1.example\r\n:6379\r\n$40\r\n" ID_A "\r\n"
        "*2\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n"
        "*3\r\n:8192\r\n:16383\r\n*4\r\n$13\r\nnode2.example\r\n:6379\r\n$40\r\n" ID_B "\r\n"
        "*2\r\n$2\r\nip\r\n$8\r\n10.0.0.2\r\n";
    redisReply *r = parse(text);
    cluster_map m;
    assert_int_equal(cluster_map_from_slots(r, "10.0.0.1", &m, NULL, 0), 0);
    assert_int_equal(m.nnodes, 2);
    assert_string_equal(m.nodes[0].host, "node1.example");
    assert_string_equal(m.nodes[1].host, "node2.example");
    assert_int_equal(cluster_map_find(&m, "NODE2.example", 6379), 1);
    assert_int_equal(cluster_map_find(&m, "node2.example", 6380), -1);
    assert_owner_range(&m, 8192, 16383, 1);
    cluster_map_free(&m);
    freeReplyObject(r);
}

/* A master's slots in several ranges (after migrations) make one node;
 * replies of Redis 3 (no id) and IPv6 endpoints are read too. */
static void test_ranges_in_pieces(void **state)
{
    (void)state;
    const char *text =
        "*5\r\n"
        "*3\r\n:0\r\n:99\r\n*2\r\n$3\r\n::1\r\n:7001\r\n"
        "*3\r\n:100\r\n:100\r\n*2\r\n$3\r\n::1\r\n:7002\r\n"
        "*3\r\n:101\r\n:8000\r\n*3\r\n$3\r\n::1\r\n:7001\r\n$40\r\n" ID_A "\r\n"
        "*3\r\n:8001\r\n:16383\r\n*2\r\n$3\r\n::1\r\n:7002\r\n"
        "*3\r\n:16383\r\n:16383\r\n*2\r\n$3\r\n::1\r\n:7002\r\n";
    redisReply *r = parse(text);
    cluster_map m;
    assert_int_equal(cluster_map_from_slots(r, "::1", &m, NULL, 0), 0);
    assert_int_equal(m.nnodes, 2);
    assert_int_equal(m.nmasters, 2);
    assert_string_equal(m.nodes[0].host, "::1");
    assert_int_equal(m.nodes[0].port, 7001);
    /* An id seen in a later entry fills in the node. */
    assert_string_equal(m.nodes[0].id, ID_A);
    assert_null(m.nodes[1].id);
    assert_owner_range(&m, 0, 99, 0);
    assert_owner_range(&m, 100, 100, 1);
    assert_owner_range(&m, 101, 8000, 0);
    assert_owner_range(&m, 8001, 16383, 1);
    cluster_map_free(&m);
    freeReplyObject(r);
}

/* redis-server 7.0.15 after slot 12000 moved from the second master of two
 * to the first (cluster_harness.py's migrate_slot), asked on a replica:
 * each master's slots in several entries, its replica repeated with them. */
#define ID_P1 "e16a30d8db3308e87660fe0976748c2055f3e88f"
#define ID_P2 "03d2f4a710a815babb952c66b9f84f097e903775"
#define ID_Q1 "787e7702946c2a1477ed633a201c413a57a15861"
#define ID_Q2 "1ba52e4a1e77464a50e221db194025fb309e88c3"
#define P1 "*4\r\n$9\r\n127.0.0.1\r\n:24552\r\n$40\r\n" ID_P1 "\r\n*0\r\n"
#define P2 "*4\r\n$9\r\n127.0.0.1\r\n:27758\r\n$40\r\n" ID_P2 "\r\n*0\r\n"
#define Q1 "*4\r\n$9\r\n127.0.0.1\r\n:27144\r\n$40\r\n" ID_Q1 "\r\n*0\r\n"
#define Q2 "*4\r\n$9\r\n127.0.0.1\r\n:24300\r\n$40\r\n" ID_Q2 "\r\n*0\r\n"
static const char captured_after_migration[] =
    "*4\r\n"
    "*4\r\n:0\r\n:8191\r\n" P1 Q1
    "*4\r\n:8192\r\n:11999\r\n" P2 Q2
    "*4\r\n:12000\r\n:12000\r\n" P1 Q1
    "*4\r\n:12001\r\n:16383\r\n" P2 Q2;

static void test_after_a_slot_migration(void **state)
{
    (void)state;
    redisReply *r = parse(captured_after_migration);
    cluster_map m;
    assert_int_equal(cluster_map_from_slots(r, "127.0.0.1", &m, NULL, 0), 0);
    assert_int_equal(m.nmasters, 2);
    assert_int_equal(m.nnodes, 4);
    assert_string_equal(m.nodes[0].id, ID_P1);
    assert_string_equal(m.nodes[1].id, ID_P2);
    assert_string_equal(m.nodes[2].id, ID_Q1);
    assert_string_equal(m.nodes[3].id, ID_Q2);
    assert_owner_range(&m, 0, 8191, 0);
    assert_owner_range(&m, 8192, 11999, 1);
    assert_owner_range(&m, 12000, 12000, 0);
    assert_owner_range(&m, 12001, 16383, 1);
    cluster_map_free(&m);
    freeReplyObject(r);
}

static void test_no_slots_assigned(void **state)
{
    (void)state;
    redisReply *r = parse("*0\r\n");
    cluster_map m;
    assert_int_equal(cluster_map_from_slots(r, "127.0.0.1", &m, NULL, 0), 0);
    assert_int_equal(m.nnodes, 0);
    assert_int_equal(m.nmasters, 0);
    assert_owner_range(&m, 0, 16383, -1);
    cluster_map_free(&m);
    freeReplyObject(r);
}

static const char nul_endpoint[] = "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:1\r\n";

static void test_bad_shapes(void **state)
{
    (void)state;
    const char *bad[] = {
        "-ERR This instance has cluster support disabled\r\n",
        "+OK\r\n",
        ":1\r\n",
        "$-1\r\n",
        "*1\r\n:0\r\n",                                                      /* entry not an array */
        "*1\r\n*2\r\n:0\r\n:1\r\n",                                         /* no master */
        "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",             /* start a string */
        "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n",                  /* end before start */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",              /* past the last slot */
        "*1\r\n*3\r\n:-1\r\n:0\r\n*2\r\n$1\r\nh\r\n:1\r\n",                 /* negative slot */
        "*1\r\n*3\r\n:0\r\n:1\r\n$1\r\nh\r\n",                              /* node not an array */
        "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n",                        /* node without port */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n6379\r\n",          /* port a string */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",                  /* port 0 */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:65536\r\n",              /* port too big */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:7\r\n:1\r\n",                       /* endpoint an integer */
        "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n$1\r\nh\r\n:1\r\n:5\r\n",            /* id an integer */
        /* A good master and a bad replica: refused as a whole. */
        "*1\r\n*4\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n*2\r\n$1\r\nh\r\n:-3\r\n",
        /* A good entry then a bad one. */
        "*2\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:2\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        nul_endpoint,
    };
    size_t nbad = sizeof(bad) / sizeof(bad[0]);
    for (size_t i = 0; i < nbad; i++) {
        redisReader *rd = redisReaderCreate();
        void *reply = NULL;
        /* The last case has a NUL byte inside the endpoint. */
        size_t len = i + 1 < nbad ? strlen(bad[i]) : sizeof nul_endpoint - 1;
        assert_int_equal(redisReaderFeed(rd, bad[i], len), REDIS_OK);
        assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
        assert_non_null(reply);
        redisReaderFree(rd);
        cluster_map m;
        char err[200] = "";
        if (cluster_map_from_slots(reply, "127.0.0.1", &m, err, sizeof err) != -1)
            fail_msg("bad reply %zu accepted", i);
        if (strncmp(err, "CLUSTER SLOTS: ", 15) != 0) fail_msg("bad reply %zu: error '%s'", i, err);
        assert_int_equal(m.nnodes, 0);
        assert_null(m.nodes);
        assert_int_equal(m.owner[0], -1);
        cluster_map_free(&m);
        freeReplyObject(reply);
    }
    cluster_map m;
    char err[100];
    assert_int_equal(cluster_map_from_slots(NULL, "h", &m, err, sizeof err), -1);
}

/* ---------------------------------------------------------------------- */

static int redirect(const char *text, int *slot, char *host, size_t hostlen, int *port)
{
    return cluster_redirect_parse(text, strlen(text), slot, host, hostlen, port);
}

static void test_redirects(void **state)
{
    (void)state;
    int slot = -1, port = -1;
    char host[64];
    assert_int_equal(redirect("MOVED 3999 127.0.0.1:6381", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);

    assert_int_equal(redirect("ASK 16383 node1.example:7000", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_ASK);
    assert_int_equal(slot, 16383);
    assert_string_equal(host, "node1.example");
    assert_int_equal(port, 7000);

    assert_int_equal(redirect("MOVED 0 ::1:6380", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_int_equal(slot, 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 6380);

    assert_int_equal(redirect("MOVED 7 2001:db8::2:1:6390", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_string_equal(host, "2001:db8::2:1");
    assert_int_equal(port, 6390);

    assert_int_equal(redirect("ASK 7 [fe80::1]:6390", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_ASK);
    assert_string_equal(host, "fe80::1");

    /* Endpoints the redirecting node does not know, passed on as they are. */
    assert_int_equal(redirect("MOVED 12 :7001", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_string_equal(host, "");
    assert_int_equal(port, 7001);
    assert_int_equal(redirect("MOVED 12 ?:7001", &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_string_equal(host, "?");

    /* The text is not NUL-terminated: only len bytes count. */
    const char buf[] = "MOVED 1 h:6379trailing";
    assert_int_equal(cluster_redirect_parse(buf, 14, &slot, host, sizeof host, &port), CLUSTER_REDIRECT_MOVED);
    assert_int_equal(port, 6379);

    slot = port = -2;
    strcpy(host, "untouched");
    const char *not[] = {
        "ERR unknown command", "MOVED", "MOVED ", "MOVED 1", "MOVED 1 ", "MOVED 1 h", "MOVED 1 h:",
        "MOVED x h:1", "MOVED -1 h:1", "MOVED 16384 h:1", "MOVED 1 h:0", "MOVED 1 h:65536",
        "MOVED 1 h:-1", "MOVED 1 h:+1", "MOVED 1 h:1 ", "MOVED  1 h:1", "MOVED 1 h :1", "moved 1 h:1",
        "ASKING 1 h:1", "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN Hash slot not served", "MOVED 1 h:1x", "MOVED 0000001 h:1",
        "MOVED 1 averyveryveryveryverylonghostnamethatdoesnotfitinthebuffer.example:1",
    };
    for (size_t i = 0; i < sizeof(not) / sizeof(not[0]); i++)
        if (redirect(not[i], &slot, host, 40, &port) != CLUSTER_REDIRECT_NONE) fail_msg("'%s' read as a redirect", not[i]);
    assert_int_equal(slot, -2);
    assert_int_equal(port, -2);
    assert_string_equal(host, "untouched");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_vectors),
        cmocka_unit_test(test_key_slots_as_redis),
        cmocka_unit_test(test_three_masters),
        cmocka_unit_test(test_masters_with_replicas),
        cmocka_unit_test(test_failover_and_roles),
        cmocka_unit_test(test_unknown_endpoints),
        cmocka_unit_test(test_hostnames),
        cmocka_unit_test(test_ranges_in_pieces),
        cmocka_unit_test(test_after_a_slot_migration),
        cmocka_unit_test(test_no_slots_assigned),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_redirects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
