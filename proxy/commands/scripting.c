/* EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT: each script call takes the
 * lock units of its keys, runs in the engine (lua/) on its own fiber, and
 * every redis.call it makes goes to the store while the proxy serves
 * everyone else. */
#include "proxy/core/acl.h"
#include "proxy/core/command_stats.h"
#include "proxy/commands/scripting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "fleet/fleet.h"
#include "lua/script_engine.h"
#include "proxy/core/config.h"
#include "proxy/core/journal.h"
#include "proxy/core/locks.h"
#include "util/log.h"
#include "proxy/commands/pubsub.h"
#include "proxy/core/reply.h"
#include "proxy/core/resp3.h"
#include "proxy/core/tracking.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/monitor.h"
#include "proxy/core/server.h"
#include "proxy/core/slowlog.h"
#include "proxy/core/store_refusal.h"
#include "util/strconv.h"
#include "proxy/commands/acl_command.h"
#include "proxy/commands/emulation.h"
#include "proxy/commands/key_presteps.h"
#include "proxy/commands/script_debug.h"
#include "util/clock.h"

/* Host bits kept with each script and function. */
#define SCRIPT_BIT_RAN 1u        /* a run finished touching only declared keys */
#define SCRIPT_BIT_UNDECLARED 2u /* a run touched a key not in KEYS */
/* lua-script-pipelining: scripts one client may have running at once (each
 * holds a fiber and its arguments); past it the client waits as usual. */
#define MAX_PIPELINED_PER_CLIENT 64
/* Past this many at once, more concurrency only spreads the work over more
 * fiber stacks and Lua threads than the caches hold (measured: 800 at once ran
 * slower than one per client); further scripts run the ordinary way. */
#define MAX_PIPELINED_TOTAL 128

/* A kill marker that tells done() the run is to be started again. */
#define RERUN_MARKER "ERR evalproxy internal: rerun"

#define WRITTEN_KEYS_NAMED 8
#define WRITTEN_KEYS_BYTES 400

typedef struct learned_key {
    int db;
    size_t len;
    char *key;
} learned_key;

typedef struct script_call {
    client *c; /* NULL once the client is gone */
    reply_slot *slot;
    char sha[41];
    char *fname; /* FCALL: the function's name (looked up again when the run starts) */
    int numkeys, nargs;
    char **keys, **args;
    size_t *keylens, *arglens;
    int run_flags;
    int lock_mode;
    int start_db, db;
    lock_set *locks;
    script_run *run;
    /* The redis.call being checked or waiting for an undeclared key. */
    int call_argc;
    char **call_argv;
    size_t *call_argvlen;
    const command_def *call_cmd;
    const struct resp3_shape *call_shape; /* redis.setresp(3): how the store's reply becomes RESP3 */
    tracked_write *call_tracked;          /* the call's keys, whose trackers are told at its reply */
    unsigned long long call_start_us; /* when the pending redis.call went out (commandstats) */
    slowlog_args *call_slow;          /* its arguments, for SLOWLOG at its reply */
    unsigned reply_counted : 1;       /* its final error reply was counted when a command gave it */
    learned_key *learned;
    int nlearned, caplearned;
    unsigned inflight;  /* store requests not answered yet */
    unsigned depth;     /* engine calls on the stack for this call */
    unsigned scheduled; /* deferred events that will touch this call */
    unsigned started : 1, finished : 1, rerun : 1, busy : 1, written : 1;
    unsigned dirty : 1; /* ran a write command (PUBLISH is none): SCRIPT KILL refuses */
    unsigned published : 1; /* its reply waits for the proxy's subscribers (pubsub_hold_after_publish) */
    unsigned borrowed_locks : 1; /* a transaction's locks: not ours to release */
    unsigned queued : 1;         /* in the run queue: used up its time slice */
    unsigned pipelined : 1;      /* runs while its client goes on (lua-script-pipelining) */
    unsigned keeps_to_keys : 1;  /* its script's earlier runs touched only declared keys */
    unsigned undeclared : 1;     /* this run touched a key not in KEYS */
    unsigned debug : 1;          /* a Lua debugging session (SCRIPT DEBUG) */
    unsigned pooled : 1;         /* its block is CALL_BLOCK bytes: back to call_pool when freed */
    ldb_private *priv;           /* SCRIPT DEBUG YES: its private copies (it holds no locks) */
    unsigned host_bits;          /* the script's SCRIPT_BIT_* when the call was made */
    unsigned long long seq;      /* its age among calls (kept across re-runs) */
    journal *journal;            /* this run's pre-images, when it keeps a journal */
    /* In a fleet: this attempt's place for its journal records in the
     * store (place -1: none), so the fleet can undo it should this member
     * die; each first write to a key waits for its record. */
    fleet_run frun;
    unsigned record_wait : 1;    /* the pending redis.call waits for its records */
    unsigned records_ahead : 1;  /* records sent ahead of writes on one store, not all answered */
    int record_conn;             /* the connection it goes on then */
    char *commit_reply;          /* the reply that waits for the records to go */
    size_t commit_len;
    unsigned journalling : 1;    /* this run keeps one (see run_journals) */
    unsigned undo_wanted : 1;    /* undo once the store has answered everything sent */
    unsigned undo_then : 2;      /* UNDO_THEN_*: what follows the undo */
    int pushed;                  /* the pending write is a push journalled as pops: its entry + 1 */
    unsigned rollback : 1;       /* this run is undone if it fails (lua-rollback-on-error, flags=atomic) */
    unsigned store_lost : 1;     /* a redis.call got no answer: the store connection failed */
    char *final_reply;           /* the reply that waits for the undo */
    size_t final_len;
    /* Keys written so far (the first few), named when the store fails. */
    unsigned short written_at[WRITTEN_KEYS_NAMED], written_lens[WRITTEN_KEYS_NAMED];
    unsigned nwritten_keys, more_written_keys, written_used;
    char written_buf[WRITTEN_KEYS_BYTES]; /* their names (no allocation on the write path) */
    unsigned long long client_id; /* whose script (stays when the client goes) */
    scripting_done_fn *done_fn;  /* inside EXEC: where the reply goes */
    void *done_ctx;
    unsigned attempts;
    unsigned long long start_ms; /* when the run started (monotonic) */
    struct acl_user *user;       /* who ran the script: its redis.call are checked against it */
    struct script_call *prev, *next;
    struct script_call *rq_next; /* run queue order */
} script_call;

static script_engine *engine;
static int stopping; /* shutdown: store callbacks must not resume scripts */

static script_call *calls; /* every call not yet freed */

static void forget_written_keys(script_call *sc)
{
    sc->nwritten_keys = sc->more_written_keys = sc->written_used = 0;
}
static unsigned long long call_seq;
enum { UNDO_THEN_RERUN = 1, UNDO_THEN_FINISH = 2 };
/* How long an undo waits for an unreachable store before giving up. */
#define UNDO_WAIT_MS 30000
static unsigned busy_count;
static unsigned long long stat_scripts_run, stat_reruns, stat_killed, stat_deadlock_errors, stat_pipelined;
static unsigned long long stat_undone, stat_undo_failed, stat_rerun_after_undo;
static unsigned pipelined_running; /* pipelined scripts not finished, every client */

static void call_acquire(script_call *sc, int refuse_if_busy);
static void call_proceed(script_call *sc);

/* ---- lifetime ------------------------------------------------------------------- */

static void call_tracking_end(script_call *sc, int unchanged);

/* A call with its keys and arguments is one block; blocks of the usual
 * size are kept for the next calls. The struct alone is past glibc's
 * small-block sizes, and each such request would first merge every small
 * free block (malloc_consolidate): one per script run, on the hot path. */
#define CALL_BLOCK 2048
#define CALL_POOL_MAX 64
static void *call_pool[CALL_POOL_MAX];
static int call_pool_n;

static script_call *call_block_get(size_t bytes)
{
    int pooled = bytes <= CALL_BLOCK;
    script_call *sc = !pooled ? malloc(bytes) : call_pool_n ? call_pool[--call_pool_n] : malloc(CALL_BLOCK);
    if (!sc) abort();
    memset(sc, 0, sizeof(*sc));
    sc->pooled = (unsigned)pooled;
    return sc;
}

static void call_block_put(script_call *sc)
{
    if (sc->pooled && call_pool_n < CALL_POOL_MAX) call_pool[call_pool_n++] = sc;
    else free(sc);
}

static void call_maybe_free(script_call *sc)
{
    if (stopping || !sc->finished || sc->depth || sc->inflight || sc->scheduled) return;
    ldb_private_free(sc->priv);
    sc->priv = NULL;
    call_tracking_end(sc, 1);
    slowlog_args_free(sc->call_slow);
    journal_free(sc->journal);
    forget_written_keys(sc);
    free(sc->final_reply);
    free(sc->commit_reply);
    fleet_run_end(&sc->frun);
    if (sc->prev) sc->prev->next = sc->next;
    else calls = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    for (int i = 0; i < sc->nlearned; i++) free(sc->learned[i].key);
    free(sc->learned);
    free(sc->fname);
    acl_user_release(sc->user);
    call_block_put(sc); /* with its keys and arguments */
}

/* The script (or, for FCALL, the function) this call runs, looked up by
 * SHA1 or name since SCRIPT FLUSH / FUNCTION DELETE may have dropped it. */
static int call_target(const script_call *sc, const script **s, const script_function **f)
{
    *s = NULL;
    *f = NULL;
    if (sc->fname) *f = script_function_find(engine, sc->fname, strlen(sc->fname));
    else *s = script_engine_find(engine, sc->sha, 40);
    return *s || *f;
}

static void set_busy(script_call *sc, int busy)
{
    if (sc->busy == (unsigned)(busy != 0)) return;
    sc->busy = busy != 0;
    if (busy) busy_count++;
    else busy_count--;
    if (sc->locks) lock_set_set_busy(sc->locks, busy ? (sc->fname ? LOCK_BUSY_FUNCTION : LOCK_BUSY_EVAL) : 0);
}

static void call_finish(script_call *sc, const char *reply, size_t len);
static void call_release_locks(script_call *sc);

#define RECORDS_FAILED_ERROR "ERR the fleet could not keep the script's journal in the store; the command was not sent"
#define LEASE_LOST_ERROR                                                                                              \
    "ERR this fleet member lost its lease while the script ran; the fleet undoes what the script wrote"

/* The run's journal records are gone (or never were): the reply goes. */
static void records_committed(void *ctx, int ok)
{
    script_call *sc = ctx;
    (void)ok; /* could not be deleted: logged; the run's writes stay */
    sc->scheduled--;
    char *reply = sc->commit_reply;
    size_t len = sc->commit_len;
    sc->commit_reply = NULL;
    journal_free(sc->journal);
    sc->journal = NULL;
    call_finish(sc, reply, len);
    free(reply);
}

/* A run that kept records in the store: they go before its reply and its
 * locks (the reply promises the writes; the locks let others see them). A
 * member fenced meanwhile leaves them for the fleet, which undoes the run:
 * its reply is an error then, and the members holding its units learn it
 * from their connections closing. 1 when the finish goes on later. */
