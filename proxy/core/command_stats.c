/* What INFO's commandstats, errorstats and latencystats count: commands as
 * they run (the dispatcher, reply slots, scripts and EXEC report them here). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "proxy/core/command_stats.h"
#include "proxy/core/command_table.h"
#include "proxy/core/server.h"
#include "util/clock.h"

/* Per command (subcommands apart, as Redis's "client|list"): calls, time,
 * refusals, failures, and a log2 histogram of latencies for the percentiles. */
#define LAT_BUCKETS 40
typedef struct cmd_stat {
    const command_def *cmd;
    unsigned long long calls, usec, rejected, failed;
    unsigned long long lat[LAT_BUCKETS]; /* bucket i: latencies below 2^i us */
} cmd_stat;

#define CMD_STATS_CAP 1024 /* open addressing, keyed by the command's address */
static cmd_stat *cmd_stats;
static size_t cmd_stats_used;

static cmd_stat *cmd_stat_for(const command_def *cmd)
{
    if (!cmd) return NULL;
    if (!cmd_stats) {
        cmd_stats = calloc(CMD_STATS_CAP, sizeof(*cmd_stats));
        if (!cmd_stats) abort();
    }
    size_t h = ((uintptr_t)cmd >> 4) * 2654435761u % CMD_STATS_CAP;
    for (size_t i = 0; i < CMD_STATS_CAP; i++) {
        cmd_stat *st = &cmd_stats[(h + i) % CMD_STATS_CAP];
        if (st->cmd == cmd) return st;
        if (!st->cmd) {
            if (cmd_stats_used >= CMD_STATS_CAP * 3 / 4) return NULL;
            cmd_stats_used++;
            st->cmd = cmd;
            return st;
        }
    }
    return NULL;
}

void stats_command_done(const command_def *cmd, unsigned long long usec, int failed)
{
    cmd_stat *st = cmd_stat_for(cmd);
    if (!st) return;
    st->calls++;
    st->usec += usec;
    st->failed += failed != 0;
    int b = 0;
    while (b < LAT_BUCKETS - 1 && (1ULL << b) <= usec) b++;
    st->lat[b]++;
}

void stats_command_rejected(const command_def *cmd)
{
    cmd_stat *st = cmd_stat_for(cmd);
    if (st) st->rejected++;
}

/* Error replies by their first word, as Redis's errorstats (at most 128 kinds). */
#define ERROR_KINDS_MAX 128
static struct {
    char name[33];
    unsigned long long count;
} error_kinds[ERROR_KINDS_MAX];
static int error_kinds_n;
static unsigned long long error_replies;

void stats_error_reply(const char *err, size_t len)
{
    error_replies++;
    size_t n = 0;
    while (n < len && n < 32 && err[n] != ' ' && err[n] != '\r' && err[n] != '\n') n++;
    for (int i = 0; i < error_kinds_n; i++)
        if (strlen(error_kinds[i].name) == n && !memcmp(error_kinds[i].name, err, n)) {
            error_kinds[i].count++;
            return;
        }
    if (error_kinds_n == ERROR_KINDS_MAX) return;
    memcpy(error_kinds[error_kinds_n].name, err, n);
    error_kinds[error_kinds_n].name[n] = '\0';
    error_kinds[error_kinds_n++].count = 1;
}

unsigned long long stats_error_replies(void) { return error_replies; }

void stats_foreach_command(stats_command_fn *fn, void *arg)
{
    for (size_t i = 0; cmd_stats && i < CMD_STATS_CAP; i++) {
        const cmd_stat *st = &cmd_stats[i];
        if (!st->cmd || (!st->calls && !st->rejected && !st->failed)) continue;
        fn(arg, st->cmd->name, st->calls, st->usec, st->failed, st->rejected);
    }
}

void stats_reset(void)
{
    memset(&server.stats, 0, sizeof(server.stats));
    if (cmd_stats) memset(cmd_stats, 0, CMD_STATS_CAP * sizeof(*cmd_stats));
    cmd_stats_used = 0;
    error_kinds_n = 0;
    error_replies = 0;
}

/* Latency at percentile q (0-100), in us: the upper bound of its bucket. */
static double lat_percentile(const cmd_stat *st, double q)
{
    unsigned long long total = 0, seen = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) total += st->lat[b];
    if (!total) return 0;
    double want = q / 100 * (double)total;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += st->lat[b];
        if ((double)seen >= want) return (double)(1ULL << b);
    }
    return (double)(1ULL << (LAT_BUCKETS - 1));
}

