/* The undo journal of one script run: before the run's first write to a
 * key, what the key was (its image, read by the backend on the same
 * connection just ahead of the write); undo puts every journalled key back,
 * in reverse order, while the run still holds its locks. */
#ifndef EVALPROXY_JOURNAL_H
#define EVALPROXY_JOURNAL_H

#include <stddef.h>

struct backend;
typedef struct journal journal;

/* settled(ctx) runs after each capture is answered (success or not). */
journal *journal_new(void (*settled)(void *ctx), void *ctx);
void journal_free(journal *j);

/* Whether key (in db) is journalled already (or its capture is on its way). */
int journal_has(const journal *j, int db, const char *key, size_t len);
/* Queues the capture of key's image on conn, to be sent just before the
 * write. 0, or -1 when it could not be queued (the journal is then broken). */
int journal_capture(journal *j, struct backend *b, int conn, int db, unsigned long long session, const char *key,
                    size_t len);
/* A push of count elements onto the list key, which has no image in the
 * journal: undone by as many pops from the same end. Its index, for
 * journal_pushed_result once the push is answered (applied 1: it pushed;
 * 0: it failed, nothing to undo; -1: unknown, the store went away). */
int journal_pushed(journal *j, int db, const char *key, size_t len, int pushed_left, unsigned count);
void journal_pushed_result(journal *j, int idx, int applied);
/* Something was done that cannot be undone (PUBLISH, FLUSHALL...). */
void journal_break(journal *j);
/* Every write so far can be undone (once the captures are answered). */
int journal_complete(const journal *j);
int journal_empty(const journal *j);
/* Captures not answered yet. */
unsigned journal_pending(const journal *j);
/* The keys journalled, for an error that names what was written. */
size_t journal_count(const journal *j);
const char *journal_key(const journal *j, size_t i, size_t *len);

/* Undo: puts back every key in reverse order, retrying while the store is
 * unreachable for up to about wait_ms; done(ctx, ok) when finished (ok 0:
 * some key could not be put back). Only once captures are all answered. */
typedef void journal_done_fn(void *ctx, int ok);
void journal_undo(journal *j, struct backend *b, unsigned long long session, long long wait_ms, journal_done_fn *done,
                  void *ctx);

/* In a fleet, a run's journal is also kept in the store (fleet.h, "journal
 * records of scripts"), so that the fleet undoes the run should this member
 * die: each entry becomes a record before the write it covers. */
struct fleet_run;
void journal_set_durable(journal *j, const struct fleet_run *run);
int journal_durable(const journal *j);
/* Whether records of it are in the store (a head to delete). */
int journal_recorded(const journal *j);
/* Whether entries wait for their records (journal_persist). */
int journal_unrecorded(const journal *j);
/* Writes the records of the entries captured since the last call (only
 * once captures are all answered), on conn for session: 1 when some are on
 * their way and done(ctx, ok) follows, 0 when none was needed, -1 when none
 * could be sent (done is not called). */
int journal_persist(journal *j, int conn, unsigned long long session, journal_done_fn *done, void *ctx);
/* Whether a write sent right after journal_persist, on the same connection
 * and session, runs after the records in the store (one store): it need
 * not wait for their answers. */
int journal_records_ordered(const journal *j);
/* The run is over (its writes stay, or were undone): its records go, the
 * head first, which commits it. 1 when on its way (done follows, after
 * retries for up to about wait_ms), 0 when there were none. */
int journal_commit(journal *j, long long wait_ms, journal_done_fn *done, void *ctx);

/* Bytes held by every journal now, and runs undone. */
size_t journal_bytes_now(void);

#endif