static int finish_records(script_call *sc, const char **reply, size_t *len)
{
    if (!sc->journal || !journal_durable(sc->journal) || !journal_recorded(sc->journal)) return 0;
    if (!fleet_run_may_write(&sc->frun)) {
        static char err[] = "-" LEASE_LOST_ERROR "\r\n";
        *reply = err;
        *len = sizeof(err) - 1;
        if (sc->locks && !sc->borrowed_locks) lock_set_abandon(sc->locks);
        journal_free(sc->journal);
        sc->journal = NULL;
        return 0;
    }
    free(sc->commit_reply);
    sc->commit_reply = malloc(*len ? *len : 1);
    if (!sc->commit_reply) abort();
    memcpy(sc->commit_reply, *reply, *len);
    sc->commit_len = *len;
    sc->scheduled++; /* until records_committed */
    if (journal_commit(sc->journal, UNDO_WAIT_MS, records_committed, sc)) return 1;
    sc->scheduled--;
    free(sc->commit_reply);
    sc->commit_reply = NULL;
    return 0;
}

/* The final reply goes to the client (if still there); locks are released. */
static void call_finish(script_call *sc, const char *reply, size_t len)
{
    if (finish_records(sc, &reply, &len)) return;
    set_busy(sc, 0);
    int failed = reply && len && reply[0] == '-';
    if (failed && !sc->reply_counted) stats_error_reply(reply + 1, len - 1);
    call_release_locks(sc);
    if (sc->done_fn) {
        scripting_done_fn *fn = sc->done_fn;
        sc->done_fn = NULL;
        sc->finished = 1;
        sc->depth++; /* the transaction may go on from here: keep sc alive */
        fn(sc->done_ctx, reply ? reply : "", reply ? len : 0);
        sc->depth--;
        call_maybe_free(sc);
        return;
    }
    reply_slot *s = sc->slot;
    sc->slot = NULL;
    if (s) {
        s->failed = failed;
        int held = sc->published && s->c && !s->discard;
        /* A reply at the head of its client's queue goes straight out,
         * unless it waits for the messages to reach subscribers first. */
        if (s->c && reply && !s->discard)
            evbuffer_add(s->c->slots_head == s && !s->shape && !held ? s->c->out : s->buf, reply, len);
        if (!held || !pubsub_hold_after_publish(s)) client_slot_done(s);
    }
    int was_pipelined = sc->pipelined;
    if (was_pipelined) {
        sc->pipelined = 0;
        pipelined_running--;
    }
    if (sc->c) {
        client *c = sc->c;
        sc->c = NULL;
        if (sc->debug) {
            /* As Redis: the session ends with the connection, once the
             * script's reply is written. */
            c->debugging = NULL;
            client_close_after_reply(c);
        }
        if (was_pipelined) {
            c->scripts_pipelined--;
        } else {
            c->script = NULL;
            client_unblock(c);
        }
    }
    sc->finished = 1;
    call_maybe_free(sc);
}

static void call_finish_error(script_call *sc, const char *err)
{
    struct evbuffer *b = evbuffer_new();
    reply_error_uncounted(b, err); /* counted by call_finish */
    size_t len = evbuffer_get_length(b);
    call_finish(sc, (const char *)evbuffer_pullup(b, -1), len);
    evbuffer_free(b);
}

/* ---- the undo journal --------------------------------------------------------------
 * Which runs keep a journal: the cheapest rule under which every script that
 * can end up in a lock cycle can give way. Only scripts that touch keys they
 * did not declare can wait while holding locks, so a script whose earlier
 * runs all kept to KEYS (what also decides lua-script-pipelining) keeps
 * none; its first run, and every run of a script seen to touch an undeclared
 * key, keep one. Runs inside EXEC use the transaction's locks and are never
 * re-run: none. Should a script stray from KEYS for the first time after
 * writing without a journal, it cannot give way; only a cycle of nothing but
 * such runs still fails, with the "declare it in KEYS" error. */
static int run_journals(const script_call *sc, unsigned host_bits)
{
    if (sc->lock_mode != LOCK_SCRIPT_EXCL) return 0;
    if (sc->rollback) return 1;
    if (sc->borrowed_locks) return 0;
    return !((host_bits & SCRIPT_BIT_RAN) && !(host_bits & SCRIPT_BIT_UNDECLARED));
}

/* Whether everything this run wrote can be undone. */
static int call_undoable(const script_call *sc) { return sc->journal && journal_complete(sc->journal); }

static void note_undoable(script_call *sc)
{
    if (sc->locks && !sc->borrowed_locks) lock_set_set_undoable(sc->locks, call_undoable(sc));
}

static void try_undo(script_call *sc);

static void records_go(script_call *sc);
static void call_send_now(script_call *sc, backend *b, int conn);

static void journal_settled(void *ctx)
{
    script_call *sc = ctx;
    sc->inflight--;
    note_undoable(sc);
    if (sc->record_wait && !journal_pending(sc->journal)) {
        if (stopping || sc->finished || !sc->run) {
            sc->record_wait = 0;
        } else {
            sc->depth++;
            records_go(sc);
            sc->depth--;
        }
    }
    try_undo(sc);
    call_maybe_free(sc);
}

/* A store reply (or capture) came after the run ended. */
static void call_reply_gone(script_call *sc)
{
    try_undo(sc);
    call_maybe_free(sc);
}

/* A reply for a run: 0 when the run has ended (the reply is dropped), else
 * the call is kept alive (depth) while the reply is handed over. */
static int call_reply_arrives(script_call *sc)
{
    if (stopping || sc->finished || !sc->run) {
        call_reply_gone(sc);
        return 0;
    }
    sc->depth++;
    return 1;
}

/* Writes whose effect the journal cannot take back: keyspace-wide ones, and
 * those that reach into another database. PUBLISH is never undoable. */
static int journalable(const command_def *cmd, int argc, char **argv)
{
    if (!strcmp(cmd->name, "move") || !strcmp(cmd->name, "swapdb") || !strcmp(cmd->name, "flushall") ||
        !strcmp(cmd->name, "flushdb") || !strcmp(cmd->name, "migrate") || !strcmp(cmd->name, "publish") ||
        !strcmp(cmd->name, "spublish"))
        return 0;
    if (!strcmp(cmd->name, "copy"))
        for (int i = 3; i < argc; i++)
            if (!strcasecmp(argv[i], "db")) return 0;
    return 1;
}

/* Before a write goes on conn: the images of the keys it is the first to
 * write, queued ahead of it on the same connection. */
static void journal_write(script_call *sc, backend *b, int conn)
{
    const command_def *cmd = sc->call_cmd;
    if (!sc->journal) {
        sc->journal = journal_new(journal_settled, sc);
        if (sc->frun.place >= 0) journal_set_durable(sc->journal, &sc->frun);
    }
    int n = 0, stack_keys[32], *keys = stack_keys;
    if (journalable(cmd, sc->call_argc, sc->call_argv) && (cmd->key_spec_count || cmd->getkeys)) {
        n = command_get_keys(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, keys, NULL, 32);
        if (n > 32) {
            keys = malloc(sizeof(int) * (size_t)n);
            if (!keys) abort();
            n = command_get_keys(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, keys, NULL, n);
        }
    }
    if (n <= 0) journal_break(sc->journal);
    int left = !strcmp(cmd->name, "lpush");
    /* Pops undo a push only when it is known to have happened: not from a
     * record read after this member died. */
    if (n == 1 && (left || !strcmp(cmd->name, "rpush")) && sc->call_argc >= 3 && !journal_durable(sc->journal) &&
        !journal_has(sc->journal, sc->db, sc->call_argv[keys[0]], sc->call_argvlen[keys[0]])) {
        /* A push: undone by as many pops, whatever the list's length. */
        sc->pushed = 1 + journal_pushed(sc->journal, sc->db, sc->call_argv[keys[0]], sc->call_argvlen[keys[0]], left,
                                        (unsigned)(sc->call_argc - 2));
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        const char *key = sc->call_argv[keys[i]];
        size_t klen = sc->call_argvlen[keys[i]];
        if (journal_has(sc->journal, sc->db, key, klen)) continue;
        if (journal_capture(sc->journal, b, conn, sc->db, sc->client_id, key, klen) == 0) sc->inflight++;
    }
    if (keys != stack_keys) free(keys);
    note_undoable(sc);
}

static void rerun_cb(evutil_socket_t fd, short what, void *arg);

/* The error text of a failed run (a '-' line), without '-' and CRLF. */
static int error_text(const char *reply, size_t len, const char **text, size_t *tlen)
{
    if (len < 3 || reply[0] != '-' || reply[len - 2] != '\r' || reply[len - 1] != '\n') return 0;
    *text = reply + 1;
    *tlen = len - 3;
    return 1;
}

/* A failed run's error, with what became of its writes when that is not
 * the obvious: undone after the store failed; or not (all) undone, with the
 * keys it had written. undone: -1 no undo was tried, 0 it failed, 1 done. */
static void finish_failed(script_call *sc, const char *reply, size_t len, int undone)
{
    const char *text;
    size_t tlen;
    if (!error_text(reply, len, &text, &tlen) || (undone == 1 && !sc->store_lost) ||
        (undone == -1 && !sc->store_lost)) {
        call_finish(sc, reply, len);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "-", 1);
    evbuffer_add(b, text, tlen);
    if (undone == 1) {
        evbuffer_add_printf(b, " (the store failed; the script's writes were undone)");
    } else {
        evbuffer_add_printf(b, " (%s; the script wrote", sc->store_lost ? "the store failed" : "not all undone");
        for (unsigned i = 0; i < sc->nwritten_keys; i++) {
            evbuffer_add(b, i ? ", '" : " '", i ? 3 : 2);
            size_t n = sc->written_lens[i] > 100 ? 100 : sc->written_lens[i];
            for (size_t k = 0; k < n; k++) {
                char ch = sc->written_buf[sc->written_at[i] + k];
                evbuffer_add(b, (ch == '\r' || ch == '\n') ? " " : &ch, 1);
            }
            evbuffer_add(b, "'", 1);
        }
        if (sc->more_written_keys) evbuffer_add_printf(b, " and %u more", sc->more_written_keys);
        if (!sc->nwritten_keys) evbuffer_add_printf(b, " to no key (PUBLISH or a keyspace-wide command)");
        evbuffer_add_printf(b, "%s)", undone == 0 && sc->store_lost ? "; they could not all be undone" : "");
    }
    evbuffer_add(b, "\r\n", 2);
    size_t n = evbuffer_get_length(b);
    call_finish(sc, (const char *)evbuffer_pullup(b, -1), n);
    evbuffer_free(b);
}

/* Keys written so far, for the error when the store fails. */
static void note_written_keys(script_call *sc)
{
    const command_def *cmd = sc->call_cmd;
    if (!cmd->key_spec_count && !cmd->getkeys) return;
    int keys[8];
    int n = command_get_keys(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, keys, NULL, 8);
    for (int i = 0; i < n && i < 8; i++) {
        const char *key = sc->call_argv[keys[i]];
        size_t len = sc->call_argvlen[keys[i]];
        unsigned j = 0;
        if (len > 100) len = 100; /* named by their first 100 bytes */
        while (j < sc->nwritten_keys &&
               (sc->written_lens[j] != len || memcmp(sc->written_buf + sc->written_at[j], key, len)))
            j++;
        if (j < sc->nwritten_keys) continue;
        if (sc->nwritten_keys == WRITTEN_KEYS_NAMED || sc->written_used + len > WRITTEN_KEYS_BYTES) {
            sc->more_written_keys++;
            continue;
        }
        memcpy(sc->written_buf + sc->written_used, key, len);
        sc->written_at[j] = (unsigned short)sc->written_used;
        sc->written_lens[j] = (unsigned short)len;
        sc->written_used += (unsigned)len;
        sc->nwritten_keys++;
    }
}

