/* SLOWLOG and LATENCY's samples, kept by the proxy (the store never sees
 * EVAL, nor the time a command spends in the proxy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "proxy/core/command_table.h"
#include "proxy/core/config.h"
#include "proxy/core/reply.h"
#include "proxy/core/slowlog.h"
#include "util/block_cache.h"

#define SLOWLOG_MAX_ARGC 32
#define SLOWLOG_MAX_STRING 128

struct slowlog_args {
    int argc;
    char **argv; /* each NUL-terminated; lengths in argvlen */
    size_t *argvlen;
    size_t size; /* of the whole block */
};

/* A copy is made for every command answered later and freed at its reply,
 * a whole pipeline of them at a time: small ones come back from free lists. */
static block_cache copies = {.limit = 256u << 10};

typedef struct slowlog_entry {
    struct slowlog_entry *next; /* older */
    long long id;
    time_t time;
    unsigned long long usec;
    slowlog_args *args;
    char *addr, *name;
} slowlog_entry;

static slowlog_entry *newest;
static unsigned long entries;
static long long next_id;

static char *xmemdup(const char *p, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) abort();
    memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

/* Which arguments Redis 7.0 replaces by "(redacted)": AUTH's, HELLO's after
 * AUTH, MIGRATE's after AUTH / AUTH2. */
enum { REDACT_NONE, REDACT_AUTH, REDACT_HELLO, REDACT_MIGRATE };

/* Every command's arguments are copied for SLOWLOG: the commands that
 * redact are told apart by their table entries, found once. */
static int redact_kind(const command_def *cmd)
{
    static const command_def *auth, *hello, *migrate;
    if (!auth) {
        auth = command_lookup("auth", 4);
        hello = command_lookup("hello", 5);
        migrate = command_lookup("migrate", 7);
    }
    if (cmd == auth) return REDACT_AUTH;
    if (cmd == hello) return REDACT_HELLO;
    if (cmd == migrate) return REDACT_MIGRATE;
    return REDACT_NONE;
}

int slowlog_arg_redacted(const command_def *cmd, int argc, char **argv, int i)
{
    if (!cmd || i == 0) return 0;
    int kind = redact_kind(cmd);
    if (kind == REDACT_NONE) return 0;
    if (kind == REDACT_AUTH) return 1;
    if (kind == REDACT_HELLO) {
        for (int j = 2; j < argc && j < i; j++)
            if (!strcasecmp(argv[j], "auth")) return i == j + 1 || i == j + 2;
        return 0;
    }
    if (kind == REDACT_MIGRATE) {
        for (int j = 6; j < argc && j < i; j++) {
            if (!strcasecmp(argv[j], "auth")) return i == j + 1;
            if (!strcasecmp(argv[j], "auth2")) return i == j + 1 || i == j + 2;
            if (!strcasecmp(argv[j], "keys")) return 0;
        }
    }
    return 0;
}

/* The text argument i keeps: the argument (at most 128 bytes of it), or the
 * replacement Redis writes; *tail gets the "... (N more bytes)" suffix. */
static const char *kept_arg(const command_def *cmd, int argc, int n, char **argv, size_t *argvlen, int i,
                            size_t *len, char *tail, size_t taillen, size_t *tlen)
{
    *tlen = 0;
    if (n != argc && i == n - 1) {
        int k = snprintf(tail, taillen, "... (%d more arguments)", argc - n + 1);
        *len = 0;
        *tlen = (size_t)k;
        return "";
    }
    if (slowlog_arg_redacted(cmd, argc, argv, i)) {
        *len = 10;
        return "(redacted)";
    }
    if (argvlen[i] > SLOWLOG_MAX_STRING) {
        int k = snprintf(tail, taillen, "... (%lu more bytes)", (unsigned long)(argvlen[i] - SLOWLOG_MAX_STRING));
        *tlen = (size_t)k;
        *len = SLOWLOG_MAX_STRING;
        return argv[i];
    }
    *len = argvlen[i];
    return argv[i];
}

static slowlog_args *args_alloc(int n, size_t bytes)
{
    size_t head = sizeof(slowlog_args) + (size_t)n * (sizeof(char *) + sizeof(size_t));
    slowlog_args *a = block_cache_alloc(&copies, head + bytes);
    if (!a) abort();
    a->size = head + bytes;
    a->argc = n;
    a->argv = (char **)(a + 1);
    a->argvlen = (size_t *)(a->argv + n);
    return a;
}

/* The usual command: few arguments, none long, nothing to redact; kept as
 * they are, in one pass over them to size and one to copy. NULL otherwise. */
