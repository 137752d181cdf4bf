/* Unit tests for proxy/core/acl.c: rule parsing and its errors, the descriptions
 * ACL LIST and GETUSER show, the permission checks (commands, first
 * arguments, %R/%W key patterns, channels), passwords, the ACL log and the
 * ACL file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/core/acl.h"

static acl_user *user_with(const char *rules)
{
    acl_init();
    acl_user *u = acl_user_new_unlinked("t", 1);
    char *copy = strdup(rules), *save = NULL;
    for (char *op = strtok_r(copy, " ", &save); op; op = strtok_r(NULL, " ", &save))
        assert_int_equal(acl_set_user(u, op, strlen(op)), ACL_ERR_NONE);
    free(copy);
    return u;
}

static void assert_describes(const char *rules, const char *expected)
{
    acl_user *u = user_with(rules);
    char *d = acl_describe_user(u);
    assert_string_equal(d, expected);
    free(d);
    acl_user_free(u);
}

static void test_describe(void **state)
{
    assert_describes("", "off resetchannels -@all");
    assert_describes("on nopass ~* &* +@all", "on nopass ~* &* +@all");
    assert_describes("reset", "off sanitize-payload resetchannels -@all");
    assert_describes("on ~a:* %R~r:* %W~w:* %RW~b:* &c* +@all -@dangerous",
                     "on ~a:* %R~r:* %W~w:* ~b:* resetchannels &c* +@all -@dangerous");
    /* The same pattern twice merges its permissions. */
    assert_describes("%R~k %W~k", "off ~k resetchannels -@all");
    assert_describes("-@all +@read -get", "off resetchannels -@all +@read -get");
    assert_describes("+@all -@write +set", "off resetchannels +@all -@write +set");
    assert_describes("-@all +config|get", "off resetchannels -@all +config|get");
    assert_describes("-@all +select|0 +select|1", "off resetchannels -@all +select|0 +select|1");
    /* Blocking a container blocks its subcommands; allowing one brings it back. */
    assert_describes("+@all -config +config|get", "off resetchannels +@all -config +config|get");
    assert_describes("allkeys resetkeys ~x allchannels resetchannels &y", "off ~x resetchannels &y -@all");
    assert_describes("allcommands nocommands", "off resetchannels -@all");
    assert_describes("skip-sanitize-payload on", "on skip-sanitize-payload resetchannels -@all");
}

static void test_passwords(void **state)
{
    acl_user *u = user_with(">a >b >a");
    assert_int_equal(u->npasswords, 2);
    char *d = acl_describe_user(u);
    /* SHA-256 of "a", as hex. */
    assert_non_null(strstr(d, "#ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"));
    free(d);
    assert_int_equal(acl_set_user(u, "<a", 2), ACL_ERR_NONE);
    assert_int_equal(u->npasswords, 1);
    assert_int_equal(acl_set_user(u, "<a", 2), ACL_ERR_NO_SUCH_PASS);
    assert_int_equal(acl_set_user(u, "nopass", 6), ACL_ERR_NONE);
    assert_int_equal(u->npasswords, 0);
    assert_true(u->flags & ACL_USER_NOPASS);
    assert_int_equal(acl_set_user(u, ">x", 2), ACL_ERR_NONE);
    assert_false(u->flags & ACL_USER_NOPASS);
    acl_user_free(u);
}

