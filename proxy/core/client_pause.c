#include "proxy/core/client_pause.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backends/backend.h"
#include "util/clock.h"

enum { PAUSE_OFF, PAUSE_WRITE, PAUSE_ALL };

static int pause_kind;
static long long pause_end_ms;
static struct event *pause_ev;
static int store_paused;          /* the store was asked to pause its writes */
static long long store_pause_due; /* a pause of the store waiting for its EXEC's end (its end), or 0 */

/* Waiting clients, oldest first. */
static client **waiting;
static size_t nwaiting, waiting_cap;

/* Milliseconds to end_ms, -1 once past (an end may lie far in the past:
 * no subtraction that could overflow). */
static long long ms_left(long long end_ms)
{
    long long now = clock_wall_ms();
    return end_ms < now ? -1 : end_ms - now;
}

/* A timer just past the end (so the end has passed when it fires). */
static void arm(long long left_ms)
{
    /* Far ends wait a day at a time (the callback arms again). */
    if (left_ms > 86400000LL) left_ms = 86400000LL;
    long long us = (left_ms < 0 ? 0 : left_ms) * 1000 + 1000;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    evtimer_add(pause_ev, &tv);
}

/* Every waiting client runs its command again (from the event loop, in the
 * order they came); one that still may not run waits again. */
static void resume_all(void)
{
    client **v = waiting;
    size_t n = nwaiting;
    waiting = NULL;
    nwaiting = waiting_cap = 0;
    for (size_t i = 0; i < n; i++) client_postponed_resume(v[i]);
    free(v);
}

static void pause_end_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (pause_kind == PAUSE_OFF) return;
    long long left = ms_left(pause_end_ms);
    if (left >= 0) {
        arm(left);
        return;
    }
    clients_unpause();
}

static backend *pausable_store(void)
{
    backend *b = server.backend;
    if (!b || !b->one_store || backend_is_memcached(b) || b->store_version < 60200) return NULL;
    return b;
}

static void store_send(backend *b, int argc, char **argv, size_t *argvlen)
{
    int conn = backend_pick(b, 0);
    if (conn >= 0) backend_send(b, conn, 0, argc, argv, argvlen, BACKEND_RAW, NULL, NULL);
}

static void store_pause(long long end_ms)
{
    backend *b = pausable_store();
    long long left = ms_left(end_ms);
    if (!b || left <= 0) return;
    char ms[24];
    int n = snprintf(ms, sizeof(ms), "%lld", left);
    char *argv[4] = {"CLIENT", "PAUSE", ms, "WRITE"};
    size_t lens[4] = {6, 5, (size_t)n, 5};
    store_send(b, 4, argv, lens);
    store_paused = 1;
}

void clients_pause_exec_done(void)
{
    if (!store_pause_due) return;
    long long end = store_pause_due;
    store_pause_due = 0;
    store_pause(end);
}

void clients_pause(long long end_ms, int all, int in_exec)
{
    /* The store would hold every command, the proxy's CLIENT UNPAUSE too:
     * a pause of all stays the proxy's. */
    if (!all) {
        if (in_exec) store_pause_due = end_ms > store_pause_due ? end_ms : store_pause_due;
        else store_pause(end_ms);
    }
    int kind = all ? PAUSE_ALL : PAUSE_WRITE;
    if (pause_kind != PAUSE_OFF) {
        if (pause_kind > kind) kind = pause_kind;
        if (pause_end_ms > end_ms) end_ms = pause_end_ms;
    }
    pause_kind = kind;
    pause_end_ms = end_ms;
    arm(ms_left(end_ms));
}

void clients_unpause(void)
{
    store_pause_due = 0;
    backend *b = pausable_store();
    if (store_paused && b) {
        char *argv[2] = {"CLIENT", "UNPAUSE"};
        size_t lens[2] = {6, 7};
        store_send(b, 2, argv, lens);
    }
    store_paused = 0;
    pause_kind = PAUSE_OFF;
    pause_end_ms = 0;
    if (pause_ev) evtimer_del(pause_ev);
    resume_all();
}

int clients_pause_holds(int may_write)
{
    if (pause_kind == PAUSE_OFF) return 0;
    /* Past its end, commands run; the timer wakes those waiting. */
    if (clock_wall_ms() > pause_end_ms) return 0;
    return pause_kind == PAUSE_ALL || may_write;
}

void client_pause_postpone(client *c)
{
    if (nwaiting == waiting_cap) {
        waiting_cap = waiting_cap ? waiting_cap * 2 : 16;
        waiting = realloc(waiting, sizeof(*waiting) * waiting_cap);
        if (!waiting) abort();
    }
    waiting[nwaiting++] = c;
    client_postpone(c);
}

unsigned clients_postponed(void) { return (unsigned)nwaiting; }

static void pause_client_gone(client *c)
{
    if (!c->postponed) return;
    for (size_t i = 0; i < nwaiting; i++)
        if (waiting[i] == c) {
            memmove(waiting + i, waiting + i + 1, sizeof(*waiting) * (nwaiting - i - 1));
            nwaiting--;
            break;
        }
    c->postponed = 0;
}

void client_pause_init(void)
{
    pause_ev = evtimer_new(server.base, pause_end_cb, NULL);
    if (!pause_ev) abort();
    client_add_close_hook(pause_client_gone);
}

void client_pause_shutdown(void)
{
    free(waiting);
    waiting = NULL;
    nwaiting = waiting_cap = 0;
    if (pause_ev) event_free(pause_ev);
    pause_ev = NULL;
}