static slowlog_args *copy_plain(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (argc > SLOWLOG_MAX_ARGC || redact_kind(cmd) != REDACT_NONE) return NULL;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) {
        if (argvlen[i] > SLOWLOG_MAX_STRING) return NULL;
        bytes += argvlen[i] + 1;
    }
    slowlog_args *a = args_alloc(argc, bytes);
    char *data = (char *)(a->argvlen + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i], argvlen[i]);
        data[argvlen[i]] = '\0';
        a->argv[i] = data;
        a->argvlen[i] = argvlen[i];
        data += argvlen[i] + 1;
    }
    return a;
}

/* One allocation per entry (it is made for every command answered later):
 * the struct, the pointers, the lengths and the bytes. */
slowlog_args *slowlog_args_copy(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (config.slowlog_log_slower_than < 0 || argc <= 0) return NULL;
    if (cmd && (cmd->flags & CMD_SKIP_SLOWLOG)) return NULL;
    slowlog_args *a = copy_plain(cmd, argc, argv, argvlen);
    if (a) return a;
    int n = argc > SLOWLOG_MAX_ARGC ? SLOWLOG_MAX_ARGC : argc;
    char tail[64];
    size_t bytes = 0, len, tlen;
    for (int i = 0; i < n; i++) {
        kept_arg(cmd, argc, n, argv, argvlen, i, &len, tail, sizeof(tail), &tlen);
        bytes += len + tlen + 1;
    }
    a = args_alloc(n, bytes);
    char *data = (char *)(a->argvlen + n);
    for (int i = 0; i < n; i++) {
        const char *p = kept_arg(cmd, argc, n, argv, argvlen, i, &len, tail, sizeof(tail), &tlen);
        memcpy(data, p, len);
        memcpy(data + len, tail, tlen);
        data[len + tlen] = '\0';
        a->argv[i] = data;
        a->argvlen[i] = len + tlen;
        data += len + tlen + 1;
    }
    return a;
}

int slowlog_wants(unsigned long long usec)
{
    return config.slowlog_log_slower_than >= 0 && usec >= (unsigned long long)config.slowlog_log_slower_than;
}

void slowlog_args_free(slowlog_args *a)
{
    if (a) block_cache_free(&copies, a, a->size);
}

static void entry_free(slowlog_entry *e)
{
    slowlog_args_free(e->args);
    free(e->addr);
    free(e->name);
    free(e);
}

static void trim(void)
{
    if (entries <= (unsigned long)config.slowlog_max_len) return;
    slowlog_entry **p = &newest;
    for (long long i = 0; i < config.slowlog_max_len && *p; i++) p = &(*p)->next;
    slowlog_entry *e = *p;
    *p = NULL;
    while (e) {
        slowlog_entry *next = e->next;
        entry_free(e);
        entries--;
        e = next;
    }
}

void slowlog_done(slowlog_args *a, unsigned long long usec, const char *addr, const char *name)
{
    if (!a) return;
    if (config.slowlog_log_slower_than < 0 || usec < (unsigned long long)config.slowlog_log_slower_than) {
        slowlog_args_free(a);
        return;
    }
    slowlog_entry *e = calloc(1, sizeof(*e));
    if (!e) abort();
    e->id = next_id++;
    e->time = time(NULL);
    e->usec = usec;
    e->args = a;
    e->addr = xmemdup(addr ? addr : "", addr ? strlen(addr) : 0);
    e->name = xmemdup(name ? name : "", name ? strlen(name) : 0);
    e->next = newest;
    newest = e;
    entries++;
    trim();
}

void slowlog_check(const command_def *cmd, int argc, char **argv, size_t *argvlen, unsigned long long usec,
                   const char *addr, const char *name)
{
    if (config.slowlog_log_slower_than < 0 || usec < (unsigned long long)config.slowlog_log_slower_than) return;
    slowlog_done(slowlog_args_copy(cmd, argc, argv, argvlen), usec, addr, name);
}

void slowlog_command_done(const command_def *cmd, slowlog_args *a, unsigned long long usec, const char *addr,
                          const char *name)
{
    slowlog_done(a, usec, addr, name);
    if (config.latency_monitor_threshold <= 0 || !cmd) return;
    latency_add_sample((cmd->flags & CMD_FAST) ? "fast-command" : "command", usec / 1000);
    if (!strncmp(cmd->name, "eval", 4) || !strncmp(cmd->name, "fcall", 5)) latency_add_sample("script", usec / 1000);
}

void slowlog_reply_get(struct evbuffer *out, long count)
{
    if (count < 0 || (unsigned long)count > entries) count = (long)entries;
    reply_array(out, count);
    slowlog_entry *e = newest;
    for (long i = 0; i < count && e; i++, e = e->next) {
        reply_array(out, 6);
        reply_integer(out, e->id);
        reply_integer(out, (long long)e->time);
        reply_integer(out, (long long)e->usec);
        reply_array(out, e->args->argc);
        for (int j = 0; j < e->args->argc; j++) reply_bulk(out, e->args->argv[j], e->args->argvlen[j]);
        reply_bulk_cstr(out, e->addr);
        reply_bulk_cstr(out, e->name);
    }
}

