/* The undo journal of a script run (see journal.h). Images are read and put
 * back by the backend (backends/ knows each store's form); this file keeps
 * them per run and drives the undo. */
#include "proxy/core/journal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backends/backend.h"
#include "fleet/fleet.h"
#include "proxy/core/server.h"
#include "util/log.h"
#include "util/clock.h"

enum { ENTRY_PENDING = 0, ENTRY_READY, ENTRY_FAILED, ENTRY_VOID };

/* An entry is a key's image (the key as it was before the write), or, for a
 * push onto a list that has no image yet, the pops that take the pushed
 * elements off again: a list of any length costs nothing to journal. Undo
 * runs the entries in reverse order, so an image taken after some pushes
 * puts the key back as it was then, and the pops before it finish the job. */
typedef struct journal_entry {
    journal *j;
    int db;
    int state;
    unsigned pops;  /* 0: an image; else how many elements to pop */
    int pop_left;   /* pop them with LPOP (else RPOP) */
    char *key;
    size_t len;
    backend_image *img;
} journal_entry;

struct journal {
    journal_entry **e;
    size_t n, cap;
    unsigned pending;
    unsigned broken : 1;
    void (*settled)(void *ctx);
    void *ctx;
    size_t bytes;
    /* undo */
    struct event *ev;
    backend *b;
    unsigned long long session;
    long long deadline_ms;
    unsigned undo_pending;
    unsigned undo_failed : 1, undoing : 1, finish_next : 1, popped : 1;
    journal_done_fn *done;
    void *done_ctx;
    /* records in the store (a fleet's) */
    unsigned durable : 1, record_failed : 1, committing : 1, big_record : 1;
    fleet_run run;
    size_t recorded;     /* entries up to here have their records (or none is due) */
    int nrecords;        /* records written: 0 .. nrecords-1 */
    unsigned record_pending;
    journal_done_fn *record_done;
    void *record_ctx;
    struct event *commit_ev;
    long long commit_deadline_ms;
};

static size_t bytes_now;

size_t journal_bytes_now(void) { return bytes_now; }

static void add_bytes(journal *j, size_t n)
{
    j->bytes += n;
    bytes_now += n;
}

journal *journal_new(void (*settled)(void *ctx), void *ctx)
{
    journal *j = calloc(1, sizeof(*j));
    if (!j) abort();
    j->settled = settled;
    j->ctx = ctx;
    return j;
}

void journal_free(journal *j)
{
    if (!j) return;
    for (size_t i = 0; i < j->n; i++) {
        backend_image_free(j->e[i]->img);
        free(j->e[i]->key);
        free(j->e[i]);
    }
    free(j->e);
    if (j->ev) event_free(j->ev);
    if (j->commit_ev) event_free(j->commit_ev);
    bytes_now -= j->bytes;
    free(j);
}

int journal_has(const journal *j, int db, const char *key, size_t len)
{
    for (size_t i = 0; i < j->n; i++) {
        const journal_entry *e = j->e[i];
        if (!e->pops && e->db == db && e->len == len && !memcmp(e->key, key, len)) return 1;
    }
    return 0;
}

static void capture_cb(void *ctx, backend_image *img, const char *error)
{
    journal_entry *e = ctx;
    journal *j = e->j;
    (void)error;
    j->pending--;
    if (img) {
        e->img = img;
        e->state = ENTRY_READY;
        add_bytes(j, img->len);
    } else {
        e->state = ENTRY_FAILED;
        j->broken = 1;
    }
    if (j->settled) j->settled(j->ctx);
}

static journal_entry *entry_add(journal *j, int db, const char *key, size_t len)
{
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 8;
        j->e = realloc(j->e, sizeof(*j->e) * j->cap);
        if (!j->e) abort();
    }
    journal_entry *e = calloc(1, sizeof(*e));
    if (!e) abort();
    e->j = j;
    e->db = db;
    e->len = len;
    e->key = malloc(len + 1);
    if (!e->key) abort();
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    j->e[j->n++] = e;
    return e;
}

int journal_pushed(journal *j, int db, const char *key, size_t len, int pushed_left, unsigned count)
{
    journal_entry *e = entry_add(j, db, key, len);
    e->pops = count ? count : 1;
    e->pop_left = pushed_left;
    add_bytes(j, sizeof(*e) + len);
    return (int)(j->n - 1);
}

void journal_pushed_result(journal *j, int idx, int applied)
{
    journal_entry *e = j->e[idx];
    if (applied > 0) {
        e->state = ENTRY_READY;
    } else if (applied == 0) {
        e->state = ENTRY_VOID;
    } else {
        e->state = ENTRY_FAILED;
        j->broken = 1;
    }
}

