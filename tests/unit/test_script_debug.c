/* The script debugger's engine side: a run with SCRIPT_RUN_DEBUG stops
 * before its first line, takes debugger commands, logs as Redis 7.0's LDB
 * and ends with <endsession>. The host here answers every redis.call at once
 * (+OK, or the bulk "v" for GET) and keeps what the engine hands it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/script_engine.h"

static script_engine *E;
static char logs[8192];    /* the last stop's log */
static char final[8192];   /* done(): the session's end and the reply */
static int done_called, stops;
static script_run *stopped;

static void host_call(void *ctx, script_run *run, int argc, char **argv, size_t *lens)
{
    (void)ctx;
    (void)lens;
    if (argc >= 1 && !strcasecmp(argv[0], "get")) script_run_reply_raw(run, "$1\r\nv\r\n", 7);
    else if (argc >= 1 && !strcasecmp(argv[0], "nosuch")) script_run_reply_error(run, "ERR Unknown Redis command called from script");
    else script_run_reply_raw(run, "+OK\r\n", 5);
}

static void host_yield(void *ctx, script_run *run)
{
    (void)ctx;
    script_run_continue(run);
}

static void host_done(void *ctx, script_run *run, const char *reply, size_t len)
{
    (void)ctx;
    size_t flen = 0;
    const char *fin = script_run_debug_final(run, &flen);
    snprintf(final, sizeof(final), "%.*s%.*s", (int)flen, fin ? fin : "", (int)len, reply);
    done_called = 1;
    stopped = NULL;
}

static void host_debug(void *ctx, script_run *run, const char *l, size_t len)
{
    (void)ctx;
    snprintf(logs, sizeof(logs), "%.*s", (int)len, l);
    stopped = run;
    stops++;
}

static const script_host host = {host_call, host_yield, host_done, NULL, NULL, host_debug};

static int setup(void **state)
{
    (void)state;
    E = script_engine_new(&host, NULL);
    return E ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    script_engine_free(E);
    return 0;
}

static void start(const char *body, int flags)
{
    char err[256];
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    assert_non_null(s);
    done_called = stops = 0;
    stopped = NULL;
    logs[0] = final[0] = '\0';
    char *k = "key";
    size_t kl = 3;
    script_run_start(E, s, 1, &k, &kl, 0, NULL, NULL, flags, NULL);
}

static void cmd(const char *line)
{
    char buf[256], *argv[16];
    size_t lens[16];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *t = strtok(buf, " "); t && argc < 16; t = strtok(NULL, " ")) {
        argv[argc] = t;
        lens[argc] = strlen(t);
        argc++;
    }
    assert_non_null(stopped);
    script_run_debug_command(stopped, argc, argv, lens);
}

static void test_stops_steps_and_ends(void **state)
{
    (void)state;
    start("local a = 1\nredis.call('set', KEYS[1], 'x')\nreturn a\n", SCRIPT_RUN_DEBUG);
    assert_false(done_called);
    assert_string_equal(logs, "*2\r\n+* Stopped at 1, stop reason = step over\r\n+-> 1   local a = 1\r\n");
    cmd("step");
    assert_string_equal(logs, "*2\r\n+* Stopped at 2, stop reason = step over\r\n"
                              "+-> 2   redis.call('set', KEYS[1], 'x')\r\n");
    cmd("print");
    assert_string_equal(logs, "*1\r\n+<value> a = 1\r\n");
    cmd("print KEYS");
    assert_string_equal(logs, "*1\r\n+<value> {\"key\"}\r\n");
    cmd("step");
    assert_string_equal(logs, "*4\r\n+<redis> set key x\r\n+<reply> \"+OK\"\r\n"
                              "+* Stopped at 3, stop reason = step over\r\n+-> 3   return a\r\n");
    cmd("continue");
    assert_true(done_called);
    assert_string_equal(final, "*1\r\n+<endsession>\r\n:1\r\n");
}

