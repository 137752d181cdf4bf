/* Unit tests for backend URLs: schemes, TLS, credentials, defaults. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "backends/backend.h"

static void test_rediss_with_credentials_and_db(void **state)
{
    (void)state;
    backend_url u;
    char err[256];
    assert_int_equal(backend_url_parse("rediss://app:p%40ss@store.example:6390/3", &u, err, sizeof(err)), 0);
    assert_string_equal(u.scheme, "rediss");
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "store.example");
    assert_int_equal(u.port, 6390);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss");
    assert_int_equal(u.db, 3);
    backend_url_free(&u);
}

static void test_plain_schemes_are_not_tls(void **state)
{
    (void)state;
    backend_url u;
    char err[256];
    assert_int_equal(backend_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.port, 6379);
    backend_url_free(&u);
    assert_int_equal(backend_url_parse("memcached://[::1]:11300", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 11300);
    backend_url_free(&u);
    assert_int_equal(backend_url_parse("unix:///run/redis.sock?db=2", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 0);
    backend_url_free(&u);
}

static void test_memcacheds_defaults(void **state)
{
    (void)state;
    backend_url u;
    char err[256];
    assert_int_equal(backend_url_parse("MemcacheDS://cache.local", &u, err, sizeof(err)), 0);
    assert_string_equal(u.scheme, "memcacheds");
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 11211);
    backend_url_free(&u);
    assert_int_equal(backend_url_parse("rediss://h", &u, err, sizeof(err)), 0);
    assert_int_equal(u.port, 6379);
    backend_url_free(&u);
}

static void test_bad_urls_name_no_secret(void **state)
{
    (void)state;
    backend_url u;
    char err[256];
    assert_int_equal(backend_url_parse("redistls://h:1", &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "rediss://"));
    assert_int_equal(backend_url_parse("rediss://user:TopSecret@h:99999", &u, err, sizeof(err)), -1);
    assert_null(strstr(err, "TopSecret"));
    assert_non_null(strstr(err, "rediss://"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rediss_with_credentials_and_db),
        cmocka_unit_test(test_plain_schemes_are_not_tls),
        cmocka_unit_test(test_memcacheds_defaults),
        cmocka_unit_test(test_bad_urls_name_no_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
