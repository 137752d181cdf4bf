/* A fleet's members answer the Redis Cluster commands as a Redis Cluster of
 * proxies would, so that cluster-aware clients learn the slot owners and go
 * straight there: every member is a master without replicas, and the slot
 * ranges are those the routing uses (fleet_slot_owner), so a client's map
 * and the members' MOVED replies agree. Replies are Redis 7.0's, in RESP2;
 * the client's RESP3 conversion is the core's, by the commands' shapes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>

#include "fleet/fleet.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "util/cluster_slot.h"
#include "proxy/commands/cluster_commands.h"

/* Consecutive slots with one owner. */
typedef struct slot_range {
    int start, end, owner;
} slot_range;

/* The owned ranges in slot order; slots nobody owns are left out. */
static int owned_ranges(slot_range *out)
{
    int n = 0;
    for (int s = 0; s < FLEET_SLOTS; s++) {
        int o = fleet_slot_owner(s);
        if (o < 0 || !fleet_member_at(o)) continue;
        if (n && out[n - 1].owner == o && out[n - 1].end == s - 1) out[n - 1].end = s;
        else out[n++] = (slot_range){s, s, o};
    }
    return n;
}

/* A member that dropped out of the seats is still in the view (owning its
 * slots, served by nobody) until its lease has surely ended. */
static int member_failing(const fleet_member *m) { return m->absent_since_ms != 0; }

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- CLUSTER SLOTS ------------------------------------------------------------- */

static void reply_slots(struct evbuffer *out)
{
    static slot_range r[FLEET_SLOTS];
    int n = owned_ranges(r);
    reply_array(out, n);
    for (int i = 0; i < n; i++) {
        const fleet_member *m = fleet_member_at(r[i].owner);
        reply_array(out, 3);
        reply_integer(out, r[i].start);
        reply_integer(out, r[i].end);
        /* Redis 7.0: ip, port, id and a map of the other endpoints (none). */
        reply_array(out, 4);
        reply_bulk_cstr(out, m->host);
        reply_integer(out, m->port);
        reply_bulk(out, m->id, FLEET_ID_LEN);
        reply_array(out, 0);
    }
}

/* ---- CLUSTER SHARDS ------------------------------------------------------------- */

static void reply_shards(struct evbuffer *out)
{
    static slot_range r[FLEET_SLOTS];
    int n = owned_ranges(r);
    int members = fleet_member_count();
    reply_array(out, members);
    for (int k = 0; k < members; k++) {
        const fleet_member *m = fleet_member_at(k);
        int mine = 0;
        for (int i = 0; i < n; i++) mine += r[i].owner == k;
        reply_array(out, 4);
        reply_bulk_cstr(out, "slots");
        reply_array(out, 2 * mine);
        for (int i = 0; i < n; i++) {
            if (r[i].owner != k) continue;
            reply_integer(out, r[i].start);
            reply_integer(out, r[i].end);
        }
        reply_bulk_cstr(out, "nodes");
        reply_array(out, 1);
        reply_array(out, 14);
        reply_bulk_cstr(out, "id");
        reply_bulk(out, m->id, FLEET_ID_LEN);
        reply_bulk_cstr(out, "port");
        reply_integer(out, m->port);
        reply_bulk_cstr(out, "ip");
        reply_bulk_cstr(out, m->host);
        reply_bulk_cstr(out, "endpoint");
        reply_bulk_cstr(out, m->host);
        reply_bulk_cstr(out, "role");
        reply_bulk_cstr(out, "master");
        reply_bulk_cstr(out, "replication-offset");
        reply_integer(out, 0);
        reply_bulk_cstr(out, "health");
        reply_bulk_cstr(out, member_failing(m) ? "failed" : "online");
    }
}

/* ---- CLUSTER NODES ---------------------------------------------------------------- */