/* LATENCY HISTOGRAM's entry for one command: its calls and the cumulative
 * count at each power-of-two bound, as Redis 7.0 reads its histogram from
 * 1.024 us doubling (the bound in whole us). The log2 buckets here are
 * whole-us latencies below 2^b, so 0 and 1 us fall under the first bound. */
static void histogram_entry(struct evbuffer *out, const cmd_stat *st)
{
    unsigned long long cum = 0, bound[LAT_BUCKETS], count[LAT_BUCKETS];
    int n = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        if (!st->lat[b]) continue;
        cum += st->lat[b];
        unsigned long long us = (1024ULL << (b <= 1 ? 0 : b)) / 1000;
        if (n && bound[n - 1] == us) {
            count[n - 1] = cum;
            continue;
        }
        bound[n] = us;
        count[n++] = cum;
    }
    evbuffer_add_printf(out, "$%zu\r\n%s\r\n*4\r\n$5\r\ncalls\r\n:%llu\r\n$14\r\nhistogram_usec\r\n*%d\r\n",
                        strlen(st->cmd->name), st->cmd->name, st->calls, n * 2);
    for (int i = 0; i < n; i++) evbuffer_add_printf(out, ":%llu\r\n:%llu\r\n", bound[i], count[i]);
}

/* Whether a histogram's command is one LATENCY HISTOGRAM names: itself, or
 * a container whose subcommands it then lists. */
static int histogram_named(const char *name, const char *arg, size_t len)
{
    size_t n = strlen(name);
    if (n < len || strncasecmp(name, arg, len)) return 0;
    return n == len || name[len] == '|';
}

void latency_histogram_reply(struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) abort();
    int entries = 0;
    for (size_t i = 0; cmd_stats && i < CMD_STATS_CAP; i++) {
        const cmd_stat *st = &cmd_stats[i];
        if (!st->cmd || !st->calls) continue;
        int named = argc == 0;
        for (int a = 0; a < argc && !named; a++) named = histogram_named(st->cmd->name, argv[a], argvlen[a]);
        if (!named) continue;
        histogram_entry(body, st);
        entries++;
    }
    evbuffer_add_printf(out, "*%d\r\n", entries * 2);
    evbuffer_add_buffer(out, body);
    evbuffer_free(body);
}

void info_commandstats(struct evbuffer *t)
{
    evbuffer_add_printf(t, "# Commandstats\r\n");
    for (size_t i = 0; cmd_stats && i < CMD_STATS_CAP; i++) {
        const cmd_stat *st = &cmd_stats[i];
        if (!st->cmd || (!st->calls && !st->rejected && !st->failed)) continue;
        evbuffer_add_printf(t, "cmdstat_%s:calls=%llu,usec=%llu,usec_per_call=%.2f,rejected_calls=%llu,failed_calls=%llu\r\n",
                            st->cmd->name, st->calls, st->usec,
                            st->calls ? (double)st->usec / (double)st->calls : 0.0, st->rejected, st->failed);
    }
}

static int error_kind_cmp(const void *a, const void *b)
{
    return strcmp(((const char *)a), ((const char *)b));
}

void info_errorstats(struct evbuffer *t)
{
    /* Sorted by name, as Redis's radix tree lists them. */
    qsort(error_kinds, (size_t)error_kinds_n, sizeof(error_kinds[0]), error_kind_cmp);
    evbuffer_add_printf(t, "# Errorstats\r\n");
    for (int i = 0; i < error_kinds_n; i++)
        evbuffer_add_printf(t, "errorstat_%s:count=%llu\r\n", error_kinds[i].name, error_kinds[i].count);
}

void info_latencystats(struct evbuffer *t)
{
    evbuffer_add_printf(t, "# Latencystats\r\n");
    for (size_t i = 0; cmd_stats && i < CMD_STATS_CAP; i++) {
        const cmd_stat *st = &cmd_stats[i];
        if (!st->cmd || !st->calls) continue;
        evbuffer_add_printf(t, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n", st->cmd->name,
                            lat_percentile(st, 50), lat_percentile(st, 99), lat_percentile(st, 99.9));
    }
}