static void schedule_rerun(script_call *sc)
{
    static const struct timeval zero = {0, 0};
    sc->scheduled++;
    event_base_once(server.base, -1, EV_TIMEOUT, rerun_cb, sc, &zero);
}

static void undo_over(script_call *sc, int ok);

static void undo_committed(void *ctx, int ok)
{
    script_call *sc = ctx;
    (void)ok; /* could not be deleted: logged; what they cover is undone already */
    sc->scheduled--;
    undo_over(sc, 1);
}

static void undo_done(void *ctx, int ok)
{
    script_call *sc = ctx;
    sc->scheduled--;
    if (ok) stat_undone++;
    else stat_undo_failed++;
    /* Undone: its records in the store go before its locks do. */
    if (ok && sc->journal && journal_durable(sc->journal) && journal_recorded(sc->journal) &&
        fleet_run_may_write(&sc->frun)) {
        sc->scheduled++;
        if (journal_commit(sc->journal, UNDO_WAIT_MS, undo_committed, sc)) return;
        sc->scheduled--;
    }
    undo_over(sc, ok);
}

/* A run's locks go. One whose records the fleet must undo (this member was
 * fenced) lets the members holding its units know, by dropping them. */
static void call_release_locks(script_call *sc)
{
    if (!sc->locks) return;
    if (!sc->borrowed_locks) {
        if (sc->journal && journal_durable(sc->journal) && journal_recorded(sc->journal) &&
            !fleet_run_may_write(&sc->frun))
            lock_set_abandon(sc->locks);
        lock_set_release(sc->locks);
    }
    sc->locks = NULL;
    fleet_run_end(&sc->frun);
}

static void undo_over(script_call *sc, int ok)
{
    if (sc->undo_then == UNDO_THEN_RERUN) {
        sc->undo_then = 0;
        call_release_locks(sc);
        journal_free(sc->journal);
        sc->journal = NULL;
        if (ok) {
            stat_rerun_after_undo++;
            schedule_rerun(sc);
        } else {
            call_finish_error(sc, "ERR script gave way to break a lock cycle, but the store did not take back its "
                                  "writes in time; they may be partly applied");
            return;
        }
    }
    if (sc->undo_then == UNDO_THEN_FINISH) {
        sc->undo_then = 0;
        /* Records (if any) are gone or left to the fleet: the finish only
         * answers. */
        if (sc->journal && journal_recorded(sc->journal) && !fleet_run_may_write(&sc->frun)) call_release_locks(sc);
        journal_free(sc->journal);
        sc->journal = NULL;
        char *reply = sc->final_reply;
        size_t len = sc->final_len;
        sc->final_reply = NULL;
        finish_failed(sc, reply, len, ok);
        free(reply);
        return;
    }
    journal_free(sc->journal);
    sc->journal = NULL;
    call_maybe_free(sc);
}

/* Undoes the run's writes once every request it sent has been answered
 * (a restore must come after the write it takes back). */
static void try_undo(script_call *sc)
{
    if (!sc->undo_wanted || sc->inflight || stopping) return;
    sc->undo_wanted = 0;
    if (sc->journal && journal_durable(sc->journal) && journal_recorded(sc->journal) &&
        !fleet_run_may_write(&sc->frun)) {
        /* Fenced: the members that take its slots undo it from its records;
         * a write from here now could land after theirs. */
        undo_done(sc, 0);
        return;
    }
    journal_undo(sc->journal, server.backend, sc->client_id, UNDO_WAIT_MS, undo_done, sc);
}

static void begin_undo(script_call *sc, int then)
{
    /* A run killed while it waited for an undeclared key waits no more. */
    if (sc->locks && !sc->borrowed_locks) lock_set_cancel_wait(sc->locks);
    sc->undo_then = (unsigned)then;
    sc->undo_wanted = 1;
    sc->scheduled++; /* until undo_done */
    try_undo(sc);
}

/* ---- engine host callbacks ---------------------------------------------------- */

/* A call's write reached the store: its keys' trackers are told. */
static void call_tracking_end(script_call *sc, int unchanged)
{
    tracking_write_end(sc->call_tracked, unchanged);
    sc->call_tracked = NULL;
}

static void answer_error(script_call *sc, const char *err)
{
    stats_error_reply(err, strlen(err));
    script_run_reply_error(sc->run, err);
}

/* Refused before it ran, as Redis's checks of a script's command refuse it:
 * a rejected call in commandstats. */
static void call_refused(script_call *sc, const command_def *cmd, const char *err)
{
    stats_command_rejected(cmd);
    answer_error(sc, err);
}

/* Failed as it ran (answered here): a failed call. */
static void call_failed_here(script_call *sc, const command_def *cmd, const char *err)
{
    stats_command_done(cmd, 0, 1);
    answer_error(sc, err);
}

/* A reply for the script: in RESP3 when it asked (redis.setresp(3)). As
 * Redis, a command's error counts in errorstats now, whether or not the
 * script passes it on (the error table says so: it is not counted again). */
static void call_reply_raw(script_call *sc, const char *p, size_t len)
{
    if (len > 1 && p[0] == '-') stats_error_reply(p + 1, len - 1);
    struct evbuffer *b = sc->call_shape ? evbuffer_new() : NULL;
    if (b && resp3_convert(sc->call_shape, p, len, b) > 0)
        script_run_reply_raw(sc->run, (const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
    else script_run_reply_raw(sc->run, p, len);
    if (b) evbuffer_free(b);
}

static void store_reply_cb(void *ctx, const backend_reply *r)
{
    script_call *sc = ctx;
    sc->inflight--;
    if (sc->call_cmd) {
        /* Redis counts the commands scripts call in commandstats (their
         * errors reach errorstats in call_reply_raw). */
        char head[64];
        ev_ssize_t n = !r->error && r->raw_len ? evbuffer_copyout(r->raw, head, sizeof(head)) : 0;
        unsigned long long usec = clock_recent_us() - sc->call_start_us;
        if (n > 1 && head[0] == '-' && store_refusal_note_error(head + 1, (size_t)n - 1)) {
            /* Refused by the store's state before it ran (OOM, ...): rejected. */
            stats_command_rejected(sc->call_cmd);
            slowlog_args_free(sc->call_slow);
        } else {
            stats_command_done(sc->call_cmd, usec, r->error || (n > 0 && head[0] == '-'));
            /* As Redis logs a script's commands: from no client address. */
            slowlog_command_done(sc->call_cmd, sc->call_slow, usec, "?:0", NULL);
        }
        sc->call_slow = NULL;
    }
    if (sc->pushed) {
        /* Whether the push happened decides whether undo pops. */
        int applied = r->error ? -1 : !(r->raw_len && evbuffer_pullup(r->raw, 1)[0] == '-');
        journal_pushed_result(sc->journal, sc->pushed - 1, applied);
        sc->pushed = 0;
        note_undoable(sc);
    }
    call_tracking_end(sc, r->error || (r->raw_len && evbuffer_pullup(r->raw, 1)[0] == '-'));
    if (!call_reply_arrives(sc)) return;
    if (r->error) sc->store_lost = 1;
    /* The store's RESP2 bytes go to the script as they are: no reply objects. */
    if (r->error) answer_error(sc, r->error);
    else call_reply_raw(sc, (const char *)evbuffer_pullup(r->raw, (ev_ssize_t)r->raw_len), r->raw_len);
    sc->depth--;
    call_maybe_free(sc);
}

/* The reply of a command the proxy emulated for the script (an old store). */
static void emulated_reply_cb(void *ctx, const char *reply, size_t len, int store_failed)
{
    script_call *sc = ctx;
    sc->inflight--;
    if (sc->call_cmd) {
        unsigned long long usec = clock_recent_us() - sc->call_start_us;
        stats_command_done(sc->call_cmd, usec, len && reply[0] == '-');
        slowlog_command_done(sc->call_cmd, sc->call_slow, usec, "?:0", NULL);
        sc->call_slow = NULL;
    }
    call_tracking_end(sc, store_failed || (len && reply[0] == '-'));
    if (!call_reply_arrives(sc)) return;
    if (store_failed) sc->store_lost = 1;
    call_reply_raw(sc, reply, len);
    sc->depth--;
    call_maybe_free(sc);
}

/* The store cannot take the call (it is down or reconnecting). */
static void store_unavailable(script_call *sc)
{
    if (sc->pushed) {
        journal_pushed_result(sc->journal, sc->pushed - 1, 0); /* never sent */
        sc->pushed = 0;
    }
    sc->store_lost = 1;
    answer_error(sc, backend_error(server.backend));
}

static void learn_key(script_call *sc, int db, const char *key, size_t len)
{
    for (int i = 0; i < sc->nlearned; i++)
        if (sc->learned[i].db == db && sc->learned[i].len == len && !memcmp(sc->learned[i].key, key, len)) return;
    if (sc->nlearned == sc->caplearned) {
        sc->caplearned = sc->caplearned ? sc->caplearned * 2 : 4;
        sc->learned = realloc(sc->learned, sizeof(*sc->learned) * (size_t)sc->caplearned);
        if (!sc->learned) abort();
    }
    learned_key *lk = &sc->learned[sc->nlearned++];
    lk->db = db;
    lk->len = len;
    lk->key = malloc(len + 1);
    if (!lk->key) abort();
    memcpy(lk->key, key, len);
    lk->key[len] = '\0';
}

/* The database a call reaches besides its own: COPY's destination with
 * DB n, and MOVE's target (the same name there); -1 when none. */
static int call_other_db(const script_call *sc)
{
    long long db = -1;
    const command_def *cmd = sc->call_cmd;
    if (!strcmp(cmd->name, "copy")) {
        for (int j = 3; j + 1 < sc->call_argc; j++)
            if (!strcasecmp(sc->call_argv[j], "db") && !string_to_ll(sc->call_argv[j + 1], sc->call_argvlen[j + 1], &db))
                db = -1;
    } else if (!strcmp(cmd->name, "move") && sc->call_argc == 3) {
        if (!string_to_ll(sc->call_argv[2], sc->call_argvlen[2], &db)) db = -1;
    }
    return db >= 0 && db < config.databases && db != sc->db ? (int)db : -1;
}

/* Checks the undeclared keys of the pending redis.call, locking them on
 * first touch; returns 1 when every key is held, 0 when the call is
 * suspended (waiting, or answered with an error). */
static int call_keys_ready(script_call *sc)
{
    const command_def *cmd = sc->call_cmd;
    if (cmd->key_spec_count == 0 && !cmd->getkeys) return 1;
    int stack_keys[32];
    int *keys = stack_keys;
    int n = command_get_keys(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, keys, NULL, 32);
    if (n > 32) {
        keys = malloc(sizeof(int) * (size_t)n);
        if (!keys) abort();
        n = command_get_keys(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, keys, NULL, n);
    }
    int ready = 1;
    int other = n > 0 ? call_other_db(sc) : -1, copy = !strcmp(cmd->name, "copy");
    int extra = other >= 0 && !copy; /* MOVE: one more pass, for the name in the target database */
    for (int i = 0; i < n + extra && ready; i++) {
        int in_other = i == n || (copy && other >= 0 && keys[i] == 2);
        int at = i == n ? keys[0] : keys[i];
        int db = in_other ? other : sc->db;
        const char *key = sc->call_argv[at];
        size_t klen = sc->call_argvlen[at];
        if (lock_set_holds(sc->locks, db, key, klen)) continue;
        if (config.lua_undeclared_keys_error) {
            char err[300];
            snprintf(err, sizeof(err),
                     "ERR script accessed key '%.*s' that was not declared in KEYS (lua-undeclared-keys error)",
                     (int)(klen > 200 ? 200 : klen), key);
            answer_error(sc, err);
            ready = 0;
            break;
        }
        learn_key(sc, db, key, klen);
        sc->undeclared = 1;
        int rc = lock_set_extend(sc->locks, db, key, klen);
        if (rc == LOCK_GRANTED) continue;
        ready = 0;
        if (rc == LOCK_WAITING) break; /* call_lock_granted resumes the check */
        /* LOCK_DEADLOCK */
        if (!sc->borrowed_locks && !sc->debug && (!sc->written || call_undoable(sc))) {
            /* Nothing written yet, or all of it can be undone: start again
             * later (after the undo) with this key declared. */
            sc->rerun = 1;
            stat_reruns++;
            script_run_kill(sc->run, RERUN_MARKER);
        } else {
            char err[300];
            stat_deadlock_errors++;
            snprintf(err, sizeof(err),
                     "ERR script accessed undeclared key '%.*s' held by another script that waits for this one; "
                     "declare it in KEYS",
                     (int)(klen > 200 ? 200 : klen), key);
            answer_error(sc, err);
        }
    }
    if (keys != stack_keys) free(keys);
    return ready;
}

static int has_block_option(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcasecmp(argv[i], "streams")) return 0;
        if (!strcasecmp(argv[i], "block")) return 1;
    }
    return 0;
}