static void test_breakpoints_and_lua_api(void **state)
{
    (void)state;
    start("local t = 0\nfor i = 1, 2 do\n  t = t + i\n  redis.debug('t', t)\nend\nredis.breakpoint()\nreturn t\n",
          SCRIPT_RUN_DEBUG);
    cmd("break 3");
    assert_string_equal(logs, "*3\r\n+   2   for i = 1, 2 do\r\n+  #3     t = t + i\r\n+   4     redis.debug('t', t)\r\n");
    cmd("continue");
    assert_string_equal(logs, "*2\r\n+* Stopped at 3, stop reason = break point\r\n+->#3     t = t + i\r\n");
    cmd("break -3");
    assert_string_equal(logs, "*1\r\n+Breakpoint removed.\r\n");
    cmd("continue");
    assert_string_equal(logs, "*4\r\n+<debug> line 4: \"t\", 1\r\n+<debug> line 4: \"t\", 3\r\n"
                              "+* Stopped at 7, stop reason = redis.breakpoint() called\r\n+-> 7   return t\r\n");
    cmd("eval 3 * 2");
    assert_string_equal(logs, "*1\r\n+<retval> 6\r\n");
    cmd("redis get key");
    assert_string_equal(logs, "*2\r\n+<redis> get key\r\n+<reply> \"v\"\r\n");
    cmd("redis nosuch");
    assert_string_equal(logs, "*2\r\n+<redis> nosuch\r\n+<error> Unknown Redis command called from script\r\n");
    cmd("maxlen 1");
    assert_string_equal(logs, "*1\r\n+<value> replies are truncated at 60 bytes.\r\n");
    cmd("bogus");
    assert_string_equal(logs, "*1\r\n+<error> Unknown Redis Lua debugger command or wrong number of arguments.\r\n");
    cmd("c");
    assert_string_equal(final, "*1\r\n+<endsession>\r\n:3\r\n");
}

static void test_abort(void **state)
{
    (void)state;
    start("local a = 1\nreturn a\n", SCRIPT_RUN_DEBUG);
    cmd("abort");
    assert_true(done_called);
    assert_non_null(strstr(final, "*1\r\n+<endsession>\r\n-ERR script aborted for user request script: "));
    assert_non_null(strstr(final, "on @user_script:1.\r\n"));
}

static void test_detach_runs_to_end(void **state)
{
    (void)state;
    start("local a = 1\nredis.breakpoint()\nreturn a + 1\n", SCRIPT_RUN_DEBUG);
    assert_non_null(stopped);
    script_run_debug_detach(stopped);
    assert_true(done_called);
    assert_int_equal(stops, 1);
    assert_string_equal(final, "*1\r\n+<endsession>\r\n:2\r\n");
}

static void test_timeout_then_gone(void **state)
{
    (void)state;
    script_engine_set_debug_timeout(E, 50);
    start("local i = 0\nwhile true do\n  i = i + 1\nend\n", SCRIPT_RUN_DEBUG);
    cmd("continue");
    assert_false(done_called);
    assert_non_null(strstr(logs, "stop reason = timeout reached, infinite loop?"));
    script_run_debug_detach(stopped);
    assert_true(done_called);
    assert_non_null(strstr(final, "-ERR timeout during Lua debugging with client closing connection"));
    script_engine_set_debug_timeout(E, 0);
}

static void test_no_session_no_debugging(void **state)
{
    (void)state;
    start("redis.debug('x')\nreturn redis.breakpoint() and 1 or 0\n", 0);
    assert_true(done_called);
    assert_int_equal(stops, 0);
    assert_string_equal(final, ":0\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stops_steps_and_ends),
        cmocka_unit_test(test_breakpoints_and_lua_api),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_detach_runs_to_end),
        cmocka_unit_test(test_timeout_then_gone),
        cmocka_unit_test(test_no_session_no_debugging),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