static void reply_nodes(struct evbuffer *out)
{
    static slot_range r[FLEET_SLOTS];
    int n = owned_ranges(r);
    struct evbuffer *text = evbuffer_new();
    if (!text) return;
    long long now = wall_ms();
    int self = fleet_self();
    for (int k = 0; k < fleet_member_count(); k++) {
        const fleet_member *m = fleet_member_at(k);
        int failing = member_failing(m);
        /* No cluster bus: the bus port is 0. Members learn each other from
         * the store, not by pings, so a live peer's last pong is now. */
        evbuffer_add_printf(text, "%s %s:%d@0 %s%s - 0 %lld %llu %s", m->id, m->host, m->port,
                            k == self ? "myself,master" : "master", failing ? ",fail" : "",
                            failing ? 0 : now, fleet_epoch(), failing ? "disconnected" : "connected");
        for (int i = 0; i < n; i++) {
            if (r[i].owner != k) continue;
            if (r[i].start == r[i].end) evbuffer_add_printf(text, " %d", r[i].start);
            else evbuffer_add_printf(text, " %d-%d", r[i].start, r[i].end);
        }
        evbuffer_add(text, "\n", 1);
    }
    size_t len = evbuffer_get_length(text);
    /* A fenced member knows no members: an empty text. */
    reply_bulk(out, len ? (const char *)evbuffer_pullup(text, (ssize_t)len) : "", len);
    evbuffer_free(text);
}

/* ---- CLUSTER INFO ------------------------------------------------------------------- */

static void reply_info(struct evbuffer *out)
{
    static slot_range r[FLEET_SLOTS];
    int n = owned_ranges(r);
    int assigned = 0, failing = 0, size = 0;
    for (int i = 0; i < n; i++) {
        int slots = r[i].end - r[i].start + 1;
        assigned += slots;
        if (member_failing(fleet_member_at(r[i].owner))) failing += slots;
    }
    for (int k = 0; k < fleet_member_count(); k++) {
        int owns = 0;
        for (int i = 0; i < n && !owns; i++) owns = r[i].owner == k;
        size += owns;
    }
    unsigned long long epoch = fleet_epoch();
    char text[1024];
    /* The slots of a member gone from the seats wait for its lease to end:
     * Redis's "pfail" (suspected, not yet failed over). Redis prints the
     * bus message counters by type only when non-zero; a fleet has no bus. */
    int len = snprintf(text, sizeof(text),
                       "cluster_state:%s\r\n"
                       "cluster_slots_assigned:%d\r\n"
                       "cluster_slots_ok:%d\r\n"
                       "cluster_slots_pfail:%d\r\n"
                       "cluster_slots_fail:0\r\n"
                       "cluster_known_nodes:%d\r\n"
                       "cluster_size:%d\r\n"
                       "cluster_current_epoch:%llu\r\n"
                       "cluster_my_epoch:%llu\r\n"
                       "cluster_stats_messages_sent:0\r\n"
                       "cluster_stats_messages_received:0\r\n"
                       "total_cluster_links_buffer_limit_exceeded:0\r\n",
                       assigned == FLEET_SLOTS ? "ok" : "fail", assigned, assigned - failing, failing,
                       fleet_member_count(), size, epoch, epoch);
    reply_bulk(out, text, (size_t)len);
}

/* ---- the commands ------------------------------------------------------------------------ */

void cmd_cluster(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!fleet_enabled()) {
        dispatch_unregistered(c, cmd, argc, argv, argvlen);
        return;
    }
    struct evbuffer *out = client_reply_buffer(c);
    const char *sub = strchr(cmd->name, '|');
    sub = sub ? sub + 1 : "";
    if (!strcmp(sub, "slots")) reply_slots(out);
    else if (!strcmp(sub, "shards")) reply_shards(out);
    else if (!strcmp(sub, "nodes")) reply_nodes(out);
    else if (!strcmp(sub, "info")) reply_info(out);
    else if (!strcmp(sub, "myid")) reply_bulk(out, fleet_self_id(), FLEET_ID_LEN);
    else if (!strcmp(sub, "keyslot")) reply_integer(out, cluster_key_slot(argv[2], argvlen[2]));
    else if (!strcmp(sub, "countkeysinslot") || !strcmp(sub, "getkeysinslot"))
        reply_errorf(out,
                     "ERR CLUSTER %s is not supported by an evalproxy fleet: the store does not keep its "
                     "keys by slot",
                     !strcmp(sub, "getkeysinslot") ? "GETKEYSINSLOT" : "COUNTKEYSINSLOT");
    else dispatch_unregistered(c, cmd, argc, argv, argvlen); /* the store's administration, as before */
}

/* READONLY, READWRITE, ASKING: every member is a master that serves the
 * slots it owns, so none of them changes what a connection may run. */
void cmd_cluster_mode(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!fleet_enabled()) {
        dispatch_unregistered(c, cmd, argc, argv, argvlen);
        return;
    }
    reply_ok(client_reply_buffer(c));
}