int journal_capture(journal *j, backend *b, int conn, int db, unsigned long long session, const char *key,
                    size_t len)
{
    /* The image arrives with the store's reply, never during the send. */
    journal_entry *e = entry_add(j, db, key, len);
    if (backend_capture(b, conn, db, session, key, len, capture_cb, e) != 0) {
        e->state = ENTRY_FAILED;
        j->broken = 1;
        return -1;
    }
    j->pending++;
    add_bytes(j, sizeof(*e) + len);
    return 0;
}

void journal_break(journal *j) { j->broken = 1; }
int journal_complete(const journal *j) { return !j->broken; }
int journal_empty(const journal *j) { return j->n == 0; }
unsigned journal_pending(const journal *j) { return j->pending; }
size_t journal_count(const journal *j) { return j->n; }

const char *journal_key(const journal *j, size_t i, size_t *len)
{
    *len = j->e[i]->len;
    return j->e[i]->key;
}

/* ---- undo ----------------------------------------------------------------------- */

#define UNDO_RETRY_MS 100

static void undo_step(journal *j);

static void undo_finish(journal *j, int ok)
{
    j->undoing = 0;
    j->finish_next = 0;
    journal_done_fn *done = j->done;
    j->done = NULL;
    if (done) done(j->done_ctx, ok);
}

static void undo_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    journal *j = arg;
    if (j->finish_next) undo_finish(j, !j->broken);
    else undo_step(j);
}

static void undo_later(journal *j, long long ms)
{
    if (clock_ms() + ms > j->deadline_ms) {
        undo_finish(j, 0);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(j->ev, &tv);
}

static void restore_cb(void *ctx, const backend_reply *r)
{
    journal *j = ctx;
    j->undo_pending--;
    if (r->error || (r->parsed && r->parsed->type == REDIS_REPLY_ERROR)) j->undo_failed = 1;
    if (j->undo_pending) return;
    /* Restores put a key back whole, so sending all of them again after a
     * failure (the store went away meanwhile) is safe; pops are not: with
     * some sent, a failure means the undo cannot be known to be complete. */
    if (j->undo_failed && j->popped) undo_finish(j, 0);
    else if (j->undo_failed) undo_later(j, UNDO_RETRY_MS);
    else undo_finish(j, !j->broken);
}

static void undo_step(journal *j)
{
    backend *b = j->b;
    int conn = backend_pick(b, (unsigned)(uintptr_t)j);
    if (conn < 0) {
        undo_later(j, UNDO_RETRY_MS);
        return;
    }
    j->undo_failed = 0;
    for (size_t i = j->n; i-- > 0;) {
        journal_entry *e = j->e[i];
        if (e->state == ENTRY_PENDING) j->broken = 1; /* never answered: cannot be known */
        if (e->state != ENTRY_READY) continue;
        if (e->pops) {
            char *v[2] = {e->pop_left ? "LPOP" : "RPOP", e->key};
            size_t l[2] = {4, e->len};
            for (unsigned k = 0; k < e->pops && !j->undo_failed; k++) {
                if (b->ops->send(b, conn, e->db, j->session, 2, v, l, BACKEND_PARSED, restore_cb, j) != 0) {
                    j->undo_failed = 1;
                    break;
                }
                j->undo_pending++;
                j->popped = 1;
            }
            if (j->undo_failed) break;
            continue;
        }
        if (backend_restore(b, conn, e->db, j->session, e->key, e->len, e->img, restore_cb, j) != 0) {
            j->undo_failed = 1;
            break;
        }
        j->undo_pending++;
    }
    if (j->undo_pending) return; /* restore_cb goes on */
    if (j->undo_failed) {
        undo_later(j, UNDO_RETRY_MS);
        return;
    }
    /* Nothing to put back: finish from the loop all the same, never from
     * inside journal_undo. */
    j->finish_next = 1;
    static const struct timeval now = {0, 0};
    evtimer_add(j->ev, &now);
}

void journal_undo(journal *j, backend *b, unsigned long long session, long long wait_ms, journal_done_fn *done,
                  void *ctx)
{
    j->b = b;
    j->session = session;
    j->done = done;
    j->done_ctx = ctx;
    j->undoing = 1;
    j->deadline_ms = clock_ms() + wait_ms;
    if (!j->ev) j->ev = evtimer_new(server.base, undo_ev_cb, j);
    if (!j->ev) abort();
    undo_step(j);
}

/* ---- records in the store (a fleet) ------------------------------------------------ */

/* Longer than any run, short enough not to pile up should a member die. */
#define RECORD_TTL "86400000"

void journal_set_durable(journal *j, const fleet_run *run)
{
    j->durable = 1;
    j->run = *run;
}

int journal_durable(const journal *j) { return j->durable; }
int journal_recorded(const journal *j) { return j->nrecords > 0; }
int journal_unrecorded(const journal *j) { return j->durable && j->recorded < j->n; }

static void record_cb(void *ctx, const backend_reply *r)
{
    journal *j = ctx;
    j->record_pending--;
    if (r->error || !r->parsed || r->parsed->type != REDIS_REPLY_STATUS) j->record_failed = 1;
    if (j->record_pending) return;
    journal_done_fn *done = j->record_done;
    j->record_done = NULL;
    if (done) done(j->record_ctx, !j->record_failed);
}

/* Records small enough that a store would not refuse them for their size
 * (memcached's items): only those may be overtaken by the write they cover. */
#define ORDERED_RECORD_MAX (256 * 1024)

int journal_records_ordered(const journal *j) { return j->durable && fleet_store()->one_store && !j->big_record; }

int journal_persist(journal *j, int conn, unsigned long long session, journal_done_fn *done, void *ctx)
{
    if (!j->durable) return 0;
    backend *b = fleet_store();
    if (conn < 0) conn = backend_pick(b, (unsigned)(uintptr_t)j);
    j->big_record = 0;
    j->record_failed = 0;
    for (; j->recorded < j->n; j->recorded++) {
        journal_entry *e = j->e[j->recorded];
        if (e->state != ENTRY_READY || e->pops) continue; /* the journal is broken, or a pop: nothing to keep */
        size_t vlen, klen;
        char key[400];
        klen = fleet_run_record_key(&j->run, j->nrecords, key, sizeof(key));
        char *val = backend_record_encode(j->run.token, e->db, e->key, e->len, e->img, &vlen);
        char *v[5] = {"SET", key, val, "PX", RECORD_TTL};
        size_t l[5] = {3, klen, vlen, 2, strlen(RECORD_TTL)};
        if (vlen > ORDERED_RECORD_MAX) j->big_record = 1;
        int rc = conn < 0 ? -1 : b->ops->send(b, conn, 0, session, 5, v, l, BACKEND_PARSED, record_cb, j);
        free(val);
        if (rc != 0) {
            j->record_failed = 1;
            break;
        }
        j->nrecords++;
        j->record_pending++;
    }
    if (j->record_pending) {
        /* A record that failed to go out fails the batch when the others
         * are answered. */
        j->record_done = done;
        j->record_ctx = ctx;
        return 1;
    }
    return j->record_failed ? -1 : 0;
}

static void commit_step(journal *j);

static void commit_finish(journal *j, int ok)
{
    j->committing = 0;
    j->nrecords = 0;
    journal_done_fn *done = j->done;
    j->done = NULL;
    if (done) done(j->done_ctx, ok);
}

static void commit_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    commit_step(arg);
}

