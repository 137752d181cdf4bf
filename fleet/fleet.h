/* A fleet: several evalproxy processes in front of the same stores, one lock
 * domain. Keys map to Redis Cluster's 16384 slots; every slot has one owner
 * among the live members, and only the owner runs what touches it.
 *
 * Membership is kept by leases in the store itself: each member holds a seat
 * (a key with a TTL), renews it, and reads every seat to learn the others.
 * Every member computes the same owners from the same member set
 * (rendezvous hashing of ranges of slots over the members' ids).
 *
 * Timing (stated with the README): a member serves nothing past
 * `fence_at` = the send time of its last poll that both renewed its seat
 * and read the seats, plus the lease, less a margin for clock rates and the
 * store's expiry granularity. A member that joins serves only a full lease
 * after its seat is written, so every other member has either seen it (and
 * stopped serving its slots) or fenced itself. A member whose seat has
 * expired in the store has fenced itself before that moment, so its slots
 * are taken at once by the members that see it gone. */
#ifndef EVALPROXY_FLEET_H
#define EVALPROXY_FLEET_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct backend;

#define FLEET_SLOTS 16384
#define FLEET_MAX_MEMBERS 64
#define FLEET_ID_LEN 40

typedef struct fleet_options {
    const char *name;          /* fleet-name */
    const char *announce_host; /* where clients and members reach this one */
    int announce_port;
    long long lease_ms;
    /* Credentials for member-to-member connections ("user:pass@" or ""). */
    const char *peer_credentials;
    /* A member left the view: undo its unfinished runs where this member
     * now owns the slots (fleet_recover_member), done(ctx) after; the
     * slots wait until then. */
    void (*member_left)(const char *id, void (*done)(void *ctx), void *ctx);
} fleet_options;

typedef struct fleet_member {
    char id[FLEET_ID_LEN + 1];
    char host[256];
    int port;
    int seat;
    long long absent_since_ms; /* 0: in the last read of the seats */
} fleet_member;

/* Who runs a slot's commands now. */
enum {
    FLEET_SERVE = -1, /* this member */
    FLEET_WAIT = -2,  /* nobody yet: a handover or a lease in progress */
};

int fleet_start(struct event_base *base, struct backend *store, const fleet_options *o, char *err, size_t errlen);
void fleet_stop(void);
int fleet_enabled(void);

/* FLEET_SERVE, FLEET_WAIT or the index of the member that owns slot. */
int fleet_slot_route(int slot);
/* The owner in the current view (a member index, or -1 before any view),
 * serving or not. */
int fleet_slot_owner(int slot);
int fleet_member_count(void);
const fleet_member *fleet_member_at(int i);
int fleet_self(void); /* this member's index in the view, or -1 */
const char *fleet_self_id(void);
/* Counts view changes: a caller that saw one value may cache routes. */
unsigned long long fleet_epoch(void);
/* How long a command for a slot in FLEET_WAIT may wait (ms). */
long long fleet_wait_limit_ms(void);

/* The pooled connections to another member (a RESP backend), created on
 * first use; NULL when it cannot be made. */
struct backend *fleet_peer(int member);

/* ---- journal records of scripts (fleet/recovery.c) ----
 * A script run that writes keeps the pre-images of the keys it writes as
 * records in the store, each before the write it covers:
 * `evalproxy-fleet:{name}:run:<member id>:<place>:<n>`, n = 0, 1, ...; a
 * member has FLEET_RUN_PLACES places, one per run in flight. Record 0 is the
 * run's head: deleting it commits the run. When a member dies, whoever
 * takes its slots (and whoever held locks for its runs) puts back what its
 * unfinished runs recorded before serving those keys again. */
#define FLEET_RUN_PLACES 256
typedef struct fleet_run {
    int place; /* -1: none (the run keeps no records) */
    unsigned long long token;
    char id[FLEET_ID_LEN + 1];
    char tag[FLEET_ID_LEN + 48]; /* "<id>:<place>:<token>", as FLEET LOCK carries it */
} fleet_run;
/* A free place for a run (r->place -1 when all are taken). */
void fleet_run_begin(fleet_run *r);
void fleet_run_end(fleet_run *r);
/* The key of record n of r (length; buf of at least 400 bytes). */
size_t fleet_run_record_key(const fleet_run *r, int n, char *buf, size_t len);
/* Whether this member still serves as the member that began r: a fenced
 * member's runs write nothing more, and leave their undo to the fleet. */
int fleet_run_may_write(const fleet_run *r);
struct backend *fleet_store(void);
/* Parses a FLEET LOCK run tag. 0, or -1 when it is not one. */
int fleet_run_parse_tag(const char *tag, size_t len, fleet_run *r);
/* Puts back what run r recorded for keys in the slots this member owns,
 * newest first, and marks those records done; then done(ctx). It starts
 * after_ms from now. */
void fleet_recover_run(const fleet_run *r, long long after_ms, void (*done)(void *ctx), void *ctx);
/* The lease (fleet-lease-ms). */
long long fleet_lease_ms(void);
/* What fleet_options.member_left is in a running proxy. */
void fleet_recover_member(const char *id, void (*done)(void *ctx), void *ctx);
/* Drops the recoveries going on (at shutdown, before fleet_stop). */
void fleet_recovery_stop(void);
/* INFO lines of the recoveries. */
void fleet_recovery_info(struct evbuffer *out);

void fleet_count_forwarded(void);
void fleet_count_redirected(void);
void fleet_info(struct evbuffer *out);

#endif