/* A blocking command inside a script must not block (Redis runs it as if
 * its timeout had passed). Inside a transaction the store runs it exactly
 * that way: MULTI, the command, EXEC, and the script gets EXEC's only element. */
static void unwrap_exec_cb(void *ctx, const backend_reply *r)
{
    script_call *sc = ctx;
    sc->inflight--;
    call_tracking_end(sc, r->error != NULL);
    if (!call_reply_arrives(sc)) return;
    if (r->error) sc->store_lost = 1;
    if (r->error) {
        answer_error(sc, r->error);
    } else {
        const redisReply *p = r->parsed->type == REDIS_REPLY_ARRAY && r->parsed->elements == 1 ? r->parsed->element[0] : r->parsed;
        if (p->type == REDIS_REPLY_ERROR) stats_error_reply(p->str, p->len);
        script_run_reply(sc->run, p);
    }
    sc->depth--;
    call_maybe_free(sc);
}

/* SORT and SORT_RO with a constant BY pattern (one without '*') do not sort,
 * except that Redis sorts a set ALPHA, without the BY, when a script asks
 * (or with STORE, which the store sees itself), so that the reply does not
 * depend on the set's internal order. The store cannot know the call comes
 * from a script: such a call asks the key's type first and, for a set, sends
 * the command with ALPHA in place of its BY options. Whether a call needs it
 * is read from its options as Redis parses them; any other SORT goes as is. */
static int sort_needs_type(const command_def *cmd, int argc, char **argv)
{
    int readonly = !strcmp(cmd->name, "sort_ro");
    if (!readonly && strcmp(cmd->name, "sort")) return 0;
    int dontsort = 0;
    for (int j = 2; j < argc; j++) {
        int left = argc - j - 1;
        if (!strcasecmp(argv[j], "asc") || !strcasecmp(argv[j], "desc") || !strcasecmp(argv[j], "alpha")) continue;
        if (!strcasecmp(argv[j], "limit") && left >= 2) {
            j += 2;
        } else if (!readonly && !strcasecmp(argv[j], "store") && left >= 1) {
            return 0;
        } else if (!strcasecmp(argv[j], "by") && left >= 1) {
            if (!strchr(argv[j + 1], '*')) dontsort = 1; /* as Redis: the pattern up to a NUL */
            j++;
        } else if (!strcasecmp(argv[j], "get") && left >= 1) {
            j++;
        } else {
            return 0; /* a syntax error: the store gives it */
        }
    }
    return dontsort;
}

static void sort_type_cb(void *ctx, const backend_reply *r)
{
    script_call *sc = ctx;
    sc->inflight--;
    if (!call_reply_arrives(sc)) return;
    int argc = sc->call_argc;
    char **argv = sc->call_argv, **sargv = NULL;
    size_t *argvlen = sc->call_argvlen, *slen = NULL;
    static const char set_reply[] = "+set\r\n";
    if (!r->error && r->raw_len == sizeof(set_reply) - 1 &&
        !memcmp(evbuffer_pullup(r->raw, (ev_ssize_t)r->raw_len), set_reply, r->raw_len)) {
        /* A set: the same options (sort_needs_type parsed them) without BY, and ALPHA. */
        sargv = malloc(sizeof(char *) * (size_t)(argc + 1));
        slen = malloc(sizeof(size_t) * (size_t)(argc + 1));
        if (!sargv || !slen) abort();
        int n = 0;
        for (int j = 0; j < argc; j++) {
            int left = argc - j - 1, take = 0;
            if (j >= 2 && !strcasecmp(argv[j], "by") && left >= 1) {
                j++;
                continue;
            }
            if (j >= 2 && !strcasecmp(argv[j], "limit") && left >= 2) take = 2;
            else if (j >= 2 && !strcasecmp(argv[j], "get") && left >= 1) take = 1;
            for (int k = 0; k <= take; k++, n++) {
                sargv[n] = argv[j + k];
                slen[n] = argvlen[j + k];
            }
            j += take;
        }
        sargv[n] = "ALPHA";
        slen[n++] = 5;
        argc = n;
        argv = sargv;
        argvlen = slen;
    }
    backend *b = server.backend;
    int conn = backend_pick(b, (unsigned)(uintptr_t)sc);
    if (conn < 0 || backend_send_for(b, conn, sc->db, sc->client_id, argc, argv, argvlen, BACKEND_RAW,
                                     store_reply_cb, sc) != 0)
        store_unavailable(sc);
    else sc->inflight++;
    free(sargv);
    free(slen);
    sc->depth--;
    call_maybe_free(sc);
}