unsigned long slowlog_len(void) { return entries; }

void slowlog_reset(void)
{
    while (newest) {
        slowlog_entry *e = newest;
        newest = e->next;
        entry_free(e);
    }
    entries = 0;
}

void slowlog_free(void) { slowlog_reset(); }

/* ---- latency monitor ------------------------------------------------------------ */

#define LATENCY_SAMPLES 160
#define LATENCY_EVENTS_MAX 16

typedef struct latency_event {
    char name[32];
    struct {
        time_t time;
        unsigned ms;
    } samples[LATENCY_SAMPLES];
    int idx; /* next slot */
    time_t max_time;
    unsigned max;
} latency_event;

static latency_event events[LATENCY_EVENTS_MAX];
static int events_n;

static latency_event *event_find(const char *name, int create)
{
    for (int i = 0; i < events_n; i++)
        if (!strcmp(events[i].name, name)) return &events[i];
    if (!create || events_n == LATENCY_EVENTS_MAX) return NULL;
    latency_event *ev = &events[events_n++];
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->name, sizeof(ev->name), "%s", name);
    return ev;
}

void latency_add_sample(const char *event, unsigned long long ms)
{
    if (config.latency_monitor_threshold <= 0 || ms < (unsigned long long)config.latency_monitor_threshold) return;
    latency_event *ev = event_find(event, 1);
    if (!ev) return;
    time_t now = time(NULL);
    unsigned v = ms > 0xffffffffULL ? 0xffffffffu : (unsigned)ms;
    if (v > ev->max) ev->max = v;
    /* As Redis: within the same second, the highest sample stands. */
    int prev = (ev->idx + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES;
    if (ev->samples[prev].time == now) {
        if (v > ev->samples[prev].ms) ev->samples[prev].ms = v;
        return;
    }
    ev->samples[ev->idx].time = now;
    ev->samples[ev->idx].ms = v;
    ev->idx = (ev->idx + 1) % LATENCY_SAMPLES;
}

void latency_reply_latest(struct evbuffer *out)
{
    int n = 0;
    for (int i = 0; i < events_n; i++) n += events[i].name[0] != '\0';
    reply_array(out, n);
    for (int i = 0; i < events_n; i++) {
        latency_event *ev = &events[i];
        if (!ev->name[0]) continue;
        int last = (ev->idx + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES;
        reply_array(out, 4);
        reply_bulk_cstr(out, ev->name);
        reply_integer(out, (long long)ev->samples[last].time);
        reply_integer(out, ev->samples[last].ms);
        reply_integer(out, ev->max);
    }
}

void latency_reply_history(struct evbuffer *out, const char *event)
{
    latency_event *ev = event_find(event, 0);
    if (!ev) {
        reply_array(out, 0);
        return;
    }
    int n = 0;
    for (int i = 0; i < LATENCY_SAMPLES; i++) n += ev->samples[i].time != 0;
    reply_array(out, n);
    for (int k = 0; k < LATENCY_SAMPLES; k++) {
        int i = (ev->idx + k) % LATENCY_SAMPLES;
        if (!ev->samples[i].time) continue;
        reply_array(out, 2);
        reply_integer(out, (long long)ev->samples[i].time);
        reply_integer(out, ev->samples[i].ms);
    }
}

int latency_reset(int argc, char **names)
{
    int n = 0;
    if (argc == 0) {
        n = events_n;
        events_n = 0;
        return n;
    }
    for (int j = 0; j < argc; j++) {
        latency_event *ev = event_find(names[j], 0);
        if (!ev) continue;
        *ev = events[--events_n];
        n++;
    }
    return n;
}

void latency_doctor(struct evbuffer *t)
{
    if (!events_n) {
        evbuffer_add_printf(t, "Dave, no latency spike was observed during the lifetime of this proxy instance, "
                               "not in the slightest bit. I honestly think you ought to sleep tonight.\n");
        return;
    }
    evbuffer_add_printf(t, "Latency events observed by evalproxy (threshold %lld ms):\n\n",
                        config.latency_monitor_threshold);
    for (int i = 0; i < events_n; i++) {
        latency_event *ev = &events[i];
        unsigned long long sum = 0;
        int n = 0;
        for (int k = 0; k < LATENCY_SAMPLES; k++)
            if (ev->samples[k].time) sum += ev->samples[k].ms, n++;
        evbuffer_add_printf(t, "%d. %s: %d latency spikes (average %llums, worst %ums).\n", i + 1, ev->name, n,
                            n ? sum / (unsigned long long)n : 0, ev->max);
    }
}
