/* Key locks: the promise that no plain command and no other script going
 * through the proxy sees a script's keys half done.
 *
 * A lock unit is (db, name): name is the key's {hash tag} when it has a
 * non-empty one, else the whole key. One more unit stands for the whole
 * keyspace: commands such as FLUSHALL or KEYS hold it fully; every keyed
 * request holds it as an intent, so the two kinds exclude each other by mode.
 *
 * A lock set is one request's units, enqueued on all of them in one step and
 * granted when, on each unit, it is compatible with the holders and nobody is
 * queued ahead of it (strict FIFO). A request only ever waits for earlier
 * ones, so declared-key locking cannot deadlock. Scripts may add undeclared
 * keys while they run (lock_set_extend); those waits are checked for cycles. */
#ifndef EVALPROXY_LOCKS_H
#define EVALPROXY_LOCKS_H

#include <stddef.h>

struct event_base;

enum lock_mode {
    LOCK_PLAIN_READ = 0,
    LOCK_PLAIN_WRITE = 1,
    LOCK_SCRIPT_RO = 2,   /* shares with plain reads and other read-only scripts */
    LOCK_SCRIPT_EXCL = 3, /* conflicts with everything */
    LOCK_MODES = 4,
};

enum lock_result {
    LOCK_GRANTED = 0,  /* held now; the callback will not be called for this step */
    LOCK_WAITING = 1,  /* queued; the callback runs from the event loop once granted */
    LOCK_BUSY = 2,     /* would wait behind a script past busy-reply-threshold */
    LOCK_DEADLOCK = 3, /* extend: waiting would close a cycle and the requester must give up */
};

typedef struct lock_set lock_set;
typedef void lock_granted_fn(lock_set *ls, void *ctx);
/* Asked to abort a script to break a cycle: the owner must at least stop
 * waiting (lock_set_cancel_wait, or release everything) before returning; it
 * may keep the units it holds while it undoes its writes, and release them
 * afterwards. */
typedef void lock_abort_fn(lock_set *ls, void *ctx);

void locks_init(struct event_base *base);
void locks_shutdown(void);

lock_set *lock_set_new(int mode, lock_granted_fn *fn, void *ctx);
void lock_set_add_key(lock_set *ls, int db, const char *key, size_t len);
void lock_set_add_keyspace(lock_set *ls); /* the whole keyspace, fully */
/* Enqueue on every unit at once (plus the keyspace intent). With
 * refuse_if_busy, LOCK_BUSY is returned instead of waiting behind a busy
 * script (and nothing is held or queued). */
int lock_set_acquire(lock_set *ls, int refuse_if_busy);
/* Changes who is told of the grant (a waiting set changing hands). */
void lock_set_retarget(lock_set *ls, lock_granted_fn *fn, void *ctx);
/* A fleet: a set this member takes for another one (FLEET LOCK); its
 * units are all taken here, whoever owns them in this member's view. */
void lock_set_local_only(lock_set *ls);
/* In a fleet: the script run (fleet_run's tag, kept by the caller while the
 * set is acquired) whose journal records cover this set's writes; members
 * holding units for it put back what it wrote there should it vanish. */
void lock_set_set_run(lock_set *ls, const char *tag);
/* Releases everything held, or cancels the wait, and frees the set. */
void lock_set_release(lock_set *ls);

/* Plain requests need no set while no script or transaction set exists
 * (and nobody watches by versions): locks_plain_free() says so. Such a
 * request is counted from sending to its answer; a script or transaction
 * set acquired meanwhile waits (LOCK_WAITING) until the count is back to 0. */
int locks_plain_free(void);
void locks_unlocked_begin(void);
void locks_unlocked_end(int wrote); /* wrote: it may have written */

/* For scripts. */
void lock_set_mark_script(lock_set *ls, lock_abort_fn *abort_fn);
/* Past busy-reply-threshold: LOCK_BUSY_EVAL or LOCK_BUSY_FUNCTION (which
 * decides the text of the BUSY error), or 0 when no longer busy. */