/* Checks done: send the pending redis.call to the store. */
static void call_send(script_call *sc)
{
    const command_def *cmd = sc->call_cmd;
    /* The burst's clock: a call is timed from its run's last resume at worst. */
    sc->call_start_us = clock_recent_us();
    slowlog_args_free(sc->call_slow);
    sc->call_slow = slowlog_args_copy(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen);
    if (monitor_active() && !(cmd->flags & CMD_ADMIN))
        monitor_feed(NULL, sc->db, cmd, sc->call_argc, sc->call_argv, sc->call_argvlen);
    sc->call_shape = script_run_resp(sc->run) == 3
                         ? resp3_shape_for(cmd->name, sc->call_argc, sc->call_argv, sc->call_argvlen)
                         : NULL;
    /* Client-side caching: the script's reads are its caller's, its
     * writes tell the keys' trackers once the store has them. */
    if (tracking_active()) {
        if (sc->c) tracking_read_declared(sc->c, cmd, sc->numkeys, sc->keys, sc->keylens);
        tracking_write_end(sc->call_tracked, 0);
        sc->call_tracked = tracking_write_begin(sc->client_id, cmd, sc->call_argc, sc->call_argv, sc->call_argvlen);
    }
    /* As Redis 7.0's SCRIPT_WRITE_DIRTY: only write commands make a script
     * unkillable; PUBLISH is not one. But a script that published cannot be
     * re-run unseen, so for the lock cycle it counts as written. */
    if (cmd->flags & CMD_WRITE) sc->dirty = 1;
    if (!strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish")) sc->published = 1;
    if (cmd->flags & CMD_WRITE || !strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish")) {
        if (!sc->written) {
            sc->written = 1;
            script_run_mark_written(sc->run);
            if (sc->locks) lock_set_set_written(sc->locks, 1);
        }
    }
    int is_write = cmd->flags & CMD_WRITE || !strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish");
    if (is_write && sc->nwritten_keys < WRITTEN_KEYS_NAMED) note_written_keys(sc);
    backend *b = server.backend;
    int conn = backend_pick(b, (unsigned)(uintptr_t)sc);
    if (is_write && sc->journalling) {
        if (conn >= 0 || !journalable(cmd, sc->call_argc, sc->call_argv)) journal_write(sc, b, conn);
    }
    if (is_write && sc->frun.place >= 0) {
        if (!fleet_run_may_write(&sc->frun)) {
            answer_error(sc, LEASE_LOST_ERROR);
            return;
        }
        if (sc->journal && (journal_pending(sc->journal) || journal_unrecorded(sc->journal))) {
            sc->record_wait = 1;
            sc->record_conn = conn;
            records_go(sc);
            return;
        }
    }
    call_send_now(sc, b, conn);
}

/* The run's new journal entries are in the store: the write they cover goes
 * (unless it went already, right behind them on one store). */
static void records_written(void *ctx, int ok)
{
    script_call *sc = ctx;
    sc->inflight--;
    if (sc->records_ahead) {
        sc->records_ahead = 0;
        if (!ok) log_warning("fleet: a script's journal record was refused by the store; should this member die "
                             "before the script ends, the fleet cannot undo that write");
        try_undo(sc);
        call_maybe_free(sc);
        return;
    }
    sc->record_wait = 0;
    if (!call_reply_arrives(sc)) return;
    if (!ok) answer_error(sc, RECORDS_FAILED_ERROR);
    else if (!fleet_run_may_write(&sc->frun)) answer_error(sc, LEASE_LOST_ERROR);
    else call_send_now(sc, server.backend, sc->record_conn);
    sc->depth--;
    call_maybe_free(sc);
}

/* Once the images of the keys the pending write is the first to touch are
 * read (journal_settled calls again), their records go to the store. */
static void records_go(script_call *sc)
{
    if (journal_pending(sc->journal)) return;
    int ahead = sc->records_ahead;
    int rc = journal_persist(sc->journal, sc->record_conn, sc->client_id, records_written, sc);
    if (rc > 0 && !ahead) sc->inflight++; /* one answer for all records in flight */
    if (rc > 0 && (ahead || journal_records_ordered(sc->journal))) {
        /* One store: the write runs after its records there, in order. */
        sc->records_ahead = 1;
        sc->record_wait = 0;
        call_send_now(sc, server.backend, sc->record_conn);
        return;
    }
    if (rc > 0) return;
    sc->record_wait = 0;
    if (rc < 0) answer_error(sc, RECORDS_FAILED_ERROR);
    else call_send_now(sc, server.backend, sc->record_conn);
}

static void call_send_now(script_call *sc, backend *b, int conn)
{
    const command_def *cmd = sc->call_cmd;
    if (pubsub_script_call(sc->run, cmd, sc->call_argc, sc->call_argv, sc->call_argvlen)) return;
    if (!strcmp(cmd->name, "debug") && sc->call_argc == 3 && !strcasecmp(sc->call_argv[1], "protocol")) {
        /* Sample replies of each type, in the protocol the script chose. */
        struct evbuffer *r = evbuffer_new();
        if (!reply_debug_protocol(r, sc->call_argv[2], sc->call_argvlen[2], script_run_resp(sc->run)))
            reply_error_uncounted(r, "ERR Wrong protocol type name. Please use one of the following: "
                                     "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
        script_run_reply_raw(sc->run, (const char *)evbuffer_pullup(r, -1), evbuffer_get_length(r));
        evbuffer_free(r);
        return;
    }
    if (emulation_wanted(cmd, sc->db, sc->call_argc, sc->call_argv, sc->call_argvlen)) {
        /* A command the store lacks: its steps run under this script's
         * locks, on the connection its journal images went out on. */
        sc->inflight++;
        emulation_run_held(cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, sc->db, conn, sc->client_id,
                           emulated_reply_cb, sc);
        return;
    }
    if (conn >= 0 && sort_needs_type(cmd, sc->call_argc, sc->call_argv)) {
        char *tv[2] = {"TYPE", sc->call_argv[1]};
        size_t tl[2] = {4, sc->call_argvlen[1]};
        if (backend_send_for(b, conn, sc->db, sc->client_id, 2, tv, tl, BACKEND_RAW, sort_type_cb, sc) == 0) {
            sc->inflight++;
            return;
        }
        store_unavailable(sc);
        return;
    }
    /* A store without transactions never blocks (memcached): it gets the
     * command itself, and refuses it by its own name. */
    if (conn >= 0 && (cmd->flags & CMD_BLOCKING) && b->has_transactions) {
        char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
        size_t ml[1] = {5}, el[1] = {4};
        if (backend_send(b, conn, sc->db, 1, mv, ml, BACKEND_RAW, NULL, NULL) == 0 &&
            backend_send(b, conn, sc->db, sc->call_argc, sc->call_argv, sc->call_argvlen, BACKEND_RAW, NULL, NULL) ==
                0 &&
            backend_send(b, conn, sc->db, 1, ev, el, BACKEND_PARSED, unwrap_exec_cb, sc) == 0) {
            sc->inflight++;
            return;
        }
        store_unavailable(sc);
        return;
    }
    if (conn < 0 || backend_send_for(b, conn, sc->db, sc->client_id, sc->call_argc, sc->call_argv,
                                     sc->call_argvlen, BACKEND_RAW, store_reply_cb, sc) != 0) {
        store_unavailable(sc);
        return;
    }
    sc->inflight++;
}

/* A SCRIPT DEBUG YES session's call: its keys' copies are in place. */
static void private_ready(void *ctx, const char *err)
{
    script_call *sc = ctx;
    if (err) answer_error(sc, err);
    else if (!strcmp(sc->call_cmd->name, "publish") || !strcmp(sc->call_cmd->name, "spublish"))
        script_run_reply_raw(sc->run, ":0\r\n", 4); /* as in Redis's forked session: nobody hears it */
    else call_send(sc);
}

static void private_copied(void *ctx, const char *err)
{
    script_call *sc = ctx;
    sc->inflight--;
    sc->depth++;
    if (!sc->finished && sc->run) private_ready(sc, err);
    sc->depth--;
    call_maybe_free(sc);
}

static void call_presteps_done(void *ctx, const char *err)
{
    script_call *sc = ctx;
    sc->inflight--;
    sc->depth++;
    if (!sc->finished && sc->run) {
        if (err) answer_error(sc, err);
        else call_send(sc);
    }
    sc->depth--;
    call_maybe_free(sc);
}

/* The call's keys held: what must happen to them first (key_presteps.h)
 * goes before the journal reads them, so a key moved in from a migration's
 * old store is journalled as it is in the new one, and undo keeps it. */
static void call_locked(script_call *sc)
{
    const command_def *cmd = sc->call_cmd;
    if (!key_presteps_wanted(cmd, sc->db, sc->call_argc, sc->call_argv, sc->call_argvlen)) {
        call_send(sc);
        return;
    }
    prestep_call pc = {cmd, sc->call_argc, sc->call_argv, sc->call_argvlen, sc->db,
                       backend_pick(server.backend, (unsigned)(uintptr_t)sc), sc->client_id};
    sc->inflight++; /* until call_presteps_done, maybe before run returns */
    key_presteps_run(&pc, call_presteps_done, sc);
}

static void call_proceed(script_call *sc)
{
    if (sc->priv) {
        sc->inflight++; /* until private_copied, maybe before prepare returns */
        ldb_private_prepare(sc->priv, sc->call_cmd, sc->db, &sc->call_argc, &sc->call_argv, &sc->call_argvlen,
                            private_copied, sc);
        return;
    }
    if (call_keys_ready(sc)) call_locked(sc);
}

/* Redis's may-replicate commands (not reported by COMMAND): read-only
 * scripts treat them as writes. */
static int may_replicate(const command_def *cmd)
{
    return !strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish") || !strcmp(cmd->name, "pfcount");
}

static void check_busy(script_call *sc)
{
    /* A debugging session waits for its client, not for CPU: never busy. */
    if (sc->debug) return;
    /* Like Redis, "busy" is wall time since the script started. */
    if (!sc->busy && clock_recent_ms() - sc->start_ms >= (unsigned long long)config.busy_reply_threshold) {
        log_verbose("script %s is busy (past busy-reply-threshold)", sc->sha);
        set_busy(sc, 1);
    }
}

static void host_call(void *host_ctx, script_run *run, int argc, char **argv, size_t *argvlen)
{
    script_call *sc = script_run_userdata(run);
    sc->run = run;
    check_busy(sc);
    const command_def *cmd = command_resolve(argc, argv, argvlen, NULL);
    if (!cmd) {
        answer_error(sc, "ERR Unknown Redis command called from script");
        return;
    }
    if ((cmd->arity > 0 && cmd->arity != argc) || argc < -cmd->arity) {
        call_refused(sc, cmd, "ERR Wrong number of args calling Redis command from script");
        return;
    }
    if ((cmd->flags & CMD_NOSCRIPT) && !server.script_deny_disabled) {
        call_refused(sc, cmd, "ERR This Redis command is not allowed from script");
        return;
    }
    if (!sc->user->unrestricted) {
        int rc = acl_script_check(sc->user, sc->c, cmd, argc, argv, argvlen);
        if (rc != ACL_OK) {
            call_refused(sc, cmd, rc == ACL_DENIED_CMD   ? "ERR The user executing the script can't run this command or subcommand"
                             : rc == ACL_DENIED_KEY ? "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments"
                                                    : "ERR The user executing the script can't publish to the channel mentioned in the command");
            return;
        }
    }
    int read_only = (sc->run_flags & SCRIPT_RUN_RO) || (script_run_script_flags(run) & SCRIPT_FLAG_NO_WRITES);
    if (read_only && ((cmd->flags & CMD_WRITE) || may_replicate(cmd))) {
        call_refused(sc, cmd, "ERR Write commands are not allowed from read-only scripts.");
        return;
    }
    if ((!strcmp(cmd->name, "xread") || !strcmp(cmd->name, "xreadgroup")) && has_block_option(argc, argv)) {
        char err[160];
        snprintf(err, sizeof(err), "ERR %s command is not allowed with BLOCK option from scripts", cmd->name);
        call_failed_here(sc, cmd, err);
        return;
    }
    if (!strcmp(cmd->name, "select")) {
        /* SELECT inside a script changes the script's database only. */
        long long id;
        if (!string_to_ll(argv[1], argvlen[1], &id)) {
            call_failed_here(sc, cmd, "ERR value is not an integer or out of range");
        } else if (id < 0 || id >= config.databases) {
            call_failed_here(sc, cmd, "ERR DB index is out of range");
        } else {
            sc->db = (int)id;
            stats_command_done(cmd, 0, 0);
            script_run_reply_raw(run, "+OK\r\n", 5);
        }
        return;
    }
    /* SORT's own ACL check runs as the command runs, after the checks above. */
    const char *sort_err = acl_sort_option_denied(sc->user, cmd, argc, argv, argvlen);
    if (sort_err) {
        call_failed_here(sc, cmd, sort_err);
        return;
    }
    char refusal[200];
    if (dispatch_store_refuses(cmd, refusal, sizeof(refusal))) {
        call_refused(sc, cmd, refusal);
        return;
    }
    sc->call_argc = argc;
    sc->call_argv = argv;
    sc->call_argvlen = argvlen;
    sc->call_cmd = cmd;
    call_proceed(sc);
}

/* ---- the run queue ---------------------------------------------------------------
 * Runs that used up their time slice wait here in order. Each event-loop turn
 * gives them one slice of CPU between them, round robin, so however many
 * scripts are CPU-bound, a plain command or a script whose store reply came
 * in waits about one slice for the proxy to read it, not one slice per
 * CPU-bound script. */
static script_call *runq_head, *runq_tail;
static struct event *runq_ev;

static void runq_remove(script_call *sc)
{
    if (!sc->queued) return;
    script_call **p = &runq_head, *prev = NULL;
    while (*p != sc) {
        prev = *p;
        p = &(*p)->rq_next;
    }
    *p = sc->rq_next;
    if (runq_tail == sc) runq_tail = prev;
    sc->rq_next = NULL;
    sc->queued = 0;
    sc->scheduled--;
}

static void runq_arm(void)
{
    /* A timer, not an immediate activation: libevent runs activated events
     * in the same loop turn, which would starve the sockets. The delay counts
     * from the time libevent read before this turn's callbacks, so it is
     * over by the next turn, whose poll waits at most the timer's resolution
     * (1 ms with epoll) and only while no socket is ready: a client's next
     * command usually arrives in that window rather than behind a slice. */
    static const struct timeval soon = {0, 1};
    if (!evtimer_pending(runq_ev, NULL)) evtimer_add(runq_ev, &soon);
}

static void runq_push(script_call *sc)
{
    if (sc->queued) return;
    sc->queued = 1;
    sc->scheduled++;
    sc->rq_next = NULL;
    if (runq_tail) runq_tail->rq_next = sc;
    else runq_head = sc;
    runq_tail = sc;
    runq_arm();
}

static void runq_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    unsigned long long budget = (unsigned long long)config.lua_time_slice_us, t0 = clock_us();
    while (runq_head) {
        unsigned long long used = clock_us() - t0;
        if (used >= budget) break;
        script_call *sc = runq_head;
        runq_remove(sc);
        if (!sc->finished && sc->run) {
            sc->depth++;
            /* It comes back to the tail if it yields again. */
            script_run_continue_for(sc->run, (unsigned)(budget - used));
            sc->depth--;
        }
        call_maybe_free(sc);
    }
    if (runq_head) runq_arm();
}

static void host_yield(void *host_ctx, script_run *run)
{
    script_call *sc = script_run_userdata(run);
    sc->run = run;
    check_busy(sc);
    runq_push(sc);
}

static void rerun_cb(evutil_socket_t fd, short what, void *arg)
{
    /* The run is started afresh: its journal (already undone) is dropped. */
    (void)fd;
    (void)what;
    script_call *sc = arg;
    sc->scheduled--;
    if (!sc->finished) call_acquire(sc, 0);
    call_maybe_free(sc);
}

/* What a finished run taught about its script: whether it keeps to its
 * declared keys (only such scripts are pipelined). */
static void note_run(script_call *sc)
{
    unsigned add = sc->undeclared ? SCRIPT_BIT_UNDECLARED : SCRIPT_BIT_RAN;
    if (sc->host_bits & add) return; /* nothing new: no second lookup */
    const script *s;
    const script_function *f;
    if (!call_target(sc, &s, &f)) return;
    if (f) script_function_set_host_bits(f, script_function_host_bits(f) | add);
    else script_set_host_bits(s, script_host_bits(s) | add);
}

static void host_done(void *host_ctx, script_run *run, const char *reply, size_t len)
{
    script_call *sc = script_run_userdata(run);
    sc->run = NULL;
    sc->reply_counted = script_run_error_counted(run);
    if (sc->debug) {
        /* The session's last log lines and <endsession> come before the
         * script's reply, as Redis sends them. */
        size_t flen;
        const char *fin = script_run_debug_final(run, &flen);
        if (sc->c && fin) evbuffer_add(sc->c->out, fin, flen);
        log_warning(sc->priv ? "Lua debugging session on private copies ended"
                             : "Redis synchronous debugging eval session ended");
    }
    runq_remove(sc); /* killed while it waited for its turn */
    stat_scripts_run++;
    note_run(sc);
    if (sc->rerun) {
        /* Aborted to break a lock cycle: run again once the other script is
         * done, this time with the keys it reached declared up front. What
         * it wrote is undone first, under its locks, so nobody sees it. */
        sc->rerun = 0;
        sc->started = 0;
        set_busy(sc, 0);
        if (sc->written && sc->journal && !journal_empty(sc->journal)) {
            begin_undo(sc, UNDO_THEN_RERUN);
            return;
        }
        call_release_locks(sc);
        schedule_rerun(sc);
        return;
    }
    if (len && reply[0] == '-' && sc->written && sc->rollback && sc->journal && !journal_empty(sc->journal)) {
        /* lua-rollback-on-error / flags=atomic: nothing of a failed run
         * stays; its locks are held until its writes are undone. */
        sc->final_reply = malloc(len);
        if (!sc->final_reply) abort();
        memcpy(sc->final_reply, reply, len);
        sc->final_len = len;
        begin_undo(sc, UNDO_THEN_FINISH);
        return;
    }
    if (len && reply[0] == '-' && sc->written && sc->store_lost) {
        finish_failed(sc, reply, len, -1);
        return;
    }
    call_finish(sc, reply, len);
}

static void host_log(void *host_ctx, int level, const char *msg, size_t len)
{
    static const int map[] = {LL_DEBUG, LL_VERBOSE, LL_NOTICE, LL_WARNING};
    log_raw(level >= 0 && level <= 3 ? map[level] : LL_NOTICE, msg, len);
}

static int host_acl_check(void *host_ctx, script_run *run, int argc, char **argv, size_t *argvlen)
{
    const command_def *cmd = command_resolve(argc, argv, argvlen, NULL);
    if (!cmd) return -1;
    script_call *sc = script_run_userdata(run);
    return acl_check_command(sc->user, cmd, argc, argv, argvlen, NULL) == ACL_OK;
}

/* A debugged run stopped: its log goes to the client, whose next command
 * is the debugger's (scripting_debug_command). */
static void host_debug(void *host_ctx, script_run *run, const char *logs, size_t len)
{
    script_call *sc = script_run_userdata(run);
    sc->run = run;
    if (!sc->c) return; /* gone: the run was detached and never stops again */
    evbuffer_add(sc->c->out, logs, len);
    client_unblock(sc->c);
}

void scripting_debug_command(client *c, int argc, char **argv, size_t *argvlen)
{
    script_call *sc = (script_call *)c->debugging;
    /* Read only while the run is stopped: anything else waits unread. */
    if (!sc->run || !script_run_debug_stopped(sc->run)) return;
    client_block(c);
    sc->depth++;
    script_run_debug_command(sc->run, argc, argv, argvlen);
    sc->depth--;
    call_maybe_free(sc);
}

static const script_host host = {host_call, host_yield, host_done, host_log, host_acl_check, host_debug};

/* ---- starting calls --------------------------------------------------------------- */

static void call_start(script_call *sc)
{
    const script *s;
    const script_function *f;
    if (!call_target(sc, &s, &f)) {
        /* SCRIPT FLUSH, FUNCTION DELETE/FLUSH ran while this call waited for its keys. */
        call_finish_error(sc, sc->fname ? "ERR Function not found" : "NOSCRIPT No matching script. Please use EVAL.");
        return;
    }
    sc->started = 1;
    sc->attempts++;
    journal_free(sc->journal);
    sc->journal = NULL;
    forget_written_keys(sc);
    sc->store_lost = 0;
    sc->rollback = config.lua_rollback_on_error || ((f ? script_function_flags(f) : script_flags(s)) & SCRIPT_FLAG_ATOMIC);
    sc->journalling = run_journals(sc, f ? script_function_host_bits(f) : script_host_bits(s));
    if (sc->frun.place >= 0) sc->journalling = 1; /* a fleet undoes a dead member's runs from their journals */
    if (sc->priv) sc->rollback = sc->journalling = 0; /* its writes are private and dropped anyway */
    sc->start_ms = clock_recent_ms();
    sc->db = sc->start_db;
    /* A session whose client went while it waited for its keys runs as a
     * plain script: nobody would answer its stops. */
    int run_flags = sc->debug && !sc->c ? sc->run_flags & ~SCRIPT_RUN_DEBUG : sc->run_flags;
    sc->depth++;
    if (f)
        script_run_start_function(engine, f, sc->numkeys, sc->keys, sc->keylens, sc->nargs, sc->args, sc->arglens,
                                  run_flags, sc);
    else
        script_run_start(engine, s, sc->numkeys, sc->keys, sc->keylens, sc->nargs, sc->args, sc->arglens,
                         run_flags, sc);
    sc->depth--;
    call_maybe_free(sc);
}

static void call_lock_granted(lock_set *ls, void *ctx)
{
    script_call *sc = ctx;
    if (sc->finished) return;
    if (!sc->started) {
        call_start(sc);
        return;
    }
    /* An undeclared key was granted: go on with the suspended redis.call. */
    if (!sc->run) return;
    sc->depth++;
    call_proceed(sc);
    sc->depth--;
    call_maybe_free(sc);
}

/* Another script needs this one out of the way to break a lock cycle; it has
 * not written, or can undo what it wrote, so it is aborted (undone) and run
 * again later. */
static void call_abort(lock_set *ls, void *ctx)
{
    script_call *sc = ctx;
    if (sc->borrowed_locks) return;
    /* A run that wrote keeps its units until its writes are undone. */
    if (sc->written) lock_set_cancel_wait(ls);
    else lock_set_release_all(ls);
    if (!sc->run) return;
    sc->rerun = 1;
    stat_reruns++;
    sc->depth++;
    script_run_kill(sc->run, RERUN_MARKER);
    sc->depth--;
    call_maybe_free(sc);
}

static void call_acquire(script_call *sc, int refuse_if_busy)
{
    call_release_locks(sc);
    lock_set *ls = lock_set_new(sc->lock_mode, call_lock_granted, sc);
    /* Each attempt its own place and token: records of an attempt undone
     * before must never be taken for this one's. */
    if (fleet_enabled() && !sc->borrowed_locks && sc->lock_mode == LOCK_SCRIPT_EXCL && !sc->priv) {
        fleet_run_begin(&sc->frun);
        lock_set_set_run(ls, sc->frun.place >= 0 ? sc->frun.tag : NULL);
    }
    /* A debugging session never gives way: its client would see it start over. */
    lock_set_mark_script(ls, sc->debug ? NULL : call_abort);
    lock_set_set_age(ls, sc->seq);
    for (int i = 0; i < sc->numkeys; i++) lock_set_add_key(ls, sc->start_db, sc->keys[i], sc->keylens[i]);
    for (int i = 0; i < sc->nlearned; i++) lock_set_add_key(ls, sc->learned[i].db, sc->learned[i].key, sc->learned[i].len);
    sc->locks = ls;
    sc->written = 0;
    sc->dirty = 0;
    int rc = lock_set_acquire(ls, refuse_if_busy);
    if (rc == LOCK_BUSY) {
        call_finish_error(sc, busy_error(lock_set_busy_kind(ls)));
        return;
    }
    if (rc == LOCK_GRANTED) call_start(sc);
}

/* A call of script s or (s NULL) of function f. */
static script_call *call_new(client *c, const script *s, const script_function *f, int numkeys, char **keys,
                             size_t *keylens, int nargs, char **args, size_t *arglens, int run_flags)
{
    /* One block: the call, then pointer arrays, then the argument bytes. */
    size_t bytes = 0;
    for (int i = 0; i < numkeys; i++) bytes += keylens[i] + 1;
    for (int i = 0; i < nargs; i++) bytes += arglens[i] + 1;
    size_t n = (size_t)numkeys + (size_t)nargs;
    size_t head = (sizeof(script_call) + sizeof(void *) - 1) / sizeof(void *) * sizeof(void *);
    script_call *sc = call_block_get(head + n * (sizeof(char *) + sizeof(size_t)) + bytes + 1);
    sc->frun.place = -1;
    char *block = (char *)sc + head;
    char **ptrs = (char **)block;
    size_t *lens = (size_t *)(block + n * sizeof(char *));
    char *data = block + n * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        const char *src = i < (size_t)numkeys ? keys[i] : args[i - (size_t)numkeys];
        size_t len = i < (size_t)numkeys ? keylens[i] : arglens[i - (size_t)numkeys];
        memcpy(data, src, len);
        data[len] = '\0';
        ptrs[i] = data;
        lens[i] = len;
        data += len + 1;
    }
    sc->keys = ptrs;
    sc->keylens = lens;
    sc->args = ptrs + numkeys;
    sc->arglens = lens + numkeys;
    sc->numkeys = numkeys;
    sc->nargs = nargs;
    if (s) {
        memcpy(sc->sha, script_sha(s), 40);
        sc->sha[40] = '\0';
    } else {
        sc->fname = strdup(script_function_name(f));
        if (!sc->fname) abort();
    }
    sc->run_flags = run_flags | (c && c->resp == 3 ? SCRIPT_RUN_RESP3 : 0);
    int ro = (run_flags & SCRIPT_RUN_RO) || ((s ? script_flags(s) : script_function_flags(f)) & SCRIPT_FLAG_NO_WRITES);
    unsigned bits = s ? script_host_bits(s) : script_function_host_bits(f);
    sc->host_bits = bits;
    sc->keeps_to_keys = (bits & SCRIPT_BIT_RAN) && !(bits & SCRIPT_BIT_UNDECLARED);
    sc->lock_mode = ro ? LOCK_SCRIPT_RO : LOCK_SCRIPT_EXCL;
    sc->c = c;
    sc->seq = ++call_seq;
    sc->client_id = c->id;
    sc->user = c->user;
    acl_user_retain(sc->user);
    sc->start_db = sc->db = c->db;
    sc->next = calls;
    if (calls) calls->prev = sc;
    calls = sc;
    return sc;
}

