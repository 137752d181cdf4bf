/* Unit tests for what the proxy knows of an old Redis store: its release
 * from INFO, which commands a release has (from COMMAND or from the release
 * table), Redis 7.0's wording of old error texts, and 2.4's keyspace lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <hiredis/hiredis.h>

#include "backends/store.h"

static void test_version(void **state)
{
    (void)state;
    const char *v24 = "redis_version:2.4.18\r\nredis_git_sha1:00000000\r\n";
    const char *v70 = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n";
    assert_int_equal(store_parse_version(v24, strlen(v24)), 20418);
    assert_int_equal(store_parse_version(v70, strlen(v70)), 70015);
    assert_int_equal(store_parse_version("# Server\r\nfoo:1\r\n", 17), 0);
    assert_int_equal(store_parse_version("redis_version:x\r\n", 17), 0);
    char buf[32];
    assert_string_equal(store_version_text(20824, buf, sizeof(buf)), "2.8.24");
}

static void test_release_table(void **state)
{
    (void)state;
    assert_int_equal(store_since("getdel", 6), 60200);
    assert_int_equal(store_since("GETDEL", 6), 60200);
    assert_int_equal(store_since("client|setname", 14), 20609);
    assert_int_equal(store_since("nosuch", 6), 0);
    /* 2.4 has no COMMAND: the table tells. */
    assert_int_equal(store_has_command(NULL, 20418, "get", 3), 1);
    assert_int_equal(store_has_command(NULL, 20418, "pexpire", 7), 0);
    assert_int_equal(store_has_command(NULL, 20418, "client|list", 11), 1);
    assert_int_equal(store_has_command(NULL, 20418, "client|setname", 14), 0);
    assert_int_equal(store_has_command(NULL, 20418, "nosuchcommand", 13), 0);
    assert_int_equal(store_has_command(NULL, 0, "get", 3), -1);
    assert_int_equal(store_has_command(NULL, 60020, "getdel", 6), 0);
    assert_int_equal(store_has_command(NULL, 60200, "getdel", 6), 1);
}

/* A COMMAND reply of n entries named by names[]: pre-7.0 entries have 6
 * fields; with subs, a 7.0 entry whose tenth field lists "object|freq". */
static redisReply *command_reply(const char *const *names, int n, int with_subs)
{
    redisReader *r = redisReaderCreate();
    char buf[4096];
    int len = snprintf(buf, sizeof(buf), "*%d\r\n", n);
    for (int i = 0; i < n; i++) {
        if (with_subs && !strcmp(names[i], "object"))
            len += snprintf(buf + len, sizeof(buf) - (size_t)len,
                            "*10\r\n$6\r\nobject\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n"
                            "*1\r\n*1\r\n$11\r\nobject|freq\r\n");
        else
            len += snprintf(buf + len, sizeof(buf) - (size_t)len, "*6\r\n$%zu\r\n%s\r\n:1\r\n*0\r\n:0\r\n:0\r\n:0\r\n",
                            strlen(names[i]), names[i]);
    }
    redisReaderFeed(r, buf, (size_t)len);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    redisReaderFree(r);
    return reply;
}

static void test_command_list(void **state)
{
    (void)state;
    static const char *const names[] = {"GET", "set", "client", "object"};
    redisReply *reply = command_reply(names, 4, 0);
    store_commands *s = store_commands_from_reply(reply);
    freeReplyObject(reply);
    assert_non_null(s);
    assert_int_equal(store_has_command(s, 20824, "get", 3), 1);
    assert_int_equal(store_has_command(s, 20824, "getdel", 6), 0);
    /* Listed but renamed away or added by a module: COMMAND is the word. */
    assert_int_equal(store_has_command(s, 20824, "pexpire", 7), 0);
    /* Subcommands before 7.0: the release tells. */
    assert_int_equal(store_has_command(s, 20824, "client|setname", 14), 1);
    assert_int_equal(store_has_command(s, 20824, "object|freq", 11), 0);
    assert_int_equal(store_has_command(s, 50014, "object|freq", 11), 1);
    assert_int_equal(store_has_command(s, 20824, "config|get", 10), 0); /* no "config" listed */
    store_commands_free(s);

    reply = command_reply(names, 4, 1);
    s = store_commands_from_reply(reply);
    freeReplyObject(reply);
    assert_int_equal(store_has_command(s, 70015, "object|freq", 11), 1);
    assert_int_equal(store_has_command(s, 70015, "object|encoding", 15), 0);
    store_commands_free(s);

    redisReply not_array = {.type = REDIS_REPLY_ERROR};
    assert_null(store_commands_from_reply(&not_array));
}

