/* Unit tests for the (database, key) set that remembers keys known to be
 * out of a migration's old store, and for the image checks of a copy
 * between stores (RDB versions of DUMP payloads). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "util/key_set.h"

static void test_add_has(void **state)
{
    (void)state;
    key_set *s = key_set_new();
    assert_false(key_set_has(s, 0, "a", 1));
    assert_int_equal(key_set_add(s, 0, "a", 1), 1);
    assert_int_equal(key_set_add(s, 0, "a", 1), 0);
    assert_true(key_set_has(s, 0, "a", 1));
    assert_false(key_set_has(s, 1, "a", 1)); /* another database */
    assert_false(key_set_has(s, 0, "ab", 2));
    assert_int_equal(key_set_add(s, 0, "", 0), 1); /* the empty name is a key too */
    assert_true(key_set_has(s, 0, "", 0));
    assert_int_equal(key_set_add(s, 0, "x\0y", 3), 1);
    assert_false(key_set_has(s, 0, "x\0z", 3));
    assert_int_equal(key_set_count(s), 3);
    key_set_free(s);
}

static void test_grow_and_clear(void **state)
{
    (void)state;
    key_set *s = key_set_new();
    char k[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof(k), "key:%d", i);
        assert_int_equal(key_set_add(s, i % 3, k, (size_t)n), 1);
    }
    assert_int_equal(key_set_count(s), 100000);
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof(k), "key:%d", i);
        assert_true(key_set_has(s, i % 3, k, (size_t)n));
        assert_false(key_set_has(s, (i + 1) % 3, k, (size_t)n));
    }
    assert_true(key_set_bytes(s) > 0);
    key_set_clear(s);
    assert_int_equal(key_set_count(s), 0);
    assert_false(key_set_has(s, 0, "key:0", 5));
    assert_int_equal(key_set_add(s, 0, "key:0", 5), 1);
    key_set_free(s);
}

static void test_rdb_versions(void **state)
{
    (void)state;
    /* Shaped as DUMP answers: type, value, RDB version (6: 2.8, 10: 7.0), then 8 CRC bytes. */
    static const char dump28[] = "\x00\x01v\x06\x00\x8a\xd6\x9c\x8c\xaa\x25\x90\x42";
    static const char dump70[] = "\x00\x01v\x0a\x00\x95\x7c\x4f\x83\x4e\x52\x45\x17";
    assert_int_equal(backend_dump_rdb_version(dump28, sizeof(dump28) - 1), 6);
    assert_int_equal(backend_dump_rdb_version(dump70, sizeof(dump70) - 1), 10);
    assert_int_equal(backend_dump_rdb_version("short", 5), -1);
    assert_int_equal(backend_rdb_version_read(20824), 6);
    assert_int_equal(backend_rdb_version_read(30213), 7);
    assert_int_equal(backend_rdb_version_read(40014), 8);
    assert_int_equal(backend_rdb_version_read(60020), 9);
    assert_int_equal(backend_rdb_version_read(70015), 10);
    assert_int_equal(backend_rdb_version_read(0), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_has),
        cmocka_unit_test(test_grow_and_clear),
        cmocka_unit_test(test_rdb_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