/* ---- commands --------------------------------------------------------------------- */

/* The numkeys argument of EVAL* and FCALL* (argv[2]); not_int is the
 * command's own text for a non-number. 0 with err set when it is invalid. */
static int parse_numkeys(int argc, char **argv, size_t *argvlen, const char *not_int, int *numkeys, char *err,
                         size_t errlen)
{
    long long n;
    if (!string_to_ll(argv[2], argvlen[2], &n)) {
        snprintf(err, errlen, "%s", not_int);
        return 0;
    }
    if (n > argc - 3) {
        snprintf(err, errlen, "ERR Number of keys can't be greater than number of args");
        return 0;
    }
    if (n < 0) {
        snprintf(err, errlen, "ERR Number of keys can't be negative");
        return 0;
    }
    *numkeys = (int)n;
    return 1;
}

/* What Redis 7.0 checks of the server before a script runs (and before an
 * *_RO command's refusal of a write-flagged one): nothing for a script
 * without flags (its commands are checked one by one), the write refusals
 * unless no-writes, OOM too unless allow-oom. */
static int flags_store_checks(int flags, int compat)
{
    if (compat || (flags & SCRIPT_FLAG_NO_WRITES)) return 0;
    return STORE_CHECK_WRITE | (flags & SCRIPT_FLAG_ALLOW_OOM ? 0 : STORE_CHECK_OOM);
}