static void check_rewrite_in(int version, int context, const char *old, const char *want)
{
    char out[256];
    size_t n = store_error_normalise(version, context, old, strlen(old), out, sizeof(out));
    if (!want) {
        assert_int_equal(n, 0);
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void check_rewrite(int version, const char *old, const char *want)
{
    check_rewrite_in(version, STORE_CONTEXT_NONE, old, want);
}

static void test_errors(void **state)
{
    (void)state;
    check_rewrite(20418, "ERR Operation against a key holding the wrong kind of value",
                  "WRONGTYPE Operation against a key holding the wrong kind of value");
    check_rewrite(20418, "ERR value is not a double", "ERR value is not a valid float");
    check_rewrite(20418, "ERR min or max is not a double", "ERR min or max is not a float");
    check_rewrite(50014, "ERR timeout is not an integer or out of range", "ERR timeout is not a float or out of range");
    check_rewrite(20418, "ERR invalid expire time in SETEX", "ERR invalid expire time in 'setex' command");
    check_rewrite(60020, "ERR invalid expire time in set", "ERR invalid expire time in 'set' command");
    check_rewrite(60020, "ERR wrong number of arguments for MSET", "ERR wrong number of arguments for 'mset' command");
    check_rewrite(60020, "ERR wrong number of arguments for 'mset' command", NULL);
    check_rewrite(20824, "ERR Target key name is busy.", "BUSYKEY Target key name already exists.");
    check_rewrite(30213, "ERR hash value is not a valid float", "ERR hash value is not a float");
    /* Already 7.0's, a 7.0 store, or not a text to touch. */
    check_rewrite(60020, "ERR invalid expire time in 'set' command", NULL);
    check_rewrite(70015, "ERR value is not a double", NULL);
    check_rewrite(20418, "ERR syntax error", NULL);
    check_rewrite(20418, "WRONGTYPE Operation against a key holding the wrong kind of value", NULL);
    check_rewrite(0, "ERR value is not a double", NULL);
    /* Texts that need the command. */
    int zu = store_error_context("ZUNIONSTORE", 11), zi = store_error_context("zinterstore", 11);
    int spop = store_error_context("spop", 4);
    assert_int_equal(store_error_context("EXEC", 4), STORE_CONTEXT_EXEC);
    assert_int_equal(store_error_context("get", 3), STORE_CONTEXT_NONE);
    check_rewrite_in(20824, zu, "ERR at least 1 input key is needed for ZUNIONSTORE/ZINTERSTORE",
                     "ERR at least 1 input key is needed for 'zunionstore' command");
    check_rewrite_in(20824, zi, "ERR at least 1 input key is needed for ZUNIONSTORE/ZINTERSTORE",
                     "ERR at least 1 input key is needed for 'zinterstore' command");
    check_rewrite(20824, "ERR at least 1 input key is needed for ZUNIONSTORE/ZINTERSTORE", NULL);
    check_rewrite_in(50014, spop, "ERR index out of range", "ERR value is out of range, must be positive");
    check_rewrite(50014, "ERR index out of range", NULL);
}

static void test_keyspace(void **state)
{
    (void)state;
    const char *v24 = "redis_version:2.4.18\r\nvm_enabled:0\r\ndb0:keys=2,expires=1\r\ndb12:keys=1,expires=0\r\n";
    const char *v28 = "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n";
    struct evbuffer *b = evbuffer_new();
    store_info_keyspace(v24, strlen(v24), b);
    const char *want = "db0:keys=2,expires=1,avg_ttl=0\r\ndb12:keys=1,expires=0,avg_ttl=0\r\n";
    assert_int_equal(evbuffer_get_length(b), strlen(want));
    assert_memory_equal(evbuffer_pullup(b, -1), want, strlen(want));
    evbuffer_drain(b, evbuffer_get_length(b));
    store_info_keyspace(v28, strlen(v28), b);
    assert_int_equal(evbuffer_get_length(b), strlen(v28) - 12);
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),      cmocka_unit_test(test_release_table),
        cmocka_unit_test(test_command_list), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_keyspace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
