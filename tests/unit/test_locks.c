/* Unit tests for the key lock table (proxy/core/locks.c): unit naming, the mode
 * matrix, strict FIFO, the keyspace unit, cancellation, LOCK_BUSY, undeclared
 * keys with cycle breaking, and a randomized stress run with its own model of
 * who may hold what. Grant callbacks come from a real libevent loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "proxy/core/locks.h"

/* ---- fixture and helpers ------------------------------------------------ */

static struct event_base *base;
static int in_loop; /* callbacks must only run from the event loop */

static int setup(void **state)
{
    base = event_base_new();
    assert_non_null(base);
    locks_init(base);
    return 0;
}

/* Every test ends with all sets released: the table must be back to just the
 * keyspace unit, with nothing held or queued. */
static int teardown(void **state)
{
    lock_stats st;
    locks_get_stats(&st);
    int ok = st.units == 1 && st.sets_holding == 0 && st.sets_waiting == 0;
    if (!ok) fprintf(stderr, "leak: units %lu holding %lu waiting %lu\n", st.units, st.sets_holding, st.sets_waiting);
    locks_shutdown();
    event_base_free(base);
    base = NULL;
    return ok ? 0 : -1;
}

static void run_loop(void)
{
    in_loop = 1;
    event_base_loop(base, EVLOOP_NONBLOCK);
    in_loop = 0;
}

typedef struct req {
    int id;
    int calls;
    lock_set *ls;
    int release_all_on_abort;
    int aborts;
} req;

static int order[256];
static int norder;

static void granted_cb(lock_set *ls, void *ctx)
{
    req *r = ctx;
    assert_true(in_loop);
    assert_ptr_equal(r->ls, ls);
    r->calls++;
    if (norder < (int)(sizeof(order) / sizeof(order[0]))) order[norder++] = r->id;
}

static void abort_cb(lock_set *ls, void *ctx)
{
    req *r = ctx;
    assert_ptr_equal(r->ls, ls);
    r->aborts++;
    lock_set_release_all(ls);
}

static void reset_order(void) { norder = 0; }

/* New request over NULL-terminated keys in db; keys == NULL: whole keyspace. */
static lock_set *mk(req *r, int id, int mode, int db, const char *const *keys)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->ls = lock_set_new(mode, granted_cb, r);
    if (mode == LOCK_SCRIPT_RO || mode == LOCK_SCRIPT_EXCL) lock_set_mark_script(r->ls, abort_cb);
    if (!keys) lock_set_add_keyspace(r->ls);
    else
        for (const char *const *k = keys; *k; k++) lock_set_add_key(r->ls, db, *k, strlen(*k));
    return r->ls;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int acq(req *r, int id, int mode, int db, const char *const *keys)
{
    mk(r, id, mode, db, keys);
    return lock_set_acquire(r->ls, 0);
}

static void rel(req *r)
{
    lock_set_release(r->ls);
    r->ls = NULL;
}

static int holds(req *r, int db, const char *key) { return lock_set_holds(r->ls, db, key, strlen(key)); }

static void stats(lock_stats *st) { locks_get_stats(st); }

/* Independent statement of DESIGN.md's matrix: plain read and write are
 * compatible, read-only scripts share with plain reads and each other,
 * exclusive scripts with nothing. */
static int expect_compat(int a, int b)
{
    if (a == LOCK_SCRIPT_EXCL || b == LOCK_SCRIPT_EXCL) return 0;
    if (a == LOCK_SCRIPT_RO || b == LOCK_SCRIPT_RO) {
        int o = a == LOCK_SCRIPT_RO ? b : a;
        return o == LOCK_SCRIPT_RO || o == LOCK_PLAIN_READ;
    }
    return 1;
}

/* ---- unit naming -------------------------------------------------------- */

static void check_name(const char *key, const char *want)
{
    const char *name;
    size_t len;
    lock_unit_name(key, strlen(key), &name, &len);
    if (len != strlen(want) || memcmp(name, want, len))
        fail_msg("unit of \"%s\": got \"%.*s\", want \"%s\"", key, (int)len, name, want);
}

static void test_unit_name(void **state)
{
    check_name("{user1}:a", "user1");
    check_name("{user1}:b", "user1");
    check_name("{}x", "{}x");
    check_name("x{}", "x{}");
    check_name("a{b}{c}", "b");
    check_name("foo{}{bar}", "foo{}{bar}"); /* the first '{' decides, even when its tag is empty */
    check_name("{{a}}", "{a");
    check_name("a}{b", "a}{b");
    check_name("}{x}", "x");      /* a '}' before the first '{' does not count */
    check_name("a}b{c}d", "c");
    check_name("{a", "{a");
    check_name("a{bc}", "bc");
    check_name("plain", "plain");
    check_name("", "");
    check_name("{", "{");
    check_name("}", "}");
    /* Binary keys: an embedded NUL does not end the key. */
    const char bin[] = {'x', '\0', '{', 't', '}'};
    const char *name;
    size_t len;
    lock_unit_name(bin, sizeof(bin), &name, &len);
    assert_int_equal(len, 1);
    assert_memory_equal(name, "t", 1);
    lock_unit_name(NULL, 0, &name, &len);
    assert_int_equal(len, 0);
}

/* The naming is what the table actually locks on. */
static void test_unit_sharing(void **state)
{
    req a, b, c, d, e;
    assert_int_equal(acq(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("{user1}:a")), LOCK_GRANTED);
    assert_int_equal(acq(&b, 2, LOCK_SCRIPT_EXCL, 0, KEYS("{user1}:b")), LOCK_WAITING);
    assert_true(holds(&a, 0, "{user1}:zzz"));
    assert_true(holds(&a, 0, "user1"));
    assert_false(holds(&a, 0, "{user2}:a"));
    /* Empty tags: whole key, so none of these share with "x" or each other. */
    assert_int_equal(acq(&c, 3, LOCK_SCRIPT_EXCL, 0, KEYS("x")), LOCK_GRANTED);
    assert_int_equal(acq(&d, 4, LOCK_SCRIPT_EXCL, 0, KEYS("{}x", "x{}")), LOCK_GRANTED);
    assert_int_equal(acq(&e, 5, LOCK_SCRIPT_EXCL, 0, KEYS("a{x}{c}")), LOCK_WAITING); /* tag "x" */
    rel(&a);
    rel(&c);
    run_loop();
    assert_int_equal(b.calls, 1);
    assert_int_equal(e.calls, 1);
    rel(&b);
    rel(&d);
    rel(&e);
}

/* ---- mode matrix -------------------------------------------------------- */

static const int all_modes[] = {LOCK_PLAIN_READ, LOCK_PLAIN_WRITE, LOCK_SCRIPT_RO, LOCK_SCRIPT_EXCL};

static void test_matrix_immediate(void **state)
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            req h, r;
            assert_int_equal(acq(&h, 1, all_modes[i], 0, KEYS("{k}1")), LOCK_GRANTED);
            int rc = acq(&r, 2, all_modes[j], 0, KEYS("{k}2"));
            if (rc != (expect_compat(all_modes[i], all_modes[j]) ? LOCK_GRANTED : LOCK_WAITING))
                fail_msg("held %d requested %d: got %d", all_modes[i], all_modes[j], rc);
            /* Keys of other units never conflict. */
            req o;
            assert_int_equal(acq(&o, 3, all_modes[j], 0, KEYS("other")), LOCK_GRANTED);
            rel(&o);
            rel(&h);
            run_loop();
            assert_int_equal(r.calls, rc == LOCK_WAITING ? 1 : 0);
            rel(&r);
        }
}

/* Two waiters queued behind an exclusive holder: when it goes, the first is
 * granted, the second together with it only if the two are compatible. */