static void commit_later(journal *j)
{
    if (clock_ms() + UNDO_RETRY_MS > j->commit_deadline_ms) {
        log_warning("fleet: a script's journal records could not be deleted; the run stays in the store");
        commit_finish(j, 0);
        return;
    }
    struct timeval tv = {0, UNDO_RETRY_MS * 1000};
    evtimer_add(j->commit_ev, &tv);
}

static void head_deleted_cb(void *ctx, const backend_reply *r)
{
    journal *j = ctx;
    if (r->error || !r->parsed || r->parsed->type != REDIS_REPLY_INTEGER) {
        commit_later(j);
        return;
    }
    /* Committed. The other records stay until the place's next run writes
     * over them or they expire: a recovery stops at the first record of
     * another run (its token), and a delete sent now could overtake, on
     * another connection, the next run's write of the same record. */
    commit_finish(j, 1);
}

static void commit_step(journal *j)
{
    backend *b = fleet_store();
    int conn = backend_pick(b, (unsigned)(uintptr_t)j);
    char key[400];
    size_t kl = fleet_run_record_key(&j->run, 0, key, sizeof(key));
    char *v[2] = {"DEL", key};
    size_t l[2] = {3, kl};
    if (conn < 0 || backend_send(b, conn, 0, 2, v, l, BACKEND_PARSED, head_deleted_cb, j) != 0) commit_later(j);
}

int journal_commit(journal *j, long long wait_ms, journal_done_fn *done, void *ctx)
{
    if (!j->durable || !j->nrecords) return 0;
    j->done = done;
    j->done_ctx = ctx;
    j->committing = 1;
    j->commit_deadline_ms = clock_ms() + wait_ms;
    if (!j->commit_ev) j->commit_ev = evtimer_new(server.base, commit_ev_cb, j);
    if (!j->commit_ev) abort();
    commit_step(j);
    return 1;
}