enum lock_busy_kind { LOCK_BUSY_EVAL = 1, LOCK_BUSY_FUNCTION = 2 };
void lock_set_set_busy(lock_set *ls, int busy);
/* After LOCK_BUSY: the kind of the busy holder that refused ls. */
int lock_set_busy_kind(const lock_set *ls);
/* The kind of the busy sets (LOCK_BUSY_EVAL when any is an EVAL), or 0. */
int locks_busy_kind(void);
void lock_set_set_written(lock_set *ls, int written); /* has made a write */
/* A plain write whose reply says it changed nothing: its release does not
 * count as a write for WATCH, as Redis touches only keys it modifies. */
void lock_set_set_unchanged(lock_set *ls);
/* Its writes can all be undone, so it may be aborted after writing. */
void lock_set_set_undoable(lock_set *ls, int undoable);
/* Its age (a sequence number: lower is older); in a cycle the youngest set
 * that may be aborted is. */
void lock_set_set_age(lock_set *ls, unsigned long long age);
/* Gives up the undeclared key the set waits for, keeping what it holds. */
void lock_set_cancel_wait(lock_set *ls);
int lock_set_holds(const lock_set *ls, int db, const char *key, size_t len);
/* Its release gives other members' units back as a vanished run's: they
 * put back what the run recorded first (a fenced member's runs). */
void lock_set_abandon(lock_set *ls);
/* Whether every unit of the set is held. */
int lock_set_granted(const lock_set *ls);
/* Adds an undeclared key to a granted set: LOCK_GRANTED, LOCK_WAITING (the
 * callback runs when granted) or LOCK_DEADLOCK. A cycle is broken by
 * aborting its youngest member that has not written or can undo its writes;
 * LOCK_DEADLOCK when that is the requester, or when no member can. */
int lock_set_extend(lock_set *ls, int db, const char *key, size_t len);
/* Keys (as unit names) of a set, to carry learned keys into a re-run. */
int lock_set_unit_count(const lock_set *ls);
/* Releases everything held and cancels any wait, but keeps the set
 * (for a script that is aborted and will be queued again). */
void lock_set_release_all(lock_set *ls);

/* WATCH without the store's help: a watched key's version changes whenever
 * a writer through the proxy releases a set naming that key (or anything
 * keyspace-wide).
 * While any key is watched, plain requests take sets (locks_plain_free is
 * 0); a watcher takes its versions only after acquiring an empty
 * LOCK_SCRIPT_RO set, which waits for the requests sent without one, so no
 * write it cannot see is still in flight. */
typedef struct lock_watch lock_watch;
#include <stdint.h>
lock_watch *lock_watch_begin(int db, const char *key, size_t len);
uint64_t lock_watch_version(const lock_watch *w);
/* The same without keyspace-wide writers, for a store that tells itself
 * which keys they changed (backend key tokens). */
uint64_t lock_watch_key_version(const lock_watch *w);
void lock_watch_end(lock_watch *w);

typedef struct lock_stats {
    unsigned long units;         /* units in the table */
    unsigned long sets_holding;  /* lock sets currently granted */
    unsigned long sets_waiting;  /* lock sets queued */
    unsigned long long granted_immediately, waited, busy_refusals, deadlocks, aborts;
} lock_stats;
void locks_get_stats(lock_stats *st);
/* The waits of granted sets: counts[i] waited at most lock_wait_bounds_us[i]
 * (and above the bound before), counts[LOCK_WAIT_BUCKETS] longer. */
#define LOCK_WAIT_BUCKETS 6
extern const unsigned long long lock_wait_bounds_us[LOCK_WAIT_BUCKETS];
void locks_wait_histogram(unsigned long long counts[LOCK_WAIT_BUCKETS + 1], unsigned long long *sum_us);

/* The unit name of a key: its {hash tag} if non-empty, else the key. */
void lock_unit_name(const char *key, size_t len, const char **name, size_t *name_len);

#endif