static void test_matrix_waiting(void **state)
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            req x, a, b;
            assert_int_equal(acq(&x, 0, LOCK_SCRIPT_EXCL, 3, KEYS("k")), LOCK_GRANTED);
            assert_int_equal(acq(&a, 1, all_modes[i], 3, KEYS("k")), LOCK_WAITING);
            assert_int_equal(acq(&b, 2, all_modes[j], 3, KEYS("k")), LOCK_WAITING);
            rel(&x);
            run_loop();
            assert_int_equal(a.calls, 1);
            int both = expect_compat(all_modes[i], all_modes[j]);
            if (b.calls != both) fail_msg("queued %d then %d: second granted %d", all_modes[i], all_modes[j], b.calls);
            rel(&a);
            run_loop();
            assert_int_equal(b.calls, 1);
            rel(&b);
        }
}

/* ---- FIFO --------------------------------------------------------------- */

static void test_fifo_strict(void **state)
{
    req r1, w, r2, r3;
    assert_int_equal(acq(&r1, 1, LOCK_PLAIN_READ, 0, KEYS("k")), LOCK_GRANTED);
    assert_int_equal(acq(&w, 2, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_WAITING);
    /* Compatible with the holder, but behind a waiter: waits. */
    assert_int_equal(acq(&r2, 3, LOCK_PLAIN_READ, 0, KEYS("k")), LOCK_WAITING);
    assert_int_equal(acq(&r3, 4, LOCK_SCRIPT_RO, 0, KEYS("k")), LOCK_WAITING);
    run_loop();
    assert_int_equal(w.calls + r2.calls + r3.calls, 0);
    reset_order();
    rel(&r1);
    /* Grants are reported from the loop, never from inside release. */
    assert_int_equal(w.calls, 0);
    lock_stats st;
    stats(&st);
    assert_int_equal(st.sets_holding, 1);
    assert_int_equal(st.sets_waiting, 2);
    run_loop();
    assert_int_equal(w.calls, 1);
    assert_int_equal(r2.calls + r3.calls, 0);
    rel(&w);
    run_loop();
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r3.calls, 1);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 4);
    rel(&r2);
    rel(&r3);
}

/* A set is enqueued on all its units at once and holds none of them until
 * it can hold them all. */
