/* Unit tests for the journal records a fleet keeps in the store
 * (backends/image.c): what goes in comes out, deadlines travel as wall
 * time, tombstones are told apart, and anything else is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "util/clock.h"

static backend_image *image(int exists, const char *data, size_t len, long long ttl_ms, char kind)
{
    backend_image *img = calloc(1, sizeof(*img));
    img->exists = exists;
    img->data = malloc(len ? len : 1);
    memcpy(img->data, data, len);
    img->len = len;
    img->ttl_ms = ttl_ms;
    img->flags = 0x80000001ULL;
    img->kind = kind;
    img->read_ms = clock_ms();
    return img;
}

static void test_round_trip(void **state)
{
    (void)state;
    const char key[] = "acct:\0bin";
    backend_image *in = image(1, "v\0\r\nalue", 8, 60000, 'h');
    size_t len;
    char *rec = backend_record_encode(77, 3, key, sizeof(key) - 1, in, &len);
    unsigned long long token = 0;
    int db = -1;
    char *k = NULL;
    size_t klen = 0;
    backend_image *out = NULL;
    assert_int_equal(backend_record_decode(rec, len, &token, &db, &k, &klen, &out), 1);
    assert_int_equal(token, 77);
    assert_int_equal(db, 3);
    assert_int_equal(klen, sizeof(key) - 1);
    assert_memory_equal(k, key, klen);
    assert_int_equal(out->exists, 1);
    assert_int_equal(out->len, 8);
    assert_memory_equal(out->data, "v\0\r\nalue", 8);
    assert_int_equal(out->flags, 0x80000001ULL);
    assert_int_equal(out->kind, 'h');
    /* The TTL left, give or take the clock's tick while encoding. */
    assert_true(out->ttl_ms > 59000 && out->ttl_ms <= 60000);
    free(k);
    backend_image_free(out);
    free(rec);
    backend_image_free(in);
}

static void test_missing_key_and_no_ttl(void **state)
{
    (void)state;
    backend_image *in = image(0, "", 0, -1, 0);
    size_t len;
    char *rec = backend_record_encode(1, 0, "k", 1, in, &len);
    unsigned long long token;
    int db;
    char *k;
    size_t klen;
    backend_image *out;
    assert_int_equal(backend_record_decode(rec, len, &token, &db, &k, &klen, &out), 1);
    assert_int_equal(out->exists, 0);
    assert_int_equal(out->ttl_ms, -1);
    free(k);
    backend_image_free(out);
    free(rec);
    /* A deadline already past comes back as 0: put back as missing. */
    in->exists = 1;
    in->ttl_ms = 1;
    in->read_ms -= 1000;
    rec = backend_record_encode(1, 0, "k", 1, in, &len);
    assert_int_equal(backend_record_decode(rec, len, &token, &db, &k, &klen, &out), 1);
    assert_int_equal(out->ttl_ms, 0);
    free(k);
    backend_image_free(out);
    free(rec);
    backend_image_free(in);
}

static void test_tombstone_and_garbage(void **state)
{
    (void)state;
    size_t len;
    char *t = backend_record_tombstone(42, &len);
    unsigned long long token = 0;
    int db;
    char *k = NULL;
    size_t klen;
    backend_image *out = NULL;
    assert_int_equal(backend_record_decode(t, len, &token, &db, &k, &klen, &out), 0);
    assert_int_equal(token, 42);
    assert_null(k);
    assert_null(out);
    free(t);
    assert_int_equal(backend_record_decode("EPJ1", 4, &token, &db, &k, &klen, &out), -1);
    assert_int_equal(backend_record_decode("hello world, not a record at all, no", 36, &token, &db, &k, &klen, &out),
                     -1);
    /* A record cut short is refused, not read past its end. */
    backend_image *in = image(1, "value", 5, -1, 0);
    char *rec = backend_record_encode(5, 0, "key", 3, in, &len);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(backend_record_decode(rec, cut, &token, &db, &k, &klen, &out), -1);
    free(rec);
    backend_image_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_missing_key_and_no_ttl),
        cmocka_unit_test(test_tombstone_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