static void test_errors(void **state)
{
    acl_user *u = user_with("");
    static const struct { const char *op; int err; } cases[] = {
        {"+nosuchcommand", ACL_ERR_UNKNOWN},      {"-@nosuchcategory", ACL_ERR_UNKNOWN},
        {"foo", ACL_ERR_SYNTAX},                  {"#abc", ACL_ERR_BAD_HASH},
        {"+config|get|x", ACL_ERR_SUB_FIRSTARG},  {"+config|", ACL_ERR_SYNTAX},
        {"+config|nosuch", ACL_ERR_UNKNOWN},      {"-select|0", ACL_ERR_UNKNOWN},
        {"%X~a", ACL_ERR_SYNTAX},                 {"(~x foo)", ACL_ERR_SYNTAX},
        {"<nosuch", ACL_ERR_NO_SUCH_PASS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(acl_set_user(u, cases[i].op, strlen(cases[i].op)), cases[i].err);
    assert_int_equal(acl_set_user(u, "allkeys", 7), ACL_ERR_NONE);
    assert_int_equal(acl_set_user(u, "~x", 2), ACL_ERR_KEYS_AFTER_ALL);
    assert_int_equal(acl_set_user(u, "&*", 2), ACL_ERR_NONE);
    assert_int_equal(acl_set_user(u, "&x", 2), ACL_ERR_CHANS_AFTER_ALL);
    assert_string_equal(acl_error_text(ACL_ERR_UNKNOWN), "Unknown command or category name in ACL");
    acl_user_free(u);
}

static int check(acl_user *u, int *pos, int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    const command_def *cmd = command_lookup(argv[0], strlen(argv[0]));
    if (cmd && cmd->subcommand_count && argc >= 2) cmd = command_lookup_sub(cmd, argv[1], strlen(argv[1]));
    assert_non_null(cmd);
    return acl_check_command(u, cmd, argc, argv, NULL, pos);
}

static void test_command_checks(void **state)
{
    int pos = 0;
    acl_user *u = user_with("allkeys allchannels -@all +get +config|get +select|0 +ping");
    assert_int_equal(check(u, &pos, 2, "get", "k"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "set", "k", "v"), ACL_DENIED_CMD);
    assert_int_equal(check(u, &pos, 3, "config", "get", "x"), ACL_OK);
    assert_int_equal(check(u, &pos, 4, "config", "set", "x", "y"), ACL_DENIED_CMD);
    assert_int_equal(check(u, &pos, 2, "select", "0"), ACL_OK);
    assert_int_equal(check(u, &pos, 2, "select", "1"), ACL_DENIED_CMD);
    assert_int_equal(check(u, &pos, 1, "ping"), ACL_OK);
    /* AUTH and HELLO are never refused: they are how a client changes user. */
    acl_user *none = user_with("");
    assert_int_equal(check(none, &pos, 3, "auth", "a", "b"), ACL_OK);
    assert_int_equal(check(none, &pos, 1, "ping"), ACL_DENIED_CMD);
    acl_user_free(none);
    acl_user_free(u);
}

static void test_key_checks(void **state)
{
    int pos = -1;
    acl_user *u = user_with("+@all %R~ro:* %W~wo:* ~rw:*");
    assert_int_equal(check(u, &pos, 2, "get", "ro:1"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "set", "ro:1", "v"), ACL_DENIED_KEY);
    assert_int_equal(pos, 1);
    assert_int_equal(check(u, &pos, 3, "set", "wo:1", "v"), ACL_OK);
    assert_int_equal(check(u, &pos, 2, "get", "wo:1"), ACL_DENIED_KEY);
    assert_int_equal(check(u, &pos, 3, "copy", "ro:1", "wo:1"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "copy", "wo:1", "ro:1"), ACL_DENIED_KEY);
    assert_int_equal(check(u, &pos, 4, "mget", "rw:1", "ro:2", "x"), ACL_DENIED_KEY);
    assert_int_equal(pos, 3);
    /* EXISTS needs neither read nor write: any pattern that matches will do. */
    assert_int_equal(check(u, &pos, 2, "exists", "wo:1"), ACL_OK);
    /* EVAL's declared keys are read and written. */
    assert_int_equal(check(u, &pos, 4, "eval", "return 1", "1", "rw:1"), ACL_OK);
    assert_int_equal(check(u, &pos, 4, "eval", "return 1", "1", "ro:1"), ACL_DENIED_KEY);
    assert_int_equal(check(u, &pos, 4, "eval_ro", "return 1", "1", "ro:1"), ACL_OK);
    acl_user_free(u);
}

static void test_channel_checks(void **state)
{
    int pos = -1;
    acl_user *u = user_with("+@all allkeys &news.* &lit");
    assert_int_equal(check(u, &pos, 3, "publish", "news.1", "m"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "publish", "other", "m"), ACL_DENIED_CHANNEL);
    assert_int_equal(check(u, &pos, 3, "subscribe", "news.a", "bad"), ACL_DENIED_CHANNEL);
    assert_int_equal(pos, 2);
    /* Patterns are compared literally with the user's patterns. */
    assert_int_equal(check(u, &pos, 2, "psubscribe", "news.*"), ACL_OK);
    assert_int_equal(check(u, &pos, 2, "psubscribe", "news.x"), ACL_DENIED_CHANNEL);
    assert_int_equal(check(u, &pos, 2, "psubscribe", "lit"), ACL_OK);
    assert_int_equal(check(u, &pos, 2, "unsubscribe", "anything"), ACL_OK);
    acl_user_free(u);
}

static void test_selectors(void **state)
{
    int pos = -1;
    acl_user *u = user_with("on ~a:* -@all +get");
    assert_int_equal(acl_set_user(u, "(~b:* +set)", 11), ACL_ERR_NONE);
    assert_int_equal(acl_set_user(u, "(%R~c:* &ch +@read +publish)", 28), ACL_ERR_NONE);
    assert_int_equal(acl_set_user(u, "(~x +nosuch)", 12), ACL_ERR_UNKNOWN);
    assert_int_equal(u->nselectors, 2);
    char *d = acl_describe_user(u);
    assert_string_equal(d, "on ~a:* resetchannels -@all +get (~b:* resetchannels -@all +set) "
                           "(%R~c:* resetchannels &ch -@all +@read +publish)");
    free(d);
    assert_int_equal(check(u, &pos, 2, "get", "a:1"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "set", "b:1", "v"), ACL_OK);
    assert_int_equal(check(u, &pos, 2, "get", "c:1"), ACL_OK);
    assert_int_equal(check(u, &pos, 3, "set", "a:1", "v"), ACL_DENIED_KEY);
    assert_int_equal(check(u, &pos, 3, "publish", "ch", "m"), ACL_OK);
    /* The most specific denial wins: a channel beats a command. */
    assert_int_equal(check(u, &pos, 3, "publish", "other", "m"), ACL_DENIED_CHANNEL);
    assert_int_equal(check(u, &pos, 2, "del", "a:1"), ACL_DENIED_CMD);
    acl_user *copy = acl_user_new_unlinked("c", 1);
    acl_user_copy(copy, u);
    assert_int_equal(copy->nselectors, 2);
    assert_int_equal(acl_set_user(u, "clearselectors", 14), ACL_ERR_NONE);
    assert_int_equal(u->nselectors, 0);
    assert_int_equal(check(u, &pos, 3, "set", "b:1", "v"), ACL_DENIED_CMD);
    assert_int_equal(check(copy, &pos, 3, "set", "b:1", "v"), ACL_OK);
    acl_user_free(copy);
    acl_user_free(u);

    char *args[] = {"on", "(~x", "+get)", "(&c)", "+ping"};
    size_t lens[] = {2, 3, 5, 4, 5};
    int n = 0, bad = -1;
    size_t *mlens = NULL;
    char **merged = acl_merge_selector_args(5, args, lens, &n, &mlens, &bad);
    assert_non_null(merged);
    assert_int_equal(n, 4);
    assert_string_equal(merged[1], "(~x +get)");
    assert_int_equal(mlens[1], 9);
    for (int i = 0; i < n; i++) free(merged[i]);
    free(merged);
    free(mlens);
    char *open_args[] = {"on", "(~x", "+get"};
    assert_null(acl_merge_selector_args(3, open_args, lens, &n, &mlens, &bad));
    assert_int_equal(bad, 1);
}

static void test_unrestricted_fast_path(void **state)
{
    acl_user *u = user_with("~* &* +@all");
    assert_true(u->unrestricted);
    assert_int_equal(acl_set_user(u, "-get", 4), ACL_ERR_NONE);
    assert_false(u->unrestricted);
    acl_user_free(u);
}

static void test_credentials(void **state)
{
    acl_init();
    acl_user *u = acl_create_user("cred", 4);
    assert_non_null(u);
    assert_null(acl_create_user("cred", 4));
    assert_int_equal(acl_set_user(u, ">pw", 3), ACL_ERR_NONE);
    assert_null(acl_check_credentials("cred", 4, "pw", 2)); /* off */
    acl_set_user(u, "on", 2);
    assert_ptr_equal(acl_check_credentials("cred", 4, "pw", 2), u);
    assert_null(acl_check_credentials("cred", 4, "px", 2));
    assert_null(acl_check_credentials("nosuch", 6, "pw", 2));
    acl_set_user(u, "nopass", 6);
    assert_ptr_equal(acl_check_credentials("cred", 4, "anything", 8), u);
    acl_user *r = acl_remove_user("cred", 4);
    assert_ptr_equal(r, u);
    acl_user_retain(r);
    acl_user_release(r); /* freed here: deleted and unreferenced */
    assert_null(acl_find_user("cred", 4));
}

static void test_log_grouping(void **state)
{
    acl_log_reset();
    acl_log_add(ACL_DENIED_KEY, ACL_CTX_TOPLEVEL, "k", 1, "u", 1, "ci1", 3, 128);
    acl_log_add(ACL_DENIED_KEY, ACL_CTX_TOPLEVEL, "k", 1, "u", 1, "ci2", 3, 128);
    acl_log_add(ACL_DENIED_CMD, ACL_CTX_MULTI, "get", 3, "u", 1, "ci3", 3, 128);
    acl_log_entry *e = acl_log_entries();
    assert_int_equal(e->reason, ACL_DENIED_CMD);
    assert_int_equal(e->next->count, 2);
    assert_string_equal(e->next->cinfo, "ci2");
    acl_log_add(ACL_DENIED_KEY, ACL_CTX_TOPLEVEL, "k", 1, "u", 1, "ci4", 3, 128);
    e = acl_log_entries();
    assert_int_equal(e->count, 3); /* moved to the front */
    for (int i = 0; i < 5; i++) {
        char obj[8];
        snprintf(obj, sizeof(obj), "o%d", i);
        acl_log_add(ACL_DENIED_KEY, ACL_CTX_LUA, obj, strlen(obj), "u", 1, "", 0, 3);
    }
    int n = 0;
    for (e = acl_log_entries(); e; e = e->next) n++;
    assert_int_equal(n, 3);
    acl_log_reset();
    assert_null(acl_log_entries());
}

static void test_acl_file(void **state)
{
    acl_init();
    char path[] = "/tmp/evalproxy-acl-unit-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *good = "user fa on >x ~f:* +@all\n\nuser default on nopass ~* &* +@all\n";
    assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    close(fd);
    char *err = acl_load_file(path, NULL, NULL);
    assert_null(err);
    assert_non_null(acl_find_user("fa", 2));
    assert_int_equal(acl_save_file(path), 0);
    FILE *fp = fopen(path, "r");
    char line[512];
    assert_non_null(fgets(line, sizeof(line), fp));
    assert_string_equal(line, "user default on nopass ~* &* +@all\n");
    assert_non_null(fgets(line, sizeof(line), fp));
    assert_non_null(strstr(line, "user fa on #"));
    fclose(fp);
    fp = fopen(path, "w");
    fputs("user fb on +nosuch\n", fp);
    fclose(fp);
    err = acl_load_file(path, NULL, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "Unknown command or category name in ACL"));
    free(err);
    assert_non_null(acl_find_user("fa", 2)); /* unchanged */
    assert_null(acl_find_user("fb", 2));
    unlink(path);
}

static void test_category_table(void **state)
{
    acl_init();
    const command_def *get = command_lookup("get", 3);
    uint32_t cats = acl_command_categories(get);
    assert_int_equal(cats, acl_category_by_name("read", 4) | acl_category_by_name("string", 6) |
                               acl_category_by_name("fast", 4));
    assert_int_equal(acl_category_by_name("nosuch", 6), 0);
    assert_int_equal(acl_category_by_name("READ", 4), acl_category_by_name("read", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe),          cmocka_unit_test(test_passwords),
        cmocka_unit_test(test_errors),            cmocka_unit_test(test_command_checks),
        cmocka_unit_test(test_key_checks),        cmocka_unit_test(test_channel_checks),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_unrestricted_fast_path), cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_log_grouping),      cmocka_unit_test(test_acl_file),
        cmocka_unit_test(test_category_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