/* EVAL's argument checks, in Redis's order: the script to run, or NULL
 * with the error text in err; *checks as flags_store_checks once the
 * script is known. */
static const script *eval_prepare(const command_def *cmd, int argc, char **argv, size_t *argvlen, int *numkeys,
                                  int *ro, int *checks, char *err, size_t errlen)
{
    int by_sha = !strncmp(cmd->name, "evalsha", 7);
    *ro = strstr(cmd->name, "_ro") != NULL;
    if (!parse_numkeys(argc, argv, argvlen, "ERR value is not an integer or out of range", numkeys, err, errlen))
        return NULL;
    const script *s;
    if (by_sha) {
        s = script_engine_find(engine, argv[1], argvlen[1]);
        if (!s) {
            snprintf(err, errlen, "NOSCRIPT No matching script. Please use EVAL.");
            return NULL;
        }
    } else {
        s = script_engine_load(engine, argv[1], argvlen[1], err, errlen);
        if (!s) return NULL;
    }
    int flags = script_flags(s);
    *checks = flags_store_checks(flags, flags & SCRIPT_FLAG_EVAL_COMPAT);
    if (*ro && !(flags & SCRIPT_FLAG_EVAL_COMPAT) && !(flags & SCRIPT_FLAG_NO_WRITES)) {
        snprintf(err, errlen, "ERR Can not execute a script with write flag using *_ro command.");
        return NULL;
    }
    return s;
}

static int is_fcall(const command_def *cmd) { return !strncmp(cmd->name, "fcall", 5); }

int scripting_may_write(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (strstr(cmd->name, "_ro")) return 0;
    if (argc < 2) return 1;
    int flags;
    if (is_fcall(cmd)) {
        const script_function *f = script_function_find(engine, argv[1], argvlen[1]);
        if (!f) return 1;
        flags = script_function_flags(f);
    } else {
        char err[256];
        /* EVAL's body is loaded as running it would (Redis reads its shebang). */
        const script *s = !strncmp(cmd->name, "evalsha", 7)
                              ? script_engine_find(engine, argv[1], argvlen[1])
                              : script_engine_load(engine, argv[1], argvlen[1], err, sizeof(err));
        if (!s) return 1;
        flags = script_flags(s);
        if (flags & SCRIPT_FLAG_EVAL_COMPAT) return 1;
    }
    return !(flags & SCRIPT_FLAG_NO_WRITES);
}

/* lua-script-pipelining: a script whose earlier runs all kept to their
 * declared keys may run while its client's next commands are read. Its keys
 * are locked in request order, so commands on the same keys still run after
 * it; commands on other keys may run before it ends. */
static int may_pipeline(const script_call *sc) { return config.lua_script_pipelining && sc->keeps_to_keys; }

/* FCALL's argument checks, in Redis's order: the function to run, or NULL
 * with the error text in err. */
static const script_function *fcall_prepare(const command_def *cmd, int argc, char **argv, size_t *argvlen,
                                            int *numkeys, int *ro, int *checks, char *err, size_t errlen)
{
    *ro = !strcmp(cmd->name, "fcall_ro");
    const script_function *f = script_function_find(engine, argv[1], argvlen[1]);
    if (!f) {
        snprintf(err, errlen, "ERR Function not found");
        return NULL;
    }
    if (!parse_numkeys(argc, argv, argvlen, "ERR Bad number of keys provided", numkeys, err, errlen)) return NULL;
    *checks = flags_store_checks(script_function_flags(f), 0);
    if (*ro && !(script_function_flags(f) & SCRIPT_FLAG_NO_WRITES)) {
        snprintf(err, errlen, "ERR Can not execute a script with write flag using *_ro command.");
        return NULL;
    }
    return f;
}

/* The call an EVAL* or FCALL* line asks for, or NULL with err; *checks:
 * what of the server's state to ask before running it (or, with the *_RO
 * refusal, before giving that error). */
static script_call *call_prepare_checked(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                                         int *checks, char *err, size_t errlen)
{
    int n, ro;
    const script *s = NULL;
    const script_function *f = NULL;
    *checks = 0;
    if (is_fcall(cmd)) f = fcall_prepare(cmd, argc, argv, argvlen, &n, &ro, checks, err, errlen);
    else s = eval_prepare(cmd, argc, argv, argvlen, &n, &ro, checks, err, errlen);
    if (!s && !f) return NULL;
    return call_new(c, s, f, n, argv + 3, argvlen + 3, argc - 3 - n, argv + 3 + n, argvlen + 3 + n,
                    ro ? SCRIPT_RUN_RO : 0);
}

static script_call *call_prepare(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                                 char *err, size_t errlen)
{
    int checks;
    return call_prepare_checked(c, cmd, argc, argv, argvlen, &checks, err, errlen);
}

/* EVAL from a client in SCRIPT DEBUG mode: a debugging session. */
static void debug_eval(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    char err[1024];
    if (!strncmp(cmd->name, "evalsha", 7)) {
        reply_error(client_reply_buffer(c), "ERR Please use EVAL instead of EVALSHA for debugging");
        return;
    }
    int mode = c->lua_debug;
    c->lua_debug = 0; /* the session ends with the connection */
    script_call *sc = call_prepare(c, cmd, argc, argv, argvlen, err, sizeof(err));
    if (!sc) {
        /* Redis has started the session already: it ends at once. */
        struct evbuffer *out = client_reply_buffer(c);
        static const char end[] = "*1\r\n+<endsession>\r\n";
        evbuffer_add(out, end, sizeof(end) - 1);
        reply_error(out, err);
        client_close_after_reply(c);
        return;
    }
    if (mode == 1) {
        sc->priv = ldb_private_new(sc->client_id);
        if (!sc->priv) {
            /* As Redis when it cannot fork: refused, and debugging is off. */
            reply_errorf(client_reply_buffer(c),
                         "ERR can't run EVAL in debugging mode: lua-debug-sessions-max (%lld) sessions are running",
                         config.lua_debug_sessions_max);
            sc->finished = 1;
            call_maybe_free(sc);
            return;
        }
    }
    sc->debug = 1;
    sc->run_flags |= SCRIPT_RUN_DEBUG;
    sc->slot = client_slot_add(c);
    c->script = (struct script_call *)sc;
    c->debugging = (struct script_call *)sc;
    client_block(c);
    if (mode == 1) {
        /* No locks: it works on its own copies and keeps nobody waiting. */
        log_warning("Lua debugging session started on private copies (client id=%llu)",
                    (unsigned long long)sc->client_id);
        call_start(sc);
        return;
    }
    log_warning("Redis synchronous debugging eval session started");
    call_acquire(sc, 1);
}

static void call_store_checked(void *ctx, const char *error, int oom)
{
    (void)oom;
    script_call *sc = ctx;
    sc->inflight--;
    if (!stopping && !sc->finished) {
        sc->depth++;
        if (error) call_finish_error(sc, error);
        else call_acquire(sc, 1);
        sc->depth--;
    }
    call_maybe_free(sc);
}

/* An error given after the store was asked whether it takes writes (whose
 * refusal comes first, as Redis checks the server before the command). */
typedef struct refused_later {
    reply_slot *slot;
    char err[];
} refused_later;

static void refused_checked(void *ctx, const char *error, int oom)
{
    (void)oom;
    refused_later *rl = ctx;
    reply_slot *s = rl->slot;
    reply_error(s->buf, error ? error : rl->err);
    client_release_reply(s);
    free(rl);
}

static void refused_after_checks(client *c, int checks, const char *err)
{
    if (store_refusal_wanted(checks)) {
        size_t len = strlen(err);
        refused_later *rl = malloc(sizeof(*rl) + len + 1);
        if (!rl) abort();
        memcpy(rl->err, err, len + 1);
        if (store_refusal_check(checks, c->db, NULL, 0, refused_checked, rl)) {
            rl->slot = client_hold_reply(c);
            return;
        }
        free(rl);
    }
    reply_error(client_reply_buffer(c), err);
}

void cmd_eval(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    char err[1024];
    if (c->lua_debug && !is_fcall(cmd)) {
        debug_eval(c, cmd, argc, argv, argvlen);
        return;
    }
    int checks;
    script_call *sc = call_prepare_checked(c, cmd, argc, argv, argvlen, &checks, err, sizeof(err));
    if (!sc) {
        refused_after_checks(c, checks, err);
        return;
    }
    sc->slot = client_slot_add(c);
    if (store_refusal_check(checks, sc->start_db, sc->numkeys ? sc->keys[0] : NULL,
                            sc->numkeys ? sc->keylens[0] : 0, call_store_checked, sc)) {
        /* The store may be refusing writes: asked first, then run. */
        sc->inflight++;
        c->script = (struct script_call *)sc;
        client_block(c);
        return;
    }
    if (c->scripts_pipelined < MAX_PIPELINED_PER_CLIENT && pipelined_running < MAX_PIPELINED_TOTAL &&
        may_pipeline(sc)) {
        /* The client goes on with its next commands while this one runs,
         * unless it has to wait for its keys. */
        sc->pipelined = 1;
        c->scripts_pipelined++;
        pipelined_running++;
        stat_pipelined++;
        sc->depth++;
        call_acquire(sc, 1);
        if (!sc->started && !sc->finished) {
            sc->pipelined = 0;
            c->scripts_pipelined--;
            pipelined_running--;
            c->script = (struct script_call *)sc;
            client_block(c);
        }
        sc->depth--;
        call_maybe_free(sc);
        return;
    }
    c->script = (struct script_call *)sc;
    client_block(c);
    call_acquire(sc, 1);
}

int scripting_is_eval(const command_def *cmd)
{
    /* SCRIPT DEBUG is queued in MULTI as Redis queues it; EXEC answers it here. */
    if (!strcmp(cmd->name, "script|debug")) return 1;
    return !strcmp(cmd->name, "eval") || !strcmp(cmd->name, "evalsha") || !strcmp(cmd->name, "eval_ro") ||
           !strcmp(cmd->name, "evalsha_ro") || !strcmp(cmd->name, "fcall") || !strcmp(cmd->name, "fcall_ro");
}

int scripting_eval_keys(const command_def *cmd, int argc, char **argv, size_t *argvlen, int *first)
{
    long long n;
    if (argc < 3 || !string_to_ll(argv[2], argvlen[2], &n) || n < 0 || n > argc - 3) return 0;
    *first = 3;
    return (int)n;
}