static void test_all_at_once(void **state)
{
    req a, b, c, d, e;
    assert_int_equal(acq(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k1")), LOCK_GRANTED);
    assert_int_equal(acq(&b, 2, LOCK_SCRIPT_EXCL, 0, KEYS("k2")), LOCK_GRANTED);
    assert_int_equal(acq(&c, 3, LOCK_SCRIPT_EXCL, 0, KEYS("k1", "k2", "k3")), LOCK_WAITING);
    assert_int_equal(acq(&d, 4, LOCK_PLAIN_READ, 0, KEYS("k2")), LOCK_WAITING);
    /* k3 is free, yet c does not hold it; later requests for k3 queue behind c. */
    assert_int_equal(acq(&e, 5, LOCK_PLAIN_READ, 0, KEYS("k3")), LOCK_WAITING);
    assert_false(holds(&c, 0, "k3"));
    rel(&b);
    run_loop();
    assert_int_equal(c.calls + d.calls + e.calls, 0);
    assert_false(holds(&c, 0, "k2"));
    rel(&a);
    run_loop();
    assert_int_equal(c.calls, 1);
    assert_true(holds(&c, 0, "k1") && holds(&c, 0, "k2") && holds(&c, 0, "k3"));
    assert_int_equal(d.calls + e.calls, 0);
    rel(&c);
    run_loop();
    assert_int_equal(d.calls, 1);
    assert_int_equal(e.calls, 1);
    rel(&d);
    rel(&e);
}

/* Release one unit at a time: grants follow arrival order. */
static void test_grant_order(void **state)
{
    enum { N = 12 };
    req h[3], w[N];
    const char *ks[3] = {"{a}", "{b}", "{c}"};
    for (int i = 0; i < 3; i++) assert_int_equal(acq(&h[i], 100 + i, LOCK_SCRIPT_EXCL, 0, KEYS(ks[i])), LOCK_GRANTED);
    /* Waiter i needs unit i%3 and, every other one, also unit (i+1)%3. */
    for (int i = 0; i < N; i++) {
        const char *k2 = (i & 1) ? ks[(i + 1) % 3] : NULL;
        const char *keys[3] = {ks[i % 3], k2, NULL};
        assert_int_equal(acq(&w[i], i, LOCK_SCRIPT_EXCL, 0, keys), LOCK_WAITING);
    }
    reset_order();
    for (int i = 0; i < 3; i++) rel(&h[i]);
    int done = 0;
    while (done < N) {
        run_loop();
        assert_true(norder > done);
        for (; done < norder; done++) {
            int id = order[done];
            /* Nobody earlier that shares a unit with id may still be waiting. */
            for (int j = 0; j < id; j++)
                if (w[j].calls == 0) {
                    int shares = 0;
                    for (int u = 0; u < 3; u++)
                        if ((j % 3 == u || ((j & 1) && (j + 1) % 3 == u)) && (id % 3 == u || ((id & 1) && (id + 1) % 3 == u)))
                            shares = 1;
                    if (shares) fail_msg("%d granted before %d", id, j);
                }
        }
        for (int i = 0; i < N; i++)
            if (w[i].calls && w[i].ls) rel(&w[i]);
    }
}

/* ---- keyspace unit ------------------------------------------------------ */

static void test_keyspace_full_vs_keyed(void **state)
{
    req f, s, p, q, r;
    assert_int_equal(acq(&f, 1, LOCK_PLAIN_WRITE, 0, NULL), LOCK_GRANTED);
    /* A script exclusive on any key conflicts with FLUSHALL-style holders. */
    assert_int_equal(acq(&s, 2, LOCK_SCRIPT_EXCL, 5, KEYS("anything")), LOCK_WAITING);
    /* Plain keyed commands do not, even behind the waiting script. */
    assert_int_equal(acq(&p, 3, LOCK_PLAIN_WRITE, 0, KEYS("b")), LOCK_GRANTED);
    assert_int_equal(acq(&q, 4, LOCK_PLAIN_READ, 7, KEYS("c")), LOCK_GRANTED);
    /* A read-only script conflicts with a full plain write too. */
    assert_int_equal(acq(&r, 5, LOCK_SCRIPT_RO, 0, KEYS("d")), LOCK_WAITING);
    rel(&f);
    run_loop();
    assert_int_equal(s.calls, 1);
    assert_int_equal(r.calls, 1);
    rel(&s);
    rel(&p);
    rel(&q);
    rel(&r);

    /* Full plain read (KEYS, SCAN) shares with read-only scripts, not exclusive ones. */
    assert_int_equal(acq(&f, 1, LOCK_PLAIN_READ, 0, NULL), LOCK_GRANTED);
    assert_int_equal(acq(&r, 2, LOCK_SCRIPT_RO, 0, KEYS("d")), LOCK_GRANTED);
    assert_int_equal(acq(&s, 3, LOCK_SCRIPT_EXCL, 0, KEYS("e")), LOCK_WAITING);
    assert_int_equal(acq(&p, 4, LOCK_PLAIN_WRITE, 0, NULL), LOCK_WAITING); /* conflicts with r (RO script) */
    rel(&r);
    run_loop();
    assert_int_equal(s.calls, 0); /* f still holds */
    assert_int_equal(p.calls, 0); /* behind s, strict FIFO among full-keyspace waiters */
    rel(&f);
    run_loop();
    assert_int_equal(s.calls, 1);
    assert_int_equal(p.calls, 0);
    rel(&s);
    run_loop();
    assert_int_equal(p.calls, 1);
    /* Two full plain requests are compatible with each other. */
    assert_int_equal(acq(&q, 5, LOCK_PLAIN_READ, 0, NULL), LOCK_GRANTED);
    rel(&q);
    rel(&p);
}

static void test_keyspace_waiting_full(void **state)
{
    req s, f, p, s2, p2;
    assert_int_equal(acq(&s, 1, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(acq(&f, 2, LOCK_PLAIN_WRITE, 0, NULL), LOCK_WAITING);
    /* A plain command compatible with the waiting FLUSHALL cannot delay it. */
    assert_int_equal(acq(&p, 3, LOCK_PLAIN_READ, 0, KEYS("b")), LOCK_GRANTED);
    /* A script that conflicts with it queues behind it. */
    assert_int_equal(acq(&s2, 4, LOCK_SCRIPT_EXCL, 0, KEYS("c")), LOCK_WAITING);
    /* A plain command on the script's own key waits for the key. */
    assert_int_equal(acq(&p2, 5, LOCK_PLAIN_READ, 0, KEYS("a")), LOCK_WAITING);
    rel(&s);
    run_loop();
    assert_int_equal(f.calls, 1);
    assert_int_equal(p2.calls, 1);
    assert_int_equal(s2.calls, 0);
    rel(&f);
    run_loop();
    assert_int_equal(s2.calls, 1);
    rel(&s2);
    rel(&p);
    rel(&p2);

    /* A keyed request queued behind a full one it is compatible with goes
     * ahead once what blocked it (a full holder) is gone, while the full one
     * still waits for something else. */
    req r, h, i;
    assert_int_equal(acq(&r, 1, LOCK_SCRIPT_RO, 0, KEYS("r")), LOCK_GRANTED);
    assert_int_equal(acq(&h, 2, LOCK_SCRIPT_RO, 0, NULL), LOCK_GRANTED); /* read-only script using KEYS */
    assert_int_equal(acq(&f, 3, LOCK_PLAIN_WRITE, 0, NULL), LOCK_WAITING);
    assert_int_equal(acq(&i, 4, LOCK_PLAIN_WRITE, 0, KEYS("i")), LOCK_WAITING);
    rel(&h);
    run_loop();
    assert_int_equal(i.calls, 1);
    assert_int_equal(f.calls, 0);
    rel(&i);
    rel(&r);
    run_loop();
    assert_int_equal(f.calls, 1);
    rel(&f);

    /* A full request is not held back by a waiting keyed one it does not
     * conflict with. */
    assert_int_equal(acq(&r, 1, LOCK_SCRIPT_RO, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(acq(&p, 2, LOCK_PLAIN_WRITE, 0, KEYS("a")), LOCK_WAITING);
    assert_int_equal(acq(&f, 3, LOCK_PLAIN_READ, 0, NULL), LOCK_GRANTED);
    rel(&f);
    rel(&r);
    run_loop();
    assert_int_equal(p.calls, 1);
    rel(&p);
}

/* Keyed requests only hold the keyspace as an intent: one waiting for a key
 * never holds back another for a different key. */
static void test_keyspace_intents_independent(void **state)
{
    req s, w, others[4];
    assert_int_equal(acq(&s, 1, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(acq(&w, 2, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_WAITING);
    for (int m = 0; m < 4; m++) {
        char k[32];
        snprintf(k, sizeof(k), "b%d", m);
        if (acq(&others[m], 10 + m, all_modes[m], 0, KEYS(k)) != LOCK_GRANTED)
            fail_msg("mode %d on an unrelated key waited", all_modes[m]);
    }
    for (int m = 0; m < 4; m++) rel(&others[m]);
    rel(&s);
    run_loop();
    assert_int_equal(w.calls, 1);
    rel(&w);
}

/* ---- cancel, release before notification, db, duplicates ---------------- */

static void test_cancel(void **state)
{
    req x, w1, w2, w3;
    assert_int_equal(acq(&x, 1, LOCK_PLAIN_READ, 0, KEYS("k")), LOCK_GRANTED);
    assert_int_equal(acq(&w1, 2, LOCK_SCRIPT_EXCL, 0, KEYS("k", "j")), LOCK_WAITING);
    assert_int_equal(acq(&w2, 3, LOCK_PLAIN_READ, 0, KEYS("k")), LOCK_WAITING);
    assert_int_equal(acq(&w3, 4, LOCK_PLAIN_WRITE, 0, KEYS("j")), LOCK_WAITING);
    /* Cancelling the blocking waiter lets those behind it through at once. */
    rel(&w1);
    run_loop();
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w3.calls, 1);
    rel(&w2);
    rel(&w3);
    rel(&x);

    /* Cancelling the head of a queue behind a holder changes nothing for it. */
    assert_int_equal(acq(&x, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_GRANTED);
    assert_int_equal(acq(&w1, 2, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_WAITING);
    assert_int_equal(acq(&w2, 3, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_WAITING);
    rel(&w1);
    run_loop();
    assert_int_equal(w2.calls, 0);
    rel(&x);
    run_loop();
    assert_int_equal(w2.calls, 1);
    rel(&w2);
}

static int freed_cb_calls;
static void counting_cb(lock_set *ls, void *ctx) { freed_cb_calls++; }

static void test_release_before_notify(void **state)
{
    req x;
    assert_int_equal(acq(&x, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_GRANTED);
    freed_cb_calls = 0;
    lock_set *w = lock_set_new(LOCK_SCRIPT_EXCL, counting_cb, NULL);
    lock_set_add_key(w, 0, "k", 1);
    assert_int_equal(lock_set_acquire(w, 0), LOCK_WAITING);
    lock_set *w2 = lock_set_new(LOCK_PLAIN_READ, counting_cb, NULL);
    lock_set_add_key(w2, 0, "k", 1);
    assert_int_equal(lock_set_acquire(w2, 0), LOCK_WAITING);
    rel(&x);
    assert_true(lock_set_holds(w, 0, "k", 1)); /* granted, not yet told */
    lock_set_release(w);                       /* e.g. the client went away */
    assert_true(lock_set_holds(w2, 0, "k", 1)); /* its release moved the queue on */
    lock_set_release_all(w2);                   /* the same for release_all */
    run_loop();
    assert_int_equal(freed_cb_calls, 0);
    lock_set_release(w2);
    run_loop();
    assert_int_equal(freed_cb_calls, 0);
}

static void test_db_separation(void **state)
{
    req a, b, c;
    assert_int_equal(acq(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_GRANTED);
    assert_int_equal(acq(&b, 2, LOCK_SCRIPT_EXCL, 1, KEYS("k")), LOCK_GRANTED);
    assert_true(holds(&a, 0, "k"));
    assert_false(holds(&a, 1, "k"));
    assert_true(holds(&b, 1, "k"));
    assert_int_equal(acq(&c, 3, LOCK_PLAIN_READ, 1, KEYS("{k}x")), LOCK_WAITING);
    rel(&a);
    run_loop();
    assert_int_equal(c.calls, 0);
    rel(&b);
    run_loop();
    assert_int_equal(c.calls, 1);
    rel(&c);
}

static void test_duplicates(void **state)
{
    req a, b;
    mk(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("a", "a", "{a}x", "{a}y", "b"));
    assert_int_equal(lock_set_unit_count(a.ls), 2);
    /* Another set touching the same unit in between must not fool the dedupe. */
    mk(&b, 2, LOCK_SCRIPT_EXCL, 0, KEYS("a"));
    lock_set_add_key(a.ls, 0, "a", 1);
    lock_set_add_key(a.ls, 0, "{b}", 3);
    assert_int_equal(lock_set_unit_count(a.ls), 2);
    assert_int_equal(lock_set_acquire(a.ls, 0), LOCK_GRANTED); /* never waits for itself */
    assert_int_equal(lock_set_acquire(b.ls, 0), LOCK_WAITING);
    rel(&a);
    run_loop();
    assert_int_equal(b.calls, 1);
    rel(&b);
    /* Duplicates over many keys (entries beyond the inline ones). */
    mk(&a, 1, LOCK_PLAIN_WRITE, 0, KEYS("a"));
    char k[32];
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < 50; i++) {
            snprintf(k, sizeof(k), "{t%d}%d", i, rep);
            lock_set_add_key(a.ls, 0, k, strlen(k));
        }
    assert_int_equal(lock_set_unit_count(a.ls), 51);
    assert_int_equal(lock_set_acquire(a.ls, 0), LOCK_GRANTED);
    rel(&a);
}

static void test_many_keys_and_sets(void **state)
{
    lock_stats st;
    char k[32];
    req a, b;
    mk(&a, 1, LOCK_SCRIPT_EXCL, 2, KEYS("seed"));
    mk(&b, 2, LOCK_PLAIN_WRITE, 2, KEYS("seed"));
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        lock_set_add_key(a.ls, 2, k, strlen(k));
        snprintf(k, sizeof(k), "key:%d", 999 - i);
        lock_set_add_key(b.ls, 2, k, strlen(k));
    }
    assert_int_equal(lock_set_acquire(a.ls, 0), LOCK_GRANTED);
    assert_int_equal(lock_set_acquire(b.ls, 0), LOCK_WAITING);
    stats(&st);
    assert_int_equal(st.units, 1002);
    rel(&a);
    run_loop();
    assert_int_equal(b.calls, 1);
    rel(&b);
    stats(&st);
    assert_int_equal(st.units, 1);

    /* 10000 sets: half on their own keys, half queued on a few shared ones. */
    enum { N = 10000 };
    req *r = calloc(N, sizeof(*r));
    assert_non_null(r);
    int waiting = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), (i & 1) ? "shared:%d" : "own:%d", (i & 1) ? i % 7 : i);
        int mode = (i & 1) ? all_modes[(i / 2) % 4] : LOCK_SCRIPT_EXCL;
        int rc = acq(&r[i], i, mode, i % 3, KEYS(k));
        assert_true(rc == LOCK_GRANTED || rc == LOCK_WAITING);
        waiting += rc == LOCK_WAITING;
        if (rc == LOCK_GRANTED) r[i].calls = -1; /* granted, not to be told */
    }
    stats(&st);
    assert_int_equal(st.sets_waiting, waiting);
    assert_int_equal(st.sets_holding + st.sets_waiting, N);
    /* Release every granted one until all are through. */
    int left = N, rounds = 0;
    while (left) {
        int progress = 0;
        for (int i = 0; i < N; i++)
            if (r[i].ls && r[i].calls != 0) {
                rel(&r[i]);
                left--;
                progress = 1;
            }
        run_loop();
        assert_true(progress || left == 0);
        assert_true(++rounds < 100000);
    }
    free(r);
    stats(&st);
    assert_int_equal(st.units, 1);
    assert_int_equal(st.sets_holding, 0);
    assert_int_equal(st.sets_waiting, 0);
}

/* ---- LOCK_BUSY ---------------------------------------------------------- */

static void test_busy(void **state)
{
    req s, p, p2, p3, f, ro, pr;
    lock_stats before, after;
    assert_int_equal(acq(&s, 1, LOCK_SCRIPT_EXCL, 0, KEYS("a", "{b}")), LOCK_GRANTED);
    lock_set_set_busy(s.ls, 1);
    stats(&before);
    mk(&p, 2, LOCK_PLAIN_READ, 0, KEYS("x", "{b}y"));
    assert_int_equal(lock_set_acquire(p.ls, 1), LOCK_BUSY);
    stats(&after);
    assert_int_equal(after.sets_waiting, before.sets_waiting);
    assert_int_equal(after.sets_holding, before.sets_holding);
    assert_int_equal(after.busy_refusals, before.busy_refusals + 1);
    /* Nothing held or queued: "x" is free for an exclusive script. */
    assert_false(holds(&p, 0, "x"));
    assert_int_equal(acq(&p2, 3, LOCK_SCRIPT_EXCL, 0, KEYS("x")), LOCK_GRANTED);
    rel(&p2);
    /* Unrelated keys are granted even with refuse_if_busy. */
    mk(&p3, 4, LOCK_PLAIN_WRITE, 0, KEYS("c"));
    assert_int_equal(lock_set_acquire(p3.ls, 1), LOCK_GRANTED);
    rel(&p3);
    /* A FLUSHALL conflicts with the busy script through its keyspace intent. */
    mk(&f, 5, LOCK_PLAIN_WRITE, 0, NULL);
    assert_int_equal(lock_set_acquire(f.ls, 1), LOCK_BUSY);
    rel(&f);
    /* Without refuse_if_busy it simply waits. */
    mk(&f, 5, LOCK_PLAIN_READ, 0, KEYS("a"));
    assert_int_equal(lock_set_acquire(f.ls, 0), LOCK_WAITING);
    /* Retried after the script stops being busy, the refused one queues and
     * is granted like any other. */
    lock_set_set_busy(s.ls, 0);
    assert_int_equal(lock_set_acquire(p.ls, 1), LOCK_WAITING);
    assert_int_equal(lock_set_unit_count(p.ls), 3); /* x, b and one keyspace intent */
    rel(&s);
    run_loop();
    assert_int_equal(p.calls, 1);
    assert_int_equal(f.calls, 1);
    assert_true(holds(&p, 0, "{b}z"));
    rel(&p);
    rel(&f);

    /* A busy read-only script refuses only requests that conflict with it. */
    assert_int_equal(acq(&ro, 6, LOCK_SCRIPT_RO, 0, KEYS("r")), LOCK_GRANTED);
    lock_set_set_busy(ro.ls, 1);
    mk(&pr, 7, LOCK_PLAIN_READ, 0, KEYS("r"));
    assert_int_equal(lock_set_acquire(pr.ls, 1), LOCK_GRANTED);
    rel(&pr);
    mk(&pr, 7, LOCK_PLAIN_WRITE, 0, KEYS("r"));
    assert_int_equal(lock_set_acquire(pr.ls, 0), LOCK_WAITING);
    /* A reader queued behind that writer waits, but not behind the busy
     * script itself, which it shares with: no refusal. */
    req pr2;
    mk(&pr2, 9, LOCK_PLAIN_READ, 0, KEYS("r"));
    assert_int_equal(lock_set_acquire(pr2.ls, 1), LOCK_WAITING);
    rel(&pr2);
    rel(&pr);
    mk(&pr, 7, LOCK_PLAIN_WRITE, 0, KEYS("r"));
    assert_int_equal(lock_set_acquire(pr.ls, 1), LOCK_BUSY);
    rel(&pr);
    /* Full plain read (KEYS) shares with it; full plain write does not. */
    mk(&pr, 8, LOCK_PLAIN_READ, 0, NULL);
    assert_int_equal(lock_set_acquire(pr.ls, 1), LOCK_GRANTED);
    rel(&pr);
    mk(&pr, 8, LOCK_PLAIN_WRITE, 0, NULL);
    assert_int_equal(lock_set_acquire(pr.ls, 1), LOCK_BUSY);
    rel(&pr);
    rel(&ro);
}

/* ---- undeclared keys ---------------------------------------------------- */

static int ext(req *r, int db, const char *key) { return lock_set_extend(r->ls, db, key, strlen(key)); }

static void test_extend_basic(void **state)
{
    req s1, s2, p, w;
    assert_int_equal(acq(&s1, 1, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(ext(&s1, 0, "b"), LOCK_GRANTED);
    assert_true(holds(&s1, 0, "{b}"));
    assert_int_equal(ext(&s1, 0, "a"), LOCK_GRANTED); /* already held */
    assert_int_equal(ext(&s1, 1, "a"), LOCK_GRANTED); /* other db: a new unit */
    assert_int_equal(lock_set_unit_count(s1.ls), 4);   /* a, b, 1:a and the keyspace intent */
    /* An extended unit excludes others like a declared one. */
    assert_int_equal(acq(&p, 2, LOCK_PLAIN_READ, 0, KEYS("b")), LOCK_WAITING);
    rel(&s1);
    run_loop();
    assert_int_equal(p.calls, 1);

    /* A read-only script shares an undeclared key with a plain reader. */
    assert_int_equal(acq(&s2, 3, LOCK_SCRIPT_RO, 0, KEYS("c")), LOCK_GRANTED);
    assert_int_equal(ext(&s2, 0, "b"), LOCK_GRANTED);
    rel(&s2);

    /* Conflicting: waits, then the callback reports the grant. */
    assert_int_equal(acq(&s1, 4, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(ext(&s1, 0, "b"), LOCK_WAITING);
    assert_false(holds(&s1, 0, "b"));
    /* A plain request queued on b later stays behind the script's wait. */
    assert_int_equal(acq(&w, 5, LOCK_PLAIN_READ, 0, KEYS("b")), LOCK_WAITING);
    run_loop();
    assert_int_equal(s1.calls, 0);
    rel(&p);
    run_loop();
    assert_int_equal(s1.calls, 1);
    assert_int_equal(w.calls, 0);
    assert_true(holds(&s1, 0, "b"));
    rel(&s1);
    run_loop();
    assert_int_equal(w.calls, 1);
    rel(&w);
}

/* An undeclared-key wait goes ahead of ordinary waiters: the script already
 * holds locks they may be queued for, so waiting behind them could deadlock. */
static void test_extend_ahead_of_waiters(void **state)
{
    req p, s, w;
    assert_int_equal(acq(&p, 1, LOCK_PLAIN_WRITE, 0, KEYS("b")), LOCK_GRANTED);
    assert_int_equal(acq(&s, 2, LOCK_SCRIPT_EXCL, 0, KEYS("a")), LOCK_GRANTED);
    assert_int_equal(acq(&w, 3, LOCK_SCRIPT_EXCL, 0, KEYS("b", "a")), LOCK_WAITING);
    assert_int_equal(ext(&s, 0, "b"), LOCK_WAITING);
    rel(&p);
    run_loop();
    assert_int_equal(s.calls, 1);
    assert_int_equal(w.calls, 0);
    rel(&s);
    run_loop();
    assert_int_equal(w.calls, 1);
    rel(&w);
}

/* S1 holds A and waits for B; S2 holds B and asks for A. */
static void make_two_cycle(req *s1, req *s2)
{
    assert_int_equal(acq(s1, 1, LOCK_SCRIPT_EXCL, 0, KEYS("A")), LOCK_GRANTED);
    assert_int_equal(acq(s2, 2, LOCK_SCRIPT_EXCL, 0, KEYS("B")), LOCK_GRANTED);
    assert_int_equal(ext(s1, 0, "B"), LOCK_WAITING);
}

static void test_deadlock_requester_unwritten(void **state)
{
    req s1, s2;
    lock_stats before, after;
    make_two_cycle(&s1, &s2);
    lock_set_set_written(s1.ls, 0);
    stats(&before);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_DEADLOCK);
    stats(&after);
    assert_int_equal(after.deadlocks, before.deadlocks + 1);
    assert_int_equal(s1.aborts, 0);
    assert_false(holds(&s2, 0, "A"));
    /* S2 gives up its locks to be run again; S1 proceeds. */
    lock_set_release_all(s2.ls);
    run_loop();
    assert_int_equal(s1.calls, 1);
    assert_true(holds(&s1, 0, "B"));
    /* The same set queues again with what it learned. */
    lock_set_add_key(s2.ls, 0, "B", 1);
    lock_set_add_key(s2.ls, 0, "A", 1);
    assert_int_equal(lock_set_acquire(s2.ls, 0), LOCK_WAITING);
    rel(&s1);
    run_loop();
    assert_int_equal(s2.calls, 1);
    assert_true(holds(&s2, 0, "A") && holds(&s2, 0, "B"));
    rel(&s2);
}

static void test_deadlock_abort_other(void **state)
{
    req s1, s2;
    make_two_cycle(&s1, &s2);
    lock_set_set_written(s2.ls, 1);
    lock_stats before, after;
    stats(&before);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_GRANTED);
    stats(&after);
    assert_int_equal(after.aborts, before.aborts + 1);
    assert_int_equal(s1.aborts, 1);
    assert_true(holds(&s2, 0, "A"));
    assert_false(holds(&s1, 0, "A"));
    run_loop();
    assert_int_equal(s1.calls, 0); /* its wait was cancelled, never granted */
    /* S1 is reusable: queue it again with A and the learned B. */
    lock_set_add_key(s1.ls, 0, "A", 1);
    lock_set_add_key(s1.ls, 0, "B", 1);
    assert_int_equal(lock_set_acquire(s1.ls, 0), LOCK_WAITING);
    rel(&s2);
    run_loop();
    assert_int_equal(s1.calls, 1);
    assert_true(holds(&s1, 0, "A") && holds(&s1, 0, "B"));
    rel(&s1);

    /* With a plain request queued for A before the cycle closed, that one
     * comes first once S1 lets go; S2 then waits for it, not forever. */
    req w;
    make_two_cycle(&s1, &s2);
    assert_int_equal(acq(&w, 3, LOCK_PLAIN_READ, 0, KEYS("A")), LOCK_WAITING);
    lock_set_set_written(s2.ls, 1);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_WAITING);
    assert_int_equal(s1.aborts, 1);
    run_loop();
    assert_int_equal(w.calls, 1);
    assert_int_equal(s2.calls, 0);
    rel(&w);
    run_loop();
    assert_int_equal(s2.calls, 1);
    assert_true(holds(&s2, 0, "A"));
    rel(&s2);
    rel(&s1);
}

/* The victim may free its set in the abort callback. */
static void freeing_abort_cb(lock_set *ls, void *ctx)
{
    req *r = ctx;
    r->aborts++;
    lock_set_release(ls);
    r->ls = NULL;
}

static void test_deadlock_abort_frees(void **state)
{
    req s1, s2;
    make_two_cycle(&s1, &s2);
    lock_set_mark_script(s1.ls, freeing_abort_cb);
    lock_set_set_written(s2.ls, 1);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_GRANTED);
    assert_int_equal(s1.aborts, 1);
    assert_null(s1.ls);
    run_loop();
    rel(&s2);
}

static void test_deadlock_both_written(void **state)
{
    req s1, s2;
    make_two_cycle(&s1, &s2);
    lock_set_set_written(s1.ls, 1);
    lock_set_set_written(s2.ls, 1);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_DEADLOCK);
    assert_int_equal(s1.aborts, 0);
    assert_false(holds(&s2, 0, "A"));
    /* Nothing changed for S1: it gets B once S2 is gone. */
    rel(&s2);
    run_loop();
    assert_int_equal(s1.calls, 1);
    rel(&s1);
}

/* A victim that wrote but can undo its writes keeps what it holds while it
 * undoes them: it only stops waiting. */
static void undoing_abort_cb(lock_set *ls, void *ctx)
{
    req *r = ctx;
    r->aborts++;
    lock_set_cancel_wait(ls);
}

static void test_deadlock_undoable_victims_by_age(void **state)
{
    req s1, s2;
    /* Both written, both undoable: the younger (S2, the requester) gives way. */
    make_two_cycle(&s1, &s2);
    lock_set_set_age(s1.ls, 1);
    lock_set_set_age(s2.ls, 2);
    for (req *r = &s1; r; r = r == &s1 ? &s2 : NULL) {
        lock_set_set_written(r->ls, 1);
        lock_set_set_undoable(r->ls, 1);
    }
    assert_int_equal(ext(&s2, 0, "A"), LOCK_DEADLOCK);
    assert_int_equal(s1.aborts, 0);
    rel(&s2);
    run_loop();
    assert_int_equal(s1.calls, 1);
    rel(&s1);

    /* The requester is the older: the other one gives way, keeping A while
     * it undoes; the requester waits for A, not forever. */
    make_two_cycle(&s1, &s2);
    lock_set_mark_script(s1.ls, undoing_abort_cb);
    lock_set_set_age(s1.ls, 5);
    lock_set_set_age(s2.ls, 3);
    lock_set_set_written(s1.ls, 1);
    lock_set_set_undoable(s1.ls, 1);
    lock_set_set_written(s2.ls, 1); /* S2 cannot undo: it could not give way anyway */
    assert_int_equal(ext(&s2, 0, "A"), LOCK_WAITING);
    assert_int_equal(s1.aborts, 1);
    run_loop();
    assert_true(holds(&s1, 0, "A"));
    assert_false(holds(&s1, 0, "B"));
    assert_int_equal(s1.calls, 0); /* its wait for B is gone */
    assert_int_equal(s2.calls, 0);
    rel(&s1); /* undone: lets go */
    run_loop();
    assert_int_equal(s2.calls, 1);
    assert_true(holds(&s2, 0, "A") && holds(&s2, 0, "B"));
    rel(&s2);

    /* Written without a way to undo: not a victim, as before. */
    make_two_cycle(&s1, &s2);
    lock_set_set_age(s1.ls, 9);
    lock_set_set_written(s1.ls, 1);
    lock_set_set_written(s2.ls, 1);
    lock_set_set_undoable(s2.ls, 0);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_DEADLOCK);
    assert_int_equal(s1.aborts, 0);
    rel(&s2);
    run_loop();
    rel(&s1);
}

/* S1 holds A waits B, S2 holds B waits C, S3 holds C asks for A. */
static void make_three_cycle(req *s)
{
    const char *ks[3] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) assert_int_equal(acq(&s[i], i + 1, LOCK_SCRIPT_EXCL, 0, KEYS(ks[i])), LOCK_GRANTED);
    assert_int_equal(ext(&s[0], 0, "B"), LOCK_WAITING);
    assert_int_equal(ext(&s[1], 0, "C"), LOCK_WAITING);
}

static void test_deadlock_three(void **state)
{
    req s[3];
    /* Requester unwritten: it gives up. */
    make_three_cycle(s);
    assert_int_equal(ext(&s[2], 0, "A"), LOCK_DEADLOCK);
    assert_int_equal(s[0].aborts + s[1].aborts, 0);
    rel(&s[2]);
    run_loop();
    assert_int_equal(s[1].calls, 1);
    rel(&s[1]);
    run_loop();
    assert_int_equal(s[0].calls, 1);
    rel(&s[0]);

    /* Requester and S1 written: S2, the one that has not, is aborted. */
    make_three_cycle(s);
    lock_set_set_written(s[2].ls, 1);
    lock_set_set_written(s[0].ls, 1);
    assert_int_equal(ext(&s[2], 0, "A"), LOCK_WAITING); /* S1 now gets B and holds A */
    assert_int_equal(s[1].aborts, 1);
    assert_int_equal(s[0].aborts, 0);
    run_loop();
    assert_int_equal(s[0].calls, 1);
    assert_int_equal(s[1].calls, 0);
    assert_int_equal(s[2].calls, 0);
    rel(&s[0]);
    run_loop();
    assert_int_equal(s[2].calls, 1);
    assert_true(holds(&s[2], 0, "A"));
    rel(&s[1]);
    rel(&s[2]);

    /* Everyone written: the requester fails. */
    make_three_cycle(s);
    for (int i = 0; i < 3; i++) lock_set_set_written(s[i].ls, 1);
    assert_int_equal(ext(&s[2], 0, "A"), LOCK_DEADLOCK);
    for (int i = 0; i < 3; i++) assert_int_equal(s[i].aborts, 0);
    for (int i = 2; i >= 0; i--) {
        rel(&s[i]);
        run_loop();
    }
}

/* Waits that form a chain but no cycle are not deadlocks. */
static void test_no_false_deadlock(void **state)
{
    req p, s1, s2, s3;
    assert_int_equal(acq(&p, 1, LOCK_PLAIN_WRITE, 0, KEYS("B")), LOCK_GRANTED);
    assert_int_equal(acq(&s1, 2, LOCK_SCRIPT_EXCL, 0, KEYS("A")), LOCK_GRANTED);
    assert_int_equal(acq(&s2, 3, LOCK_SCRIPT_EXCL, 0, KEYS("C")), LOCK_GRANTED);
    assert_int_equal(acq(&s3, 4, LOCK_SCRIPT_RO, 0, KEYS("D")), LOCK_GRANTED);
    assert_int_equal(ext(&s1, 0, "B"), LOCK_WAITING);
    assert_int_equal(ext(&s2, 0, "A"), LOCK_WAITING);
    /* s3 reads B too: behind s1's wait, which does not wait for s3. */
    assert_int_equal(ext(&s3, 0, "B"), LOCK_WAITING);
    rel(&p);
    run_loop();
    assert_int_equal(s1.calls, 1);
    assert_int_equal(s3.calls, 0);
    rel(&s1);
    run_loop();
    assert_int_equal(s2.calls, 1);
    assert_int_equal(s3.calls, 1);
    rel(&s3);
    rel(&s2);
    run_loop();
    assert_int_equal(s1.aborts + s2.aborts + s3.aborts, 0);
}

static void test_release_all_reusable(void **state)
{
    req a, b;
    assert_int_equal(acq(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k", "l")), LOCK_GRANTED);
    assert_int_equal(acq(&b, 2, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_WAITING);
    lock_set_release_all(a.ls);
    assert_int_equal(lock_set_unit_count(a.ls), 0);
    assert_false(holds(&a, 0, "k"));
    run_loop();
    assert_int_equal(b.calls, 1);
    lock_stats st;
    stats(&st);
    assert_int_equal(st.sets_holding, 1);
    for (int round = 0; round < 3; round++) {
        lock_set_add_key(a.ls, 0, "k", 1);
        lock_set_add_keyspace(a.ls);
        assert_int_equal(lock_set_acquire(a.ls, 0), LOCK_WAITING);
        lock_set_release_all(a.ls); /* cancel */
    }
    lock_set_add_key(a.ls, 0, "k", 1);
    assert_int_equal(lock_set_acquire(a.ls, 0), LOCK_WAITING);
    rel(&b);
    run_loop();
    assert_int_equal(a.calls, 1); /* once, for the last wait only */
    rel(&a);
}

/* ---- randomized stress -------------------------------------------------- */

/* Keys with their unit per db, worked out by hand from the hash tag rules. */
static const struct {
    const char *key;
    int unit;
} skeys[] = {
    {"{u0}a", 0}, {"{u0}b", 0}, {"u0", 0}, {"x{u0}", 0}, {"{}x", 1}, {"x{}", 2},
    {"k1", 3},    {"a{k1}{c}", 3}, {"k2", 4}, {"{k2}", 4}, {"k3", 5}, {"k4", 6},
};
#define NSKEYS ((int)(sizeof(skeys) / sizeof(skeys[0])))
#define NUNITS 7
#define NDB 2
#define MAXSETS 48

enum { S_FREE, S_WAITING, S_GRANTED, S_ABORTED };

typedef struct sset {
    lock_set *ls;
    int state;
    int mode;
    int full; /* whole keyspace */
    unsigned long seq;
    int busy, written;
    int pending_extend, ext_db, ext_unit;
    unsigned char decl[NDB][NUNITS]; /* declared units */
    unsigned char held[NDB][NUNITS]; /* declared or extended units it holds */
    const char *kname[NDB][NUNITS];  /* a key of each declared unit */
} sset;

static sset ss[MAXSETS];
static unsigned long seq_counter;
static unsigned long long rng_state;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static void stress_granted(lock_set *ls, void *ctx)
{
    sset *s = ctx;
    assert_true(in_loop);
    assert_ptr_equal(s->ls, ls);
    if (s->pending_extend) {
        assert_int_equal(s->state, S_GRANTED);
        s->pending_extend = 0;
        s->held[s->ext_db][s->ext_unit] = 1;
        return;
    }
    assert_int_equal(s->state, S_WAITING);
    s->state = S_GRANTED;
    memcpy(s->held, s->decl, sizeof(s->held));
}

static void stress_abort(lock_set *ls, void *ctx)
{
    sset *s = ctx;
    assert_ptr_equal(s->ls, ls);
    assert_int_equal(s->state, S_GRANTED);
    assert_false(s->written);
    lock_set_release_all(ls);
    s->state = S_ABORTED;
    s->pending_extend = 0;
    s->busy = 0;
    memset(s->held, 0, sizeof(s->held));
}

static int sets_conflict(const sset *a, const sset *b, int use_held_a, int use_held_b)
{
    if (expect_compat(a->mode, b->mode)) return 0;
    if (a->full || b->full) return 1; /* full vs intent or full: by mode */
    for (int d = 0; d < NDB; d++)
        for (int u = 0; u < NUNITS; u++) {
            int ia = use_held_a ? a->held[d][u] : a->decl[d][u];
            int ib = use_held_b ? b->held[d][u] : b->decl[d][u];
            if (ia && ib) return 1;
        }
    return 0;
}

static void check_counts(const unsigned *x, const unsigned *y, const char *what)
{
    for (int m1 = 0; m1 < LOCK_MODES; m1++)
        for (int m2 = 0; m2 < LOCK_MODES; m2++) {
            if (!x[m1] || !y[m2] || expect_compat(m1, m2)) continue;
            if (x == y && m1 == m2 && x[m1] < 2) continue;
            fail_msg("incompatible holders on %s: modes %d and %d", what, m1, m2);
        }
}

/* No two sets known to hold may be incompatible on a unit they share (or
 * through the keyspace), and what the table says a set holds matches. */
static void check_invariants(void)
{
    unsigned cnt[NDB][NUNITS][LOCK_MODES], full[LOCK_MODES], intent[LOCK_MODES];
    memset(cnt, 0, sizeof(cnt));
    memset(full, 0, sizeof(full));
    memset(intent, 0, sizeof(intent));
    int acquired = 0;
    for (int i = 0; i < MAXSETS; i++) {
        sset *a = &ss[i];
        if (a->state == S_WAITING || a->state == S_GRANTED) acquired++;
        if (a->state != S_GRANTED) continue;
        if (a->full) full[a->mode]++;
        else intent[a->mode]++;
        for (int d = 0; d < NDB; d++)
            for (int u = 0; u < NUNITS; u++)
                if (a->held[d][u]) {
                    cnt[d][u][a->mode]++;
                    assert_true(lock_set_holds(a->ls, d, a->kname[d][u], strlen(a->kname[d][u])));
                }
    }
    for (int d = 0; d < NDB; d++)
        for (int u = 0; u < NUNITS; u++) check_counts(cnt[d][u], cnt[d][u], "a key unit");
    check_counts(full, full, "the keyspace");
    check_counts(full, intent, "the keyspace (intent)");
    lock_stats st;
    locks_get_stats(&st);
    assert_int_equal(st.sets_holding + st.sets_waiting, acquired);
}

/* Is o still queued in the table? A set granted but not yet told counts as
 * granted: keyed sets say so through lock_set_holds; for a full-keyspace set
 * only the model can tell, which is exact right after a loop turn. */
static int still_waiting(const sset *o, int model_exact)
{
    if (o->state != S_WAITING) return 0;
    for (int d = 0; d < NDB; d++)
        for (int u = 0; u < NUNITS; u++)
            if (o->decl[d][u]) return !lock_set_holds(o->ls, d, o->kname[d][u], strlen(o->kname[d][u]));
    return model_exact;
}

/* Strict FIFO: when s is granted, no earlier request it would have queued
 * behind may still be waiting. */
static void check_fifo_on_grant(int idx, int model_exact)
{
    sset *s = &ss[idx];
    for (int j = 0; j < MAXSETS; j++) {
        sset *o = &ss[j];
        if (j == idx || o->seq > s->seq || !still_waiting(o, model_exact)) continue;
        if (s->full || o->full) {
            if (s->full && o->full) fail_msg("full-keyspace %d granted before earlier %d", idx, j);
            if (!expect_compat(s->mode, o->mode)) fail_msg("%d granted before earlier incompatible %d", idx, j);
            continue;
        }
        for (int d = 0; d < NDB; d++)
            for (int u = 0; u < NUNITS; u++)
                if (s->decl[d][u] && o->decl[d][u]) fail_msg("%d granted before earlier %d on a shared unit", idx, j);
    }
}

static void stress_run_loop(void)
{
    int before[MAXSETS];
    for (int i = 0; i < MAXSETS; i++) before[i] = ss[i].state;
    run_loop();
    for (int i = 0; i < MAXSETS; i++)
        if (before[i] == S_WAITING && ss[i].state == S_GRANTED) {
            check_fifo_on_grant(i, 1);
        }
}

/* A request only waits for a reason: an earlier one it conflicts with or is
 * queued behind. Keyed requests never wait for each other through the
 * keyspace unit alone. */
static void check_wait_justified(const sset *s)
{
    for (int j = 0; j < MAXSETS; j++) {
        const sset *o = &ss[j];
        if (o == s || (o->state != S_WAITING && o->state != S_GRANTED)) continue;
        int compatible = expect_compat(s->mode, o->mode);
        if (s->full) {
            if (o->state == S_WAITING || !compatible) return;
            continue;
        }
        if (o->full) {
            if (!compatible) return;
            continue;
        }
        for (int d = 0; d < NDB; d++)
            for (int u = 0; u < NUNITS; u++) {
                if (!s->decl[d][u]) continue;
                if (o->state == S_WAITING && o->decl[d][u]) return;
                if (o->state == S_GRANTED && (o->held[d][u] || (o->pending_extend && o->ext_db == d && o->ext_unit == u)))
                    if (!compatible || o->pending_extend) return;
            }
    }
    fail_msg("set %d (mode %d%s) waits with nothing to wait for", (int)(s - ss), s->mode, s->full ? ", keyspace" : "");
}

static void stress_acquire(sset *s)
{
    int refuse = rnd(3) == 0;
    int busy_conflict = 0;
    for (int j = 0; j < MAXSETS; j++) {
        sset h = ss[j];
        if (&ss[j] == s || h.state != S_GRANTED || !h.busy) continue;
        /* An undeclared key may be granted and not yet told. */
        if (h.pending_extend &&
            lock_set_holds(h.ls, h.ext_db, h.kname[h.ext_db][h.ext_unit], strlen(h.kname[h.ext_db][h.ext_unit])))
            h.held[h.ext_db][h.ext_unit] = 1;
        if (sets_conflict(&h, s, 1, 0)) busy_conflict = 1;
    }
    s->seq = ++seq_counter;
    int rc = lock_set_acquire(s->ls, refuse);
    if (refuse && busy_conflict) {
        assert_int_equal(rc, LOCK_BUSY);
        lock_set_release(s->ls);
        memset(s, 0, sizeof(*s));
        return;
    }
    if (rc != LOCK_GRANTED && rc != LOCK_WAITING) {
        for (int j = 0; j < MAXSETS; j++)
            if (ss[j].state) fprintf(stderr, "set %d state %d mode %d full %d busy %d pend %d\n", j, ss[j].state, ss[j].mode, ss[j].full, ss[j].busy, ss[j].pending_extend);
        fail_msg("set %d mode %d full %d: rc %d", (int)(s - ss), s->mode, s->full, rc);
    }
    if (rc == LOCK_GRANTED) {
        s->state = S_GRANTED;
        check_fifo_on_grant((int)(s - ss), 0);
        memcpy(s->held, s->decl, sizeof(s->held));
    } else {
        s->state = S_WAITING;
        check_wait_justified(s);
    }
}

static void stress_new(sset *s)
{
    memset(s, 0, sizeof(*s));
    s->mode = all_modes[rnd(4)];
    s->ls = lock_set_new(s->mode, stress_granted, s);
    if (s->mode == LOCK_SCRIPT_RO || s->mode == LOCK_SCRIPT_EXCL) lock_set_mark_script(s->ls, stress_abort);
    if (rnd(12) == 0) {
        s->full = 1;
        lock_set_add_keyspace(s->ls);
    } else {
        int n = 1 + (int)rnd(4);
        int db = (int)rnd(NDB);
        for (int i = 0; i < n; i++) {
            int k = (int)rnd(NSKEYS);
            int d = rnd(8) == 0 ? (int)rnd(NDB) : db;
            lock_set_add_key(s->ls, d, skeys[k].key, strlen(skeys[k].key));
            s->decl[d][skeys[k].unit] = 1;
            s->kname[d][skeys[k].unit] = skeys[k].key;
        }
    }
    stress_acquire(s);
}

static void stress_release(sset *s)
{
    lock_set_release(s->ls);
    memset(s, 0, sizeof(*s));
}

static void stress_extend(sset *s)
{
    if (s->full || s->mode < LOCK_SCRIPT_RO || s->pending_extend) return;
    int k = (int)rnd(NSKEYS), d = (int)rnd(NDB), u = skeys[k].unit;
    int rc = lock_set_extend(s->ls, d, skeys[k].key, strlen(skeys[k].key));
    if (s->state != S_GRANTED) {
        /* This script was aborted from inside its own extend? Never: only others are. */
        fail_msg("extending set changed state to %d", s->state);
    }
    if (!s->kname[d][u]) s->kname[d][u] = skeys[k].key;
    if (rc == LOCK_GRANTED) {
        s->held[d][u] = 1;
    } else if (rc == LOCK_WAITING) {
        assert_false(s->held[d][u]);
        s->pending_extend = 1;
        s->ext_db = d;
        s->ext_unit = u;
    } else {
        assert_int_equal(rc, LOCK_DEADLOCK);
        /* The script ends with an error or is re-run: either way it lets go. */
        stress_release(s);
    }
}

static void stress_round(unsigned seed, int steps)
{
    rng_state = 0x9E3779B97F4A7C15ULL ^ ((unsigned long long)seed * 2654435761ULL + 1);
    memset(ss, 0, sizeof(ss));
    seq_counter = 0;
    for (int step = 0; step < steps; step++) {
        unsigned op = rnd(100);
        sset *s = &ss[rnd(MAXSETS)];
        if (op < 35) {
            if (s->state == S_FREE) stress_new(s);
        } else if (op < 60) {
            if (s->state == S_GRANTED) stress_release(s);
        } else if (op < 64) {
            if (s->state == S_WAITING) stress_release(s); /* cancel */
        } else if (op < 74) {
            if (s->state == S_GRANTED) stress_extend(s);
        } else if (op < 78) {
            if (s->state == S_GRANTED && s->mode >= LOCK_SCRIPT_RO) lock_set_set_busy(s->ls, s->busy = !s->busy);
        } else if (op < 82) {
            if (s->state == S_GRANTED && s->mode >= LOCK_SCRIPT_RO) lock_set_set_written(s->ls, s->written = 1);
        } else if (op < 86) {
            if (s->state == S_ABORTED) {
                /* Re-run with its declared keys. */
                for (int d = 0; d < NDB; d++)
                    for (int u = 0; u < NUNITS; u++)
                        if (s->decl[d][u]) lock_set_add_key(s->ls, d, s->kname[d][u], strlen(s->kname[d][u]));
                s->written = 0;
                lock_set_set_written(s->ls, 0);
                lock_set_set_busy(s->ls, 0);
                stress_acquire(s);
            }
        } else {
            stress_run_loop();
        }
        check_invariants();
    }
    /* Drain: everything still queued must be granted in the end. */
    for (int i = 0; i < MAXSETS; i++)
        if (ss[i].state == S_GRANTED && ss[i].busy) lock_set_set_busy(ss[i].ls, ss[i].busy = 0);
    for (int guard = 0;; guard++) {
        assert_true(guard < 100000);
        stress_run_loop();
        check_invariants();
        int live = 0, released = 0;
        for (int i = 0; i < MAXSETS; i++) {
            sset *s = &ss[i];
            if (s->state == S_FREE) continue;
            live++;
            if (s->state == S_ABORTED || (s->state == S_GRANTED && (rnd(2) || !s->pending_extend))) {
                stress_release(s);
                released++;
                check_invariants();
            }
        }
        if (!live) break;
        if (!released) {
            /* Only waiters left and nothing granted: after a loop turn that
             * must have changed, else they are stuck. */
            stress_run_loop();
            int moved = 0;
            for (int i = 0; i < MAXSETS; i++) moved |= ss[i].state == S_GRANTED;
            if (!moved) fail_msg("seed %u: waiters stuck with nothing held", seed);
        }
    }
    lock_stats st;
    locks_get_stats(&st);
    assert_int_equal(st.units, 1);
    assert_int_equal(st.sets_holding, 0);
    assert_int_equal(st.sets_waiting, 0);
}

static void test_stress(void **state)
{
    for (unsigned seed = 1; seed <= 150; seed++) stress_round(seed, 3000);
}

/* Plain requests sent without a set (locks_plain_free) hold back script
 * and transaction sets until every one of them is answered; plain sets are
 * not held back; a set cancelled while held back is simply gone. */
static void test_unlocked_plain_drain(void **state)
{
    (void)state;
    req a, b, c, p;
    lock_stats st;
    assert_true(locks_plain_free());
    locks_unlocked_begin();
    locks_unlocked_begin();
    assert_int_equal(acq(&a, 1, LOCK_SCRIPT_EXCL, 0, KEYS("k")), LOCK_WAITING);
    assert_false(locks_plain_free());
    assert_int_equal(acq(&b, 2, LOCK_SCRIPT_RO, 0, KEYS("other")), LOCK_WAITING);
    assert_int_equal(acq(&c, 3, LOCK_SCRIPT_EXCL, 0, KEYS("x")), LOCK_WAITING);
    assert_int_equal(acq(&p, 4, LOCK_PLAIN_WRITE, 0, KEYS("k")), LOCK_GRANTED); /* plain: never held back */
    stats(&st);
    assert_int_equal(st.sets_waiting, 3);
    rel(&c); /* cancelled while held back */
    reset_order();
    locks_unlocked_end(1);
    run_loop();
    assert_int_equal(a.calls + b.calls, 0); /* one request still out */
    locks_unlocked_end(0);
    run_loop();
    /* in arrival order; the exclusive one then waits for the plain holder */
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_true(holds(&b, 0, "other"));
    rel(&p);
    run_loop();
    assert_int_equal(a.calls, 1);
    assert_true(holds(&a, 0, "k"));
    assert_int_equal(c.calls, 0);
    rel(&a);
    rel(&b);
    assert_true(locks_plain_free());
    stats(&st);
    assert_int_equal(st.sets_waiting, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unit_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unit_sharing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyspace_full_vs_keyed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyspace_waiting_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyspace_intents_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_before_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_db_separation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys_and_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extend_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extend_ahead_of_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_requester_unwritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_abort_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_abort_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_both_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_undoable_victims_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_three, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_false_deadlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_all_reusable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlocked_plain_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