void scripting_eval_in_exec(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                            struct lock_set *held, int db, scripting_done_fn *done, void *ctx)
{
    char err[1024];
    if (!strcmp(cmd->name, "script|debug")) {
        /* EXEC's reply is under way: Redis sees pending replies. */
        static const char e[] = "-ERR SCRIPT DEBUG must be called outside a pipeline\r\n";
        stats_error_reply(e + 1, sizeof(e) - 2);
        done(ctx, e, sizeof(e) - 1);
        return;
    }
    script_call *sc = call_prepare(c, cmd, argc, argv, argvlen, err, sizeof(err));
    if (!sc) {
        struct evbuffer *b = evbuffer_new();
        reply_error(b, err);
        size_t len = evbuffer_get_length(b);
        done(ctx, (const char *)evbuffer_pullup(b, -1), len);
        evbuffer_free(b);
        return;
    }
    /* Inside EXEC: the transaction holds the locks and gets the reply. */
    sc->c = NULL;
    sc->start_db = sc->db = db;
    sc->locks = held;
    sc->borrowed_locks = 1;
    sc->done_fn = done;
    sc->done_ctx = ctx;
    call_start(sc);
}

static const char *const script_help[] = {
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
    NULL,
};

#define BUSY_EVAL_ERROR "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
#define BUSY_FUNCTION_ERROR "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."

/* A script that has not written may be killed; one that has, only when its
 * writes will be undone (lua-rollback-on-error, flags=atomic). */
static int call_killable(const script_call *sc) { return !sc->dirty || (sc->rollback && call_undoable(sc)); }

/* SCRIPT KILL (is_eval) kills busy EVAL scripts, FUNCTION KILL busy FCALLs;
 * as in Redis, each refuses when only the other kind is busy. The proxy runs
 * many scripts at once: every busy one that has run no write command is
 * killed, and -UNKILLABLE comes only when each busy one has. */
void scripting_kill(client *c, int is_eval)
{
    struct evbuffer *out = client_reply_buffer(c);
    int busy = 0, other = 0, killable = 0;
    for (script_call *sc = calls; sc; sc = sc->next) {
        if (!sc->busy || sc->finished || !sc->run) continue;
        if ((sc->fname == NULL) != is_eval) {
            other++;
            continue;
        }
        busy++;
        killable += call_killable(sc);
    }
    if (!busy && other) {
        reply_error(out, is_eval ? BUSY_FUNCTION_ERROR : BUSY_EVAL_ERROR);
        return;
    }
    if (!busy) {
        reply_error(out, "NOTBUSY No scripts in execution right now.");
        return;
    }
    if (!killable) {
        reply_error(out, "UNKILLABLE Sorry the script already executed write commands against the dataset. You can "
                         "either wait the script termination or kill the server in a hard way using the SHUTDOWN "
                         "NOSAVE command.");
        return;
    }
    reply_ok(out);
    script_call *sc = calls;
    while (sc) {
        /* Killing ends the run and may free sc: keep it alive to step on. */
        sc->depth++;
        if (sc->busy && !sc->finished && sc->run && call_killable(sc) && (sc->fname == NULL) == is_eval) {
            stat_killed++;
            script_run_kill(sc->run, NULL);
        }
        script_call *next = sc->next;
        sc->depth--;
        call_maybe_free(sc);
        sc = next;
    }
}

void cmd_script(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *sub = cmd->name + 7; /* "script|" */
    struct evbuffer *out;
    if (!strcmp(sub, "load")) {
        char err[1024];
        const script *s = script_engine_load(engine, argv[2], argvlen[2], err, sizeof(err));
        out = client_reply_buffer(c);
        if (!s) reply_error(out, err);
        else reply_bulk(out, script_sha(s), 40);
    } else if (!strcmp(sub, "exists")) {
        out = client_reply_buffer(c);
        reply_array(out, argc - 2);
        for (int i = 2; i < argc; i++) reply_integer(out, script_engine_find(engine, argv[i], argvlen[i]) != NULL);
    } else if (!strcmp(sub, "flush")) {
        out = client_reply_buffer(c);
        if (argc > 3 || (argc == 3 && strcasecmp(argv[2], "sync") && strcasecmp(argv[2], "async"))) {
            reply_error(out, "ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            return;
        }
        script_engine_flush(engine);
        reply_ok(out);
    } else if (!strcmp(sub, "kill")) {
        scripting_kill(c, 1);
    } else if (!strcmp(sub, "help")) {
        out = client_reply_buffer(c);
        long long n = 0;
        while (script_help[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_status(out, script_help[i]);
    } else if (!strcmp(sub, "debug")) {
        int pending = c->slots_head != NULL || evbuffer_get_length(c->out) > 0;
        out = client_reply_buffer(c);
        if (pending) {
            reply_error(out, "ERR SCRIPT DEBUG must be called outside a pipeline");
        } else if (!strcasecmp(argv[2], "no")) {
            c->lua_debug = 0;
            reply_ok(out);
        } else if (!strcasecmp(argv[2], "sync")) {
            c->lua_debug = 2;
            reply_ok(out);
        } else if (!strcasecmp(argv[2], "yes")) {
            c->lua_debug = 1;
            reply_ok(out);
        } else {
            reply_error(out, "ERR Use SCRIPT DEBUG YES/SYNC/NO");
        }
    } else {
        reply_errorf(client_reply_buffer(c), "ERR unknown subcommand '%s'. Try SCRIPT HELP.", argv[1]);
    }
}

script_engine *scripting_engine(void) { return engine; }

int scripting_function_stats(struct evbuffer *out)
{
    script_call *busy_fn = NULL;
    int busy_eval = 0;
    for (script_call *sc = calls; sc; sc = sc->next) {
        if (!sc->busy || sc->finished || !sc->run) continue;
        if (sc->fname && !busy_fn) busy_fn = sc;
        if (!sc->fname) busy_eval = 1;
    }
    if (busy_eval && !busy_fn) {
        reply_error(out, BUSY_EVAL_ERROR);
        return -1;
    }
    reply_array(out, 4);
    reply_bulk_cstr(out, "running_script");
    if (!busy_fn) {
        reply_null_bulk(out);
    } else {
        script_call *sc = busy_fn;
        reply_array(out, 6);
        reply_bulk_cstr(out, "name");
        reply_bulk_cstr(out, sc->fname);
        reply_bulk_cstr(out, "command");
        reply_array(out, 3 + sc->numkeys + sc->nargs);
        reply_bulk_cstr(out, (sc->run_flags & SCRIPT_RUN_RO) ? "fcall_ro" : "fcall");
        reply_bulk_cstr(out, sc->fname);
        char num[24];
        reply_bulk(out, num, (size_t)snprintf(num, sizeof(num), "%d", sc->numkeys));
        for (int i = 0; i < sc->numkeys; i++) reply_bulk(out, sc->keys[i], sc->keylens[i]);
        for (int i = 0; i < sc->nargs; i++) reply_bulk(out, sc->args[i], sc->arglens[i]);
        reply_bulk_cstr(out, "duration_ms");
        reply_integer(out, (long long)(clock_ms() - sc->start_ms));
    }
    reply_bulk_cstr(out, "engines");
    reply_array(out, 2);
    reply_bulk_cstr(out, "LUA");
    reply_array(out, 4);
    reply_bulk_cstr(out, "libraries_count");
    reply_integer(out, (long long)script_library_count(engine));
    reply_bulk_cstr(out, "functions_count");
    reply_integer(out, (long long)script_function_count(engine));
    return 0;
}

/* ---- glue ---------------------------------------------------------------------------- */

void scripting_client_gone(client *c)
{
    /* Its scripts run (or carry on) as Redis would run a command it has
     * read; only their replies are dropped. */
    c->script = NULL;
    c->debugging = NULL;
    script_call *session = NULL;
    for (script_call *sc = calls; sc; sc = sc->next) {
        if (sc->c != c) continue;
        sc->c = NULL;
        if (sc->debug && sc->run && !sc->finished) session = sc; /* a client has one */
    }
    if (session) {
        /* As Redis when its debugging client goes: the script runs on to
         * its end without stopping, and its locks go with it. */
        session->depth++;
        script_run_debug_detach(session->run);
        session->depth--;
        call_maybe_free(session);
    }
}

unsigned scripting_busy_count(void) { return busy_count; }

void scripting_apply_config(void)
{
    if (!engine) return;
    script_engine_set_memory_limit(engine, (size_t)config.lua_memory_limit);
    script_engine_set_time_slice(engine, (unsigned)config.lua_time_slice_us);
    long long t = config.busy_reply_threshold;
    script_engine_set_debug_timeout(engine, t > 0 && t < 4000000000LL ? (unsigned)t : 0);
}

void scripting_info(struct evbuffer *out)
{
    lock_stats st;
    locks_get_stats(&st);
    evbuffer_add_printf(out,
                        "# Scripting\r\n" /* the cache and the Lua heap: INFO memory */
                        "scripts_running:%zu\r\n"
                        "scripts_busy:%u\r\n"
                        "scripts_finished:%llu\r\n"
                        "scripts_rerun:%llu\r\n"
                        "scripts_killed:%llu\r\n"
                        "scripts_deadlock_errors:%llu\r\n"
                        "scripts_pipelined:%llu\r\n"
                        "scripts_undone:%llu\r\n"
                        "scripts_undo_failed:%llu\r\n"
                        "scripts_rerun_after_undo:%llu\r\n"
                        "journal_bytes:%zu\r\n"
                        "\r\n# Locks\r\n"
                        "lock_units:%lu\r\n"
                        "lock_sets_holding:%lu\r\n"
                        "lock_sets_waiting:%lu\r\n"
                        "lock_granted_immediately:%llu\r\n"
                        "lock_waited:%llu\r\n"
                        "lock_busy_refusals:%llu\r\n"
                        "lock_deadlocks:%llu\r\n",
                        script_engine_running(engine), busy_count,
                        stat_scripts_run, stat_reruns, stat_killed, stat_deadlock_errors, stat_pipelined,
                        stat_undone, stat_undo_failed, stat_rerun_after_undo, journal_bytes_now(), st.units, st.sets_holding,
                        st.sets_waiting, st.granted_immediately, st.waited, st.busy_refusals, st.deadlocks);
}

int scripting_init(void)
{
    engine = script_engine_new(&host, NULL);
    if (!engine) return -1;
    runq_ev = evtimer_new(server.base, runq_cb, NULL);
    if (!runq_ev) return -1;
    scripting_apply_config();
    return 0;
}

void scripting_begin_shutdown(void) { stopping = 1; }

unsigned long scripting_calls_pending(void)
{
    unsigned long n = 0;
    for (script_call *sc = calls; sc; sc = sc->next) n++;
    return n;
}

void scripting_shutdown(void)
{
    stopping = 1;
    script_engine_free(engine);
    engine = NULL;
    if (runq_ev) event_free(runq_ev);
    runq_ev = NULL;
    runq_head = runq_tail = NULL;
    while (calls) {
        script_call *sc = calls;
        calls = sc->next;
        if (sc->locks) lock_set_release(sc->locks);
        if (sc->slot) client_slot_done(sc->slot); /* its client is gone: the slot is freed */
        slowlog_args_free(sc->call_slow);
        journal_free(sc->journal);
        forget_written_keys(sc);
        free(sc->final_reply);
        for (int i = 0; i < sc->nlearned; i++) free(sc->learned[i].key);
        free(sc->learned);
        free(sc->fname);
        free(sc); /* with its keys and arguments */
    }
    while (call_pool_n) free(call_pool[--call_pool_n]);
}
