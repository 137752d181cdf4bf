/* Server commands the proxy answers (or merges with the store's answer):
 * COMMAND from the generated table, INFO, CONFIG. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "backends/backend.h"
#include "backends/store.h"
#include "lua/script_engine.h"
#include "util/alloc_stats.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/config.h"
#include "util/log.h"
#include "proxy/core/reply.h"
#include "proxy/commands/scripting.h"
#include "proxy/commands/pubsub.h"
#include "proxy/commands/migration.h"
#include "proxy/core/server.h"
#include "proxy/core/store_refusal.h"
#include "proxy/core/tls.h"
#include "proxy/core/tracking.h"
#include "util/glob.h"
#include "proxy/commands/server_commands.h"
#include "fleet/fleet.h"
#include "util/clock.h"
#include "util/strconv.h"

static int arg_is(const char *arg, size_t len, const char *word)
{
    return strlen(word) == len && !strcasecmp(arg, word);
}

/* ---- COMMAND ------------------------------------------------------------------ */

/* "config|get" style names reach subcommands, as in Redis's COMMAND INFO. */
static const command_def *lookup_full_name(const char *name, size_t len)
{
    const char *bar = memchr(name, '|', len);
    if (!bar) return command_lookup(name, len);
    const command_def *top = command_lookup(name, (size_t)(bar - name));
    if (!top || !top->subcommand_count) return NULL;
    return command_lookup_sub(top, bar + 1, len - (size_t)(bar - name) - 1);
}

/* ---- what works on this store ---------------------------------------------------
 * COMMAND lists only what works through the proxy on the store behind it:
 * a container whose store lacks some subcommands is listed with the others
 * only, rebuilt from the generated entries. */

/* Length of the RESP2 value at p (the generated entries are well formed). */
static size_t resp_skip(const char *p)
{
    const char *eol = strstr(p, "\r\n");
    long long n = strtoll(p + 1, NULL, 10);
    size_t len = (size_t)(eol - p) + 2;
    if (p[0] == '$') return n < 0 ? len : len + (size_t)n + 2;
    if (p[0] != '*' || n <= 0) return len;
    for (long long i = 0; i < n; i++) len += resp_skip(p + len);
    return len;
}

static int subs_all_available(const command_def *d)
{
    for (int s = 0; s < d->subcommand_count; s++)
        if (!dispatch_command_available(&d->subcommands[s])) return 0;
    return 1;
}

/* A command's COMMAND INFO entry; its tenth field lists the subcommands. */
static void add_info_entry(struct evbuffer *out, const command_def *d)
{
    if (!d->subcommand_count || subs_all_available(d)) {
        evbuffer_add(out, d->info_resp, d->info_len);
        return;
    }
    const char *p = d->info_resp;
    size_t head = (size_t)(strstr(p, "\r\n") - p) + 2, off = head;
    for (int i = 0; i < 9; i++) off += resp_skip(p + off);
    evbuffer_add(out, p, off);
    int n = 0;
    for (int s = 0; s < d->subcommand_count; s++) n += dispatch_command_available(&d->subcommands[s]);
    reply_array(out, n);
    for (int s = 0; s < d->subcommand_count; s++)
        if (dispatch_command_available(&d->subcommands[s]))
            evbuffer_add(out, d->subcommands[s].info_resp, d->subcommands[s].info_len);
    size_t subs_end = off + resp_skip(p + off);
    evbuffer_add(out, p + subs_end, d->info_len - subs_end);
}

/* A command's name and COMMAND DOCS map; a "subcommands" key maps each
 * subcommand's name to its own docs map (the subcommand's docs_resp). */
static void add_docs_entry(struct evbuffer *out, const command_def *d)
{
    if (!d->subcommand_count || subs_all_available(d)) {
        evbuffer_add(out, d->docs_resp, d->docs_len);
        return;
    }
    const char *p = d->docs_resp;
    size_t off = resp_skip(p); /* the name */
    const char *map = p + off;
    long long fields = strtoll(map + 1, NULL, 10);
    size_t pos = off + (size_t)(strstr(map, "\r\n") - map) + 2;
    evbuffer_add(out, p, pos);
    for (long long i = 0; i + 1 < fields; i += 2) {
        size_t klen = resp_skip(p + pos), vlen = resp_skip(p + pos + klen);
        evbuffer_add(out, p + pos, klen);
        if (klen == 18 && !memcmp(p + pos, "$11\r\nsubcommands\r\n", 18)) {
            int n = 0;
            for (int s = 0; s < d->subcommand_count; s++) n += dispatch_command_available(&d->subcommands[s]);
            reply_array(out, 2LL * n);
            for (int s = 0; s < d->subcommand_count; s++)
                if (dispatch_command_available(&d->subcommands[s]))
                    evbuffer_add(out, d->subcommands[s].docs_resp, d->subcommands[s].docs_len);
        } else {
            evbuffer_add(out, p + pos + klen, vlen);
        }
        pos += klen + vlen;
    }
}

static int available_count(void)
{
    int n = 0;
    for (int i = 0; i < command_table_count; i++) n += dispatch_command_available(&command_table[i]);
    return n;
}

static void add_all_info(struct evbuffer *out)
{
    reply_array(out, available_count());
    for (int i = 0; i < command_table_count; i++)
        if (dispatch_command_available(&command_table[i])) add_info_entry(out, &command_table[i]);
}

static const char *const kspec_flag_names[] = {"RO", "RW", "OW", "RM", "access", "update", "insert", "delete",
                                               "not_key", "incomplete", "variable_flags"};

static int numkeys_command(const command_def *cmd)
{
    static const char *const names[] = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", NULL};
    for (const char *const *n = names; *n; n++)
        if (!strcmp(*n, cmd->name)) return 1;
    return 0;
}

static void command_getkeys(client *c, int argc, char **argv, size_t *argvlen, int with_flags)
{
    struct evbuffer *out = client_reply_buffer(c);
    int n = argc - 2;
    char **cargv = argv + 2;
    size_t *clen = argvlen + 2;
    const command_def *cmd = command_resolve(n, cargv, clen, NULL);
    if (!cmd) {
        reply_error(out, "ERR Invalid command specified");
        return;
    }
    if ((cmd->arity > 0 && cmd->arity != n) || n < -cmd->arity) {
        reply_error(out, "ERR Invalid number of arguments specified for command");
        return;
    }
    int stack_keys[64];
    uint32_t stack_flags[64];
    int *keys = stack_keys;
    uint32_t *flags = stack_flags;
    int found = command_get_keys(cmd, n, cargv, clen, keys, flags, 64);
    if (found > 64) {
        keys = malloc(sizeof(int) * (size_t)found);
        flags = malloc(sizeof(uint32_t) * (size_t)found);
        if (!keys || !flags) abort();
        found = command_get_keys(cmd, n, cargv, clen, keys, flags, found);
    }
    if (found <= 0 && numkeys_command(cmd)) {
        /* Redis answers these with no keys rather than an error. */
        reply_array(out, 0);
    } else if (found < 0) {
        reply_error(out, "ERR Invalid arguments specified for command");
    } else if (found == 0) {
        reply_error(out, "ERR The command has no key arguments");
    } else {
        reply_array(out, found);
        for (int i = 0; i < found; i++) {
            if (!with_flags) {
                reply_bulk(out, cargv[keys[i]], clen[keys[i]]);
                continue;
            }
            reply_array(out, 2);
            reply_bulk(out, cargv[keys[i]], clen[keys[i]]);
            int nf = 0;
            for (unsigned b = 0; b < sizeof(kspec_flag_names) / sizeof(*kspec_flag_names); b++)
                nf += (flags[i] >> b) & 1;
            reply_array(out, nf);
            for (unsigned b = 0; b < sizeof(kspec_flag_names) / sizeof(*kspec_flag_names); b++)
                if ((flags[i] >> b) & 1) reply_status(out, kspec_flag_names[b]);
        }
    }
    if (keys != stack_keys) {
        free(keys);
        free(flags);
    }
}

static void list_add_name(struct evbuffer *tmp, long long *count, const command_def *d, const char *pattern,
                          size_t patlen)
{
    if (!dispatch_command_available(d)) return;
    if (pattern && !glob_match(pattern, patlen, d->name, strlen(d->name), 1)) return;
    reply_bulk_cstr(tmp, d->name);
    (*count)++;
}

static void command_list(client *c, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    const char *pattern = NULL;
    size_t patlen = 0;
    if (argc == 5 && arg_is(argv[2], argvlen[2], "filterby")) {
        if (arg_is(argv[3], argvlen[3], "pattern")) {
            pattern = argv[4];
            patlen = argvlen[4];
        } else if (arg_is(argv[3], argvlen[3], "module")) {
            reply_array(out, 0); /* no modules behind the proxy */
            return;
        } else if (arg_is(argv[3], argvlen[3], "aclcat")) {
            /* Match the category inside each command's COMMAND INFO entry. */
            char needle[160];
            int nl = snprintf(needle, sizeof(needle), "+@%.*s\r\n", (int)(argvlen[4] > 100 ? 100 : argvlen[4]), argv[4]);
            struct evbuffer *tmp = evbuffer_new();
            long long count = 0;
            for (int i = 0; i < command_table_count; i++) {
                const command_def *d = &command_table[i];
                if (!d->subcommand_count && memmem(d->info_resp, d->info_len, needle + 1, (size_t)nl - 1))
                    list_add_name(tmp, &count, d, NULL, 0);
                for (int s = 0; s < d->subcommand_count; s++) {
                    const command_def *sd = &d->subcommands[s];
                    if (memmem(sd->info_resp, sd->info_len, needle + 1, (size_t)nl - 1))
                        list_add_name(tmp, &count, sd, NULL, 0);
                }
            }
            reply_array(out, count);
            evbuffer_add_buffer(out, tmp);
            evbuffer_free(tmp);
            return;
        } else {
            reply_error(out, "ERR syntax error");
            return;
        }
    } else if (argc != 2) {
        reply_error(out, "ERR syntax error");
        return;
    }
    struct evbuffer *tmp = evbuffer_new();
    long long count = 0;
    for (int i = 0; i < command_table_count; i++) {
        const command_def *d = &command_table[i];
        list_add_name(tmp, &count, d, pattern, patlen);
        for (int s = 0; s < d->subcommand_count; s++) list_add_name(tmp, &count, &d->subcommands[s], pattern, patlen);
    }
    reply_array(out, count);
    evbuffer_add_buffer(out, tmp);
    evbuffer_free(tmp);
}

void cmd_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (argc == 1) {
        add_all_info(client_reply_buffer(c));
        return;
    }
    const char *sub = argv[1];
    size_t sublen = argvlen[1];
    struct evbuffer *out;
    if (arg_is(sub, sublen, "count")) {
        reply_integer(client_reply_buffer(c), available_count());
    } else if (arg_is(sub, sublen, "info")) {
        out = client_reply_buffer(c);
        if (argc == 2) {
            add_all_info(out);
            return;
        }
        reply_array(out, argc - 2);
        for (int i = 2; i < argc; i++) {
            const command_def *d = lookup_full_name(argv[i], argvlen[i]);
            if (d && dispatch_command_available(d)) add_info_entry(out, d);
            else reply_null_bulk(out); /* Redis 7.0 answers a null bulk here */
        }
    } else if (arg_is(sub, sublen, "docs")) {
        out = client_reply_buffer(c);
        if (argc == 2) {
            reply_array(out, 2LL * available_count());
            for (int i = 0; i < command_table_count; i++)
                if (dispatch_command_available(&command_table[i])) add_docs_entry(out, &command_table[i]);
            return;
        }
        struct evbuffer *tmp = evbuffer_new();
        long long found = 0;
        for (int i = 2; i < argc; i++) {
            const command_def *d = lookup_full_name(argv[i], argvlen[i]);
            if (!d || !dispatch_command_available(d)) continue;
            add_docs_entry(tmp, d);
            found++;
        }
        reply_array(out, 2 * found);
        evbuffer_add_buffer(out, tmp);
        evbuffer_free(tmp);
    } else if (arg_is(sub, sublen, "list")) {
        command_list(c, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "getkeys")) {
        command_getkeys(c, argc, argv, argvlen, 0);
    } else if (arg_is(sub, sublen, "getkeysandflags")) {
        command_getkeys(c, argc, argv, argvlen, 1);
    } else if (arg_is(sub, sublen, "help")) {
        static const char *const help[] = {
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
            "GETKEYSANDFLAGS <full-command>",
            "    Return the keys and the access flags from a full Redis command.",
            "HELP",
            "    Prints this help.",
            NULL,
        };
        out = client_reply_buffer(c);
        long long n = 0;
        while (help[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_status(out, help[i]);
    }
}

/* Rates over the last few cron ticks, as Redis's instantaneous_* fields. */
#define RATE_SAMPLES 4
static struct {
    unsigned long long t_us, ops, in, out;
    double ops_s[RATE_SAMPLES], in_s[RATE_SAMPLES], out_s[RATE_SAMPLES];
    int idx;
} rate;

static void sample_rates(void)
{
    unsigned long long now = clock_us();
    if (rate.t_us && now > rate.t_us) {
        double secs = (double)(now - rate.t_us) / 1e6;
        rate.ops_s[rate.idx] = (double)(server.stats.commands_processed - rate.ops) / secs;
        rate.in_s[rate.idx] = (double)(server.stats.net_input_bytes - rate.in) / secs / 1024;
        rate.out_s[rate.idx] = (double)(server.stats.net_output_bytes - rate.out) / secs / 1024;
        rate.idx = (rate.idx + 1) % RATE_SAMPLES;
    }
    rate.t_us = now;
    rate.ops = server.stats.commands_processed;
    rate.in = server.stats.net_input_bytes;
    rate.out = server.stats.net_output_bytes;
}

static double rate_avg(const double *v)
{
    double sum = 0;
    for (int i = 0; i < RATE_SAMPLES; i++) sum += v[i];
    return sum / RATE_SAMPLES;
}

/* ---- INFO ---------------------------------------------------------------------- */

/* Sections, in Redis 7.0's order; the proxy's own come before Keyspace. */
enum {
    SEC_SERVER = 1 << 0, SEC_CLIENTS = 1 << 1, SEC_MEMORY = 1 << 2, SEC_PERSISTENCE = 1 << 3,
    SEC_STATS = 1 << 4, SEC_REPLICATION = 1 << 5, SEC_CPU = 1 << 6, SEC_MODULES = 1 << 7,
    SEC_COMMANDSTATS = 1 << 8, SEC_ERRORSTATS = 1 << 9, SEC_LATENCYSTATS = 1 << 10, SEC_CLUSTER = 1 << 11,
    SEC_SCRIPTING = 1 << 12, SEC_PUBSUB = 1 << 13, SEC_BACKEND = 1 << 14, SEC_KEYSPACE = 1 << 15,
    SEC_MIGRATION = 1 << 16, SEC_FLEET = 1 << 17,
};
/* What the store answers for: its persistence, its keys and their hits. */
#define SEC_FROM_STORE (SEC_MEMORY | SEC_PERSISTENCE | SEC_STATS | SEC_KEYSPACE)

typedef struct info_request {
    reply_slot *slot;
    unsigned sections;
} info_request;

static void info_build(struct evbuffer *t, unsigned sections, const char *store, size_t slen);

static void info_finish(info_request *ir, const char *store, size_t slen)
{
    reply_slot *s = ir->slot;
    struct evbuffer *t = evbuffer_new();
    if (!t) abort();
    info_build(t, ir->sections, store, slen);
    /* Redis ends the last section without a trailing blank line. */
    size_t len = evbuffer_get_length(t);
    evbuffer_add_printf(s->buf, "$%zu\r\n", len);
    evbuffer_add_buffer(s->buf, t);
    evbuffer_add(s->buf, "\r\n", 2);
    evbuffer_free(t);
    free(ir);
    client_slot_done(s);
}

static void info_store_cb(void *ctx, const backend_reply *r)
{
    info_request *ir = ctx;
    if (r->parsed && r->parsed->type == REDIS_REPLY_STRING) info_finish(ir, r->parsed->str, r->parsed->len);
    else info_finish(ir, NULL, 0);
}

/* The body of section `name` ("# Name\r\n" to the blank line) in the
 * store's INFO text, or NULL. */
static const char *store_section(const char *store, size_t slen, const char *name, size_t *len)
{
    char head[64];
    int hn = snprintf(head, sizeof(head), "# %s\r\n", name);
    if (!store) return NULL;
    const char *p = memmem(store, slen, head, (size_t)hn);
    if (!p || (p != store && p[-1] != '\n')) return NULL;
    p += hn;
    const char *endp = memmem(p, slen - (size_t)(p - store), "\r\n\r\n", 4);
    *len = endp ? (size_t)(endp - p) + 2 : slen - (size_t)(p - store);
    return p;
}

/* A field of the store's INFO text as a number (0 when absent). */
static unsigned long long store_field(const char *store, size_t slen, const char *name)
{
    const char *v = store ? info_text_field(store, slen, name, NULL) : NULL;
    return v ? strtoull(v, NULL, 10) : 0;
}

#define SEC_DEFAULT                                                                                          \
    (SEC_SERVER | SEC_CLIENTS | SEC_MEMORY | SEC_PERSISTENCE | SEC_STATS | SEC_REPLICATION | SEC_CPU |          \
     SEC_MODULES | SEC_ERRORSTATS | SEC_CLUSTER | SEC_SCRIPTING | SEC_PUBSUB | SEC_BACKEND | SEC_KEYSPACE | SEC_MIGRATION | SEC_FLEET)

/* The sections INFO's arguments ask for, as Redis 7.0 reads them: none is
 * "default"; "all" adds commandstats and latencystats ("everything" too). */
static unsigned info_sections(int argc, char **argv, size_t *argvlen)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"server", SEC_SERVER},           {"clients", SEC_CLIENTS},
                 {"memory", SEC_MEMORY},           {"persistence", SEC_PERSISTENCE},
                 {"stats", SEC_STATS},             {"replication", SEC_REPLICATION},
                 {"cpu", SEC_CPU},                 {"modules", SEC_MODULES},
                 {"module_list", SEC_MODULES},     {"commandstats", SEC_COMMANDSTATS},
                 {"errorstats", SEC_ERRORSTATS},   {"latencystats", SEC_LATENCYSTATS},
                 {"cluster", SEC_CLUSTER},         {"scripting", SEC_SCRIPTING},
                 {"locks", SEC_SCRIPTING},         {"pubsub", SEC_PUBSUB},
                 {"backend", SEC_BACKEND},         {"keyspace", SEC_KEYSPACE},
                 {"migration", SEC_MIGRATION},     {"fleet", SEC_FLEET}};
    if (argc == 1) return SEC_DEFAULT;
    unsigned want = 0;
    for (int i = 1; i < argc; i++) {
        if (arg_is(argv[i], argvlen[i], "all") || arg_is(argv[i], argvlen[i], "everything"))
            want |= SEC_DEFAULT | SEC_COMMANDSTATS | SEC_LATENCYSTATS;
        else if (arg_is(argv[i], argvlen[i], "default"))
            want |= SEC_DEFAULT;
        for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++)
            if (arg_is(argv[i], argvlen[i], names[n].name)) want |= names[n].bit;
    }
    return want;
}

static void info_server(struct evbuffer *t)
{
    struct utsname u;
    uname(&u);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long uptime = (long long)(time(NULL) - server.start_time);
    char exe[512];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[el > 0 ? el : 0] = '\0';
    evbuffer_add_printf(t,
                        "# Server\r\n"
                        "redis_version:%s\r\n"
                        "redis_git_sha1:00000000\r\n"
                        "redis_git_dirty:0\r\n"
                        "redis_build_id:0\r\n"
                        "redis_mode:standalone\r\n"
                        "os:%s %s %s\r\n"
                        "arch_bits:%d\r\n"
                        "monotonic_clock:POSIX clock_gettime\r\n"
                        "multiplexing_api:epoll\r\n"
                        "atomicvar_api:c11-builtin\r\n"
                        "gcc_version:%d.%d.%d\r\n"
                        "process_id:%d\r\n"
                        "process_supervised:no\r\n"
                        "run_id:%s\r\n"
                        "tcp_port:%d\r\n"
                        "tls_port:%d\r\n"
                        "server_time_usec:%lld\r\n"
                        "uptime_in_seconds:%lld\r\n"
                        "uptime_in_days:%lld\r\n"
                        "hz:10\r\n"
                        "configured_hz:10\r\n"
                        "lru_clock:%lld\r\n"
                        "executable:%s\r\n"
                        "config_file:%s\r\n"
                        "io_threads_active:0\r\n"
                        "evalproxy_version:%s\r\n",
                        REDIS_COMPAT_VERSION, u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8),
#ifdef __GNUC__
                        __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__,
#else
                        0, 0, 0,
#endif
                        (int)getpid(), server.run_id, config.port, config.tls_port,
                        (long long)tv.tv_sec * 1000000 + tv.tv_usec, uptime, uptime / 86400,
                        (long long)(tv.tv_sec & ((1 << 24) - 1)), exe, config_file_path ? config_file_path : "",
                        EVALPROXY_VERSION);
}

/* ---- INFO memory and cpu: the proxy's own figures, in Redis 7.0's fields ------- */

static size_t process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static struct {
    size_t startup, peak;
    int sampled;
} mem;

static size_t sample_used_memory(void)
{
    size_t used = alloc_stats_used();
    if (!mem.sampled) {
        mem.sampled = 1;
        mem.startup = used;
    }
    if (used > mem.peak) mem.peak = used;
    return used;
}

void info_cron(void)
{
    sample_used_memory();
    sample_rates();
}

/* Redis's bytesToHuman. */
static const char *human(char *buf, size_t cap, unsigned long long n)
{
    static const char units[] = "KMGTP";
    if (n < 1024) {
        snprintf(buf, cap, "%lluB", n);
        return buf;
    }
    double d = (double)n / 1024;
    int u = 0;
    while (u < 4 && d >= 1024) {
        d /= 1024;
        u++;
    }
    if (d >= 1024) snprintf(buf, cap, "%lluB", n); /* past petabytes, as Redis */
    else snprintf(buf, cap, "%.2f%c", d, units[u]);
    return buf;
}

/* Function libraries' code and names: what Redis counts as the
 * functions' cache. */
static size_t functions_memory(const script_engine *e)
{
    size_t bytes = 0, dlen;
    for (size_t i = 0; i < script_library_count(e); i++) {
        const script_library *l = script_library_at(e, i);
        size_t clen;
        script_library_code(l, &clen);
        bytes += clen + strlen(script_library_name(l));
        for (int f = 0; f < script_library_function_count(l); f++) {
            const script_function *fn = script_library_function(l, f);
            bytes += strlen(script_function_name(fn));
            if (script_function_desc(fn, &dlen)) bytes += dlen;
        }
    }
    return bytes;
}

static void info_memory(struct evbuffer *t, const char *store, size_t slen)
{
    char h_used[32], h_rss[32], h_peak[32], h_sys[32], h_lua[32], h_vm[32], h_scripts[32], h_max[32];
    size_t used = sample_used_memory();
    size_t rss = process_rss();
    size_t sys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    script_engine *e = scripting_engine();
    long long lua = e ? (long long)script_engine_lua_memory(e) : 0;
    long long scripts_eval = e ? (long long)script_engine_scripts_memory(e) : 0;
    long long functions = e ? (long long)functions_memory(e) : 0;
    size_t clients = 0;
    for (client *o = server.clients; o; o = o->next) {
        clients += sizeof(*o) + evbuffer_get_length(o->out);
        if (o->bev) clients += evbuffer_get_length(bufferevent_get_input(o->bev));
    }
    /* A proxy keeps no dataset: all it holds is overhead. The allocator's
     * own figures are what Redis built with libc malloc shows: allocated is
     * used_memory, active and resident the RSS (the Lua heap is counted in
     * used_memory here, so it is not taken off). */
    double peak_perc = mem.peak ? (double)used * 100 / (double)mem.peak : 0;
    double frag = used ? (double)rss / (double)used : 0;
    evbuffer_add_printf(t,
                        "# Memory\r\n"
                        "used_memory:%zu\r\n"
                        "used_memory_human:%s\r\n"
                        "used_memory_rss:%zu\r\n"
                        "used_memory_rss_human:%s\r\n"
                        "used_memory_peak:%zu\r\n"
                        "used_memory_peak_human:%s\r\n"
                        "used_memory_peak_perc:%.2f%%\r\n"
                        "used_memory_overhead:%zu\r\n"
                        "used_memory_startup:%zu\r\n"
                        "used_memory_dataset:0\r\n"
                        "used_memory_dataset_perc:0.00%%\r\n"
                        "allocator_allocated:%zu\r\n"
                        "allocator_active:%zu\r\n"
                        "allocator_resident:%zu\r\n"
                        "total_system_memory:%zu\r\n"
                        "total_system_memory_human:%s\r\n"
                        "used_memory_lua:%lld\r\n"
                        "used_memory_vm_eval:%lld\r\n"
                        "used_memory_lua_human:%s\r\n"
                        "used_memory_scripts_eval:%lld\r\n"
                        "number_of_cached_scripts:%zu\r\n"
                        "number_of_functions:%zu\r\n"
                        "number_of_libraries:%zu\r\n"
                        "used_memory_vm_functions:0\r\n"
                        "used_memory_vm_total:%lld\r\n"
                        "used_memory_vm_total_human:%s\r\n"
                        "used_memory_functions:%lld\r\n"
                        "used_memory_scripts:%lld\r\n"
                        "used_memory_scripts_human:%s\r\n"
                        "maxmemory:0\r\n"
                        "maxmemory_human:%s\r\n"
                        "maxmemory_policy:noeviction\r\n"
                        "allocator_frag_ratio:%.2f\r\n"
                        "allocator_frag_bytes:%zu\r\n"
                        "allocator_rss_ratio:1.00\r\n"
                        "allocator_rss_bytes:0\r\n"
                        "rss_overhead_ratio:1.00\r\n"
                        "rss_overhead_bytes:0\r\n"
                        "mem_fragmentation_ratio:%.2f\r\n"
                        "mem_fragmentation_bytes:%zd\r\n"
                        "mem_not_counted_for_evict:0\r\n"
                        "mem_replication_backlog:0\r\n"
                        "mem_total_replication_buffers:0\r\n"
                        "mem_clients_slaves:0\r\n"
                        "mem_clients_normal:%zu\r\n"
                        "mem_cluster_links:0\r\n"
                        "mem_aof_buffer:0\r\n"
                        "mem_allocator:libc\r\n"
                        "active_defrag_running:0\r\n"
                        /* the store frees the keys: its figures */
                        "lazyfree_pending_objects:%llu\r\n"
                        "lazyfreed_objects:%llu\r\n",
                        used, human(h_used, sizeof(h_used), used), rss, human(h_rss, sizeof(h_rss), rss), mem.peak,
                        human(h_peak, sizeof(h_peak), mem.peak), peak_perc, used, mem.startup, used, rss, rss,
                        sys, human(h_sys, sizeof(h_sys), sys), lua, lua, human(h_lua, sizeof(h_lua), (size_t)lua),
                        scripts_eval, e ? script_engine_count(e) : 0, e ? script_function_count(e) : 0,
                        e ? script_library_count(e) : 0, lua, human(h_vm, sizeof(h_vm), (size_t)lua), functions,
                        scripts_eval + functions, human(h_scripts, sizeof(h_scripts), (size_t)(scripts_eval + functions)),
                        human(h_max, sizeof(h_max), 0), frag, rss > used ? rss - used : 0, frag,
                        (ssize_t)(rss - used), clients, store_field(store, slen, "lazyfree_pending_objects"),
                        store_field(store, slen, "lazyfreed_objects"));
}

static void info_cpu(struct evbuffer *t)
{
    struct rusage self, children, thread;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    getrusage(RUSAGE_THREAD, &thread);
    evbuffer_add_printf(t,
                        "# CPU\r\n"
                        "used_cpu_sys:%ld.%06ld\r\n"
                        "used_cpu_user:%ld.%06ld\r\n"
                        "used_cpu_sys_children:%ld.%06ld\r\n"
                        "used_cpu_user_children:%ld.%06ld\r\n"
                        "used_cpu_sys_main_thread:%ld.%06ld\r\n"
                        "used_cpu_user_main_thread:%ld.%06ld\r\n",
                        (long)self.ru_stime.tv_sec, (long)self.ru_stime.tv_usec, (long)self.ru_utime.tv_sec,
                        (long)self.ru_utime.tv_usec, (long)children.ru_stime.tv_sec,
                        (long)children.ru_stime.tv_usec, (long)children.ru_utime.tv_sec,
                        (long)children.ru_utime.tv_usec, (long)thread.ru_stime.tv_sec, (long)thread.ru_stime.tv_usec,
                        (long)thread.ru_utime.tv_sec, (long)thread.ru_utime.tv_usec);
}

static void info_clients(struct evbuffer *t)
{
    unsigned long tracking_clients;
    unsigned long long tk, ti, tp;
    tracking_info(&tracking_clients, &tk, &ti, &tp);
    unsigned long blocked = 0;
    size_t max_in = 0, max_out = 0;
    for (client *o = server.clients; o; o = o->next) {
        /* blocked as Redis counts: in a blocking command, or held by CLIENT PAUSE */
        blocked += o->dedicated_blocking != 0 || o->postponed;
        size_t in = request_parser_pending(&o->parser) + (o->bev ? evbuffer_get_length(bufferevent_get_input(o->bev)) : 0);
        size_t out = (o->out ? evbuffer_get_length(o->out) : 0) + (o->bev ? evbuffer_get_length(bufferevent_get_output(o->bev)) : 0);
        if (in > max_in) max_in = in;
        if (out > max_out) max_out = out;
    }
    evbuffer_add_printf(t,
                        "# Clients\r\n"
                        "connected_clients:%lu\r\n"
                        "cluster_connections:0\r\n"
                        "maxclients:%d\r\n"
                        "client_recent_max_input_buffer:%zu\r\n"
                        "client_recent_max_output_buffer:%zu\r\n"
                        "blocked_clients:%lu\r\n"
                        "tracking_clients:%lu\r\n"
                        "clients_in_timeout_table:0\r\n",
                        server.clients_count, config.maxclients, max_in, max_out, blocked, tracking_clients);
}

/* The store's Persistence section; a store without one (memcached) keeps
 * nothing on disk, which is what these values say. */
static void info_persistence(struct evbuffer *t, const char *store, size_t slen)
{
    size_t len;
    const char *body = store_section(store, slen, "Persistence", &len);
    evbuffer_add_printf(t, "# Persistence\r\n");
    if (body) {
        evbuffer_add(t, body, len);
        return;
    }
    evbuffer_add_printf(t,
                        "loading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\n"
                        "current_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\n"
                        "current_save_keys_total:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\n"
                        "rdb_last_save_time:%lld\r\nrdb_last_bgsave_status:ok\r\nrdb_last_bgsave_time_sec:-1\r\n"
                        "rdb_current_bgsave_time_sec:-1\r\nrdb_saves:0\r\nrdb_last_cow_size:0\r\n"
                        "rdb_last_load_keys_expired:0\r\nrdb_last_load_keys_loaded:0\r\naof_enabled:0\r\n"
                        "aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\n"
                        "aof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:ok\r\naof_rewrites:0\r\n"
                        "aof_rewrites_consecutive_failures:0\r\naof_last_write_status:ok\r\naof_last_cow_size:0\r\n"
                        "module_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
                        (long long)server.start_time);
}

/* Redis 7.0's Stats fields: the proxy's own counts, and what only the store
 * knows (expired and evicted keys, keyspace hits and misses) from it; then
 * the proxy's own fields. */
static void info_stats(struct evbuffer *t, const char *store, size_t slen)
{
    unsigned long tracking_clients;
    unsigned long long tracking_keys, tracking_items, tracking_prefixes;
    tracking_info(&tracking_clients, &tracking_keys, &tracking_items, &tracking_prefixes);
    evbuffer_add_printf(t,
                        "# Stats\r\n"
                        "total_connections_received:%llu\r\n"
                        "total_commands_processed:%llu\r\n"
                        "instantaneous_ops_per_sec:%.0f\r\n"
                        "total_net_input_bytes:%llu\r\n"
                        "total_net_output_bytes:%llu\r\n"
                        "total_net_repl_input_bytes:0\r\n"
                        "total_net_repl_output_bytes:0\r\n"
                        "instantaneous_input_kbps:%.2f\r\n"
                        "instantaneous_output_kbps:%.2f\r\n"
                        "instantaneous_input_repl_kbps:0.00\r\n"
                        "instantaneous_output_repl_kbps:0.00\r\n"
                        "rejected_connections:%llu\r\n"
                        "sync_full:0\r\nsync_partial_ok:0\r\nsync_partial_err:0\r\n"
                        "expired_keys:%llu\r\n"
                        "expired_stale_perc:0.00\r\n"
                        "expired_time_cap_reached_count:0\r\n"
                        "expire_cycle_cpu_milliseconds:0\r\n"
                        "evicted_keys:%llu\r\n"
                        "evicted_clients:0\r\n"
                        "total_eviction_exceeded_time:0\r\n"
                        "current_eviction_exceeded_time:0\r\n"
                        "keyspace_hits:%llu\r\n"
                        "keyspace_misses:%llu\r\n",
                        server.stats.connections_received, server.stats.commands_processed, rate_avg(rate.ops_s),
                        server.stats.net_input_bytes, server.stats.net_output_bytes, rate_avg(rate.in_s),
                        rate_avg(rate.out_s), server.stats.rejected_connections,
                        store_field(store, slen, "expired_keys"), store_field(store, slen, "evicted_keys"),
                        store_field(store, slen, "keyspace_hits"), store_field(store, slen, "keyspace_misses"));
    pubsub_stats_info(t);
    evbuffer_add_printf(t,
                        "latest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\n"
                        "slave_expires_tracked_keys:0\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\n"
                        "active_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\ntotal_active_defrag_time:0\r\n"
                        "current_active_defrag_time:0\r\ntracking_total_keys:%llu\r\ntracking_total_items:%llu\r\n"
                        "tracking_total_prefixes:%llu\r\nunexpected_error_replies:0\r\n"
                        "total_error_replies:%llu\r\n"
                        "dump_payload_sanitizations:0\r\n"
                        "total_reads_processed:%llu\r\n"
                        "total_writes_processed:%llu\r\n"
                        "io_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\n"
                        "reply_buffer_shrinks:0\r\nreply_buffer_expands:0\r\n"
                        "relayed_commands:%llu\r\n"
                        "backend_errors:%llu\r\n",
                        tracking_keys, tracking_items, tracking_prefixes, stats_error_replies(),
                        server.stats.reads_processed, server.stats.writes_processed, server.stats.relayed_commands,
                        server.stats.backend_errors);
}

static void info_build(struct evbuffer *t, unsigned want, const char *store, size_t slen)
{
    int sections = 0;
#define SECTION(bit) if ((want & (bit)) && (sections++ ? evbuffer_add(t, "\r\n", 2) : 0, 1))
    SECTION(SEC_SERVER) info_server(t);
    SECTION(SEC_CLIENTS) info_clients(t);
    SECTION(SEC_MEMORY) info_memory(t, store, slen);
    SECTION(SEC_PERSISTENCE) info_persistence(t, store, slen);
    SECTION(SEC_STATS) info_stats(t, store, slen);
    /* Replication, Modules and Cluster say what a lone Redis 7.0 master
     * without modules would: clients read role and cluster_enabled there. */
    SECTION(SEC_REPLICATION)
    evbuffer_add_printf(t,
                        "# Replication\r\n"
                        "role:master\r\n"
                        "connected_slaves:0\r\n"
                        "master_failover_state:no-failover\r\n"
                        "master_replid:%s\r\n"
                        "master_replid2:0000000000000000000000000000000000000000\r\n"
                        "master_repl_offset:0\r\n"
                        "second_repl_offset:-1\r\n"
                        "repl_backlog_active:0\r\n"
                        "repl_backlog_size:1048576\r\n"
                        "repl_backlog_first_byte_offset:0\r\n"
                        "repl_backlog_histlen:0\r\n",
                        server.run_id);
    SECTION(SEC_CPU) info_cpu(t);
    SECTION(SEC_MODULES) evbuffer_add_printf(t, "# Modules\r\n");
    SECTION(SEC_COMMANDSTATS) info_commandstats(t);
    SECTION(SEC_ERRORSTATS) info_errorstats(t);
    SECTION(SEC_LATENCYSTATS) info_latencystats(t);
    SECTION(SEC_CLUSTER) evbuffer_add_printf(t, "# Cluster\r\ncluster_enabled:%d\r\n", fleet_enabled());
    SECTION(SEC_SCRIPTING) scripting_info(t);
    SECTION(SEC_PUBSUB)
    {
        evbuffer_add_printf(t, "# Pubsub\r\n");
        pubsub_info(t);
    }
    SECTION(SEC_BACKEND)
    {
        evbuffer_add_printf(t, "# Backend\r\n");
        backend_info(server.backend, t);
        char v[32];
        int version = server.backend->store_version;
        evbuffer_add_printf(t, "backend_version:%s\r\nbackend_commands_emulated:%d\r\n",
                            version ? store_version_text(version, v, sizeof(v)) : "unknown",
                            dispatch_commands_emulated());
    }
    /* Only while a migration is configured (migrate-from). */
    SECTION(want & SEC_MIGRATION && config.migrate_from ? SEC_MIGRATION : 0)
    {
        evbuffer_add_printf(t, "# Migration\r\n");
        migration_info(t);
    }
    /* Only in a fleet (fleet-name). */
    SECTION(want & SEC_FLEET && fleet_enabled() ? SEC_FLEET : 0)
    {
        evbuffer_add_printf(t, "# Fleet\r\n");
        fleet_info(t);
        fleet_recovery_info(t);
    }
    SECTION(SEC_KEYSPACE)
    {
        size_t len;
        const char *body = store_section(store, slen, "Keyspace", &len);
        evbuffer_add_printf(t, "# Keyspace\r\n");
        if (body) evbuffer_add(t, body, len);
        else if (store) store_info_keyspace(store, slen, t); /* 2.4: no sections */
    }
#undef SECTION
}

void cmd_info(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    info_request *ir = calloc(1, sizeof(*ir));
    if (!ir) abort();
    ir->sections = info_sections(argc, argv, argvlen);
    ir->slot = client_slot_add(c);
    /* A blocking command sent to the store may not have reached it yet: a
     * round trip first, so that blocked_clients means blocked at the store
     * (clients wait on it before they push what unblocks). */
    int blocking = 0;
    if (ir->sections & SEC_CLIENTS)
        for (client *o = server.clients; o && !blocking; o = o->next) blocking = o->dedicated_blocking != 0;
    if ((ir->sections & SEC_FROM_STORE) || blocking) {
        /* INFO without arguments: any store's default sections hold them. */
        int conn = backend_pick(server.backend, (unsigned)c->id);
        char *kargv[1] = {"INFO"};
        size_t klens[1] = {4};
        if (conn >= 0 &&
            backend_send(server.backend, conn, c->db, 1, kargv, klens, BACKEND_PARSED, info_store_cb, ir) == 0)
            return;
    }
    info_finish(ir, NULL, 0);
}

/* ---- CONFIG ------------------------------------------------------------------------ */

typedef struct config_get_request {
    reply_slot *slot;
    struct evbuffer *pairs; /* the proxy's own name/value pairs, RESP encoded */
    long long count;
    char **names; /* proxy names already reported */
    int nnames, capnames;
} config_get_request;

static void config_get_visit(void *ctx, const char *name, const char *value, size_t vlen)
{
    config_get_request *r = ctx;
    /* Redis collects the names case-insensitively: MAXCLIENTS and maxclients are one. */
    for (int i = 0; i < r->nnames; i++)
        if (!strcasecmp(r->names[i], name)) return;
    if (r->nnames == r->capnames) {
        r->capnames = r->capnames ? r->capnames * 2 : 16;
        r->names = realloc(r->names, sizeof(char *) * (size_t)r->capnames);
        if (!r->names) abort();
    }
    r->names[r->nnames++] = (char *)name;
    reply_bulk_cstr(r->pairs, name);
    reply_bulk(r->pairs, value, vlen);
    r->count++;
}

static void config_get_finish(config_get_request *r, const redisReply *store)
{
    struct evbuffer *out = r->slot->buf;
    struct evbuffer *extra = evbuffer_new();
    long long extra_count = 0;
    if (store && store->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < store->elements; i += 2) {
            const redisReply *k = store->element[i], *v = store->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            /* The proxy's own directives shadow the store's (port, maxclients, ...). */
            if (config_is_proxy_directive(k->str, k->len)) continue;
            reply_bulk(extra, k->str, k->len);
            reply_bulk(extra, v->str, v->len);
            extra_count++;
        }
    }
    reply_array(out, 2 * (r->count + extra_count));
    evbuffer_add_buffer(out, r->pairs);
    evbuffer_add_buffer(out, extra);
    evbuffer_free(extra);
    evbuffer_free(r->pairs);
    free(r->names);
    reply_slot *s = r->slot;
    free(r);
    client_slot_done(s);
}

static void config_get_cb(void *ctx, const backend_reply *br)
{
    config_get_finish(ctx, br->parsed);
}

static void config_get(client *c, int argc, char **argv, size_t *argvlen)
{
    config_get_request *r = calloc(1, sizeof(*r));
    if (!r) abort();
    r->pairs = evbuffer_new();
    for (int i = 2; i < argc; i++) config_get_matching(argv[i], argvlen[i], config_get_visit, r);
    r->slot = client_slot_add(c);
    int conn = backend_pick(server.backend, (unsigned)c->id);
    if (conn >= 0 &&
        backend_send(server.backend, conn, c->db, argc, argv, argvlen, BACKEND_PARSED, config_get_cb, r) == 0)
        return;
    config_get_finish(r, NULL);
}

/* Old values of the proxy directives a CONFIG SET changed, to undo it. */
/* Directives that take effect through other modules' state. */
static void apply_runtime_config(void)
{
    scripting_apply_config();
    if (server.backend) {
        server.backend->connect_timeout_ms = config.backend_connect_timeout_ms;
        server.backend->max_string_len = config.proto_max_bulk_len;
    }
}

typedef struct config_undo {
    reply_slot *slot;
    int n;
    char *names[64];
    char *values[64];
    int tls_rebuilt; /* the TLS context was rebuilt from the new values */
} config_undo;

static void config_undo_apply(config_undo *u)
{
    for (int i = u->n - 1; i >= 0; i--) config_set(u->names[i], u->values[i], strlen(u->values[i]));
    apply_runtime_config();
    if (u->tls_rebuilt) {
        /* Back to a context made from the old values. */
        char err[512];
        if (tls_configure(err, sizeof(err)) != 0) log_warning("Restoring the TLS configuration: %s", err);
    }
}

static void config_undo_free(config_undo *u)
{
    for (int i = 0; i < u->n; i++) {
        free(u->names[i]);
        free(u->values[i]);
    }
    free(u);
}

static void config_set_store_cb(void *ctx, const backend_reply *br)
{
    config_undo *u = ctx;
    reply_slot *s = u->slot;
    if (br->error) {
        config_undo_apply(u);
        reply_error(s->buf, br->error);
    } else {
        /* The store's answer decides; its error undoes the proxy's part too. */
        char first = 0;
        evbuffer_copyout(br->raw, &first, 1);
        if (first == '-') config_undo_apply(u);
        evbuffer_remove_buffer(br->raw, s->buf, br->raw_len);
    }
    config_undo_free(u);
    client_slot_done(s);
}

/* The proxy's own start-only parameters (not Redis's: those refuse as in
 * Redis) take their current value again as a no-op, so that a client
 * setting back everything CONFIG GET * listed does not fail on them. */
static int immutable_kept(const char *name, const char *value, size_t len)
{
    static const char *const redis_immutable[] = {"tcp-backlog", "unixsocket", "unixsocketperm", "aclfile",
                                                  "logfile",     "pidfile",    "daemonize",      "supervised",
                                                  "databases",   "tls-port",   NULL};
    for (const char *const *p = redis_immutable; *p; p++)
        if (!strcmp(*p, name)) return 0;
    char now[1024];
    config_get_value(name, now, sizeof(now));
    return strlen(now) == len && !strncasecmp(now, value, len);
}

static void config_set_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if ((argc - 2) % 2 != 0) {
        reply_error(client_reply_buffer(c), "ERR syntax error");
        return;
    }
    /* As Redis, the names are checked first, in order (immutable, then the
     * same parameter twice: an alias and its name are two parameters), and
     * only then the values. */
    int proxy = 0, store = 0;
    for (int i = 2; i < argc; i += 2) {
        const char *ci = config_canonical_name(argv[i], argvlen[i]);
        if (ci && config_is_immutable(ci) && !immutable_kept(ci, argv[i + 1], argvlen[i + 1])) {
            reply_errorf(client_reply_buffer(c),
                         "ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable config",
                         argv[i]);
            return;
        }
        for (int j = 2; j < i; j += 2) {
            const char *cj = config_canonical_name(argv[j], argvlen[j]);
            int same_kind = ci && cj && !strcasecmp(argv[i], ci) == !strcasecmp(argv[j], cj);
            if (!strcasecmp(argv[i], argv[j]) || (ci && ci == cj && same_kind)) {
                reply_errorf(client_reply_buffer(c),
                             "ERR CONFIG SET failed (possibly related to argument '%s') - duplicate parameter",
                             argv[i]);
                return;
            }
        }
        if (ci) proxy++;
        else store++;
    }
    /* maxmemory, min-replicas-to-write and the like may make the store refuse writes. */
    if (store) store_refusal_note_change(c->id);
    if (!proxy) {
        relay_command(c, cmd, argc, argv, argvlen);
        return;
    }
    if (proxy > 64) {
        reply_error(client_reply_buffer(c), "ERR CONFIG SET failed - too many parameters");
        return;
    }
    /* All or nothing, as in Redis: remember, apply, undo on the first failure. */
    config_undo *u = calloc(1, sizeof(*u));
    if (!u) abort();
    char old[1024];
    for (int i = 2; i < argc; i += 2) {
        const char *ci = config_canonical_name(argv[i], argvlen[i]);
        if (!ci || config_is_immutable(ci)) continue; /* a start-only one: its own value, kept */
        config_get_value(argv[i], old, sizeof(old));
        const char *why = config_set(argv[i], argv[i + 1], argvlen[i + 1]);
        if (why) {
            config_undo_apply(u);
            config_undo_free(u);
            struct evbuffer *out = client_reply_buffer(c);
            if (!strcmp(why, "Unknown option"))
                reply_errorf(out, "ERR Unknown option or number of arguments for CONFIG SET - '%s'", argv[i]);
            else /* a value's error names the parameter as Redis spells it (an alias as the alias) */
                reply_errorf(out, "ERR CONFIG SET failed (possibly related to argument '%s') - %s",
                             config_spelling(argv[i], argvlen[i]), why);
            return;
        }
        u->names[u->n] = strdup(argv[i]);
        u->values[u->n] = strdup(old);
        if (!u->names[u->n] || !u->values[u->n]) abort();
        u->n++;
    }
    apply_runtime_config();
    /* bind and port: listen again now; on failure back to the old values
     * and their sockets, with Redis's texts. */
    const char *listen_arg = NULL;
    for (int i = 2; i < argc && !listen_arg; i += 2) {
        const char *ci = config_canonical_name(argv[i], argvlen[i]);
        if (ci && (!strcmp(ci, "bind") || !strcmp(ci, "port"))) listen_arg = ci;
    }
    if (listen_arg && (!server.relisten || server.relisten() != 0)) {
        config_undo_apply(u);
        config_undo_free(u);
        if (server.relisten && server.relisten() != 0) log_warning("Could not listen again on the previous addresses");
        reply_errorf(client_reply_buffer(c), "ERR CONFIG SET failed (possibly related to argument '%s') - %s",
                     listen_arg,
                     !strcmp(listen_arg, "bind") ? "Failed to bind to specified addresses."
                                                 : "Unable to listen on this port. Check server logs.");
        return;
    }
    /* The tls-* values take effect together, in one new context (the first
     * one named is the argument the error points at, as in Redis). */
    const char *tls_arg = NULL;
    for (int i = 2; i < argc && !tls_arg; i += 2)
        if (config_canonical_name(argv[i], argvlen[i]) && tls_is_context_directive(argv[i], argvlen[i]))
            tls_arg = argv[i];
    if (tls_arg) {
        char err[512];
        if (tls_configure(err, sizeof(err)) != 0) {
            log_warning("Failed to update the TLS configuration: %s", err);
            config_undo_apply(u); /* the old context was never replaced */
            config_undo_free(u);
            reply_errorf(client_reply_buffer(c),
                         "ERR CONFIG SET failed (possibly related to argument '%s') - Unable to update TLS "
                         "configuration. Check server logs.",
                         tls_arg);
            return;
        }
        u->tls_rebuilt = 1;
    }
    if (!store) {
        config_undo_free(u);
        reply_ok(client_reply_buffer(c));
        return;
    }
    /* The store's parameters go to the store in one CONFIG SET of their own. */
    char **sargv = malloc(sizeof(char *) * (size_t)argc);
    size_t *slens = malloc(sizeof(size_t) * (size_t)argc);
    if (!sargv || !slens) abort();
    int sargc = 0;
    for (int i = 0; i < 2; i++) sargv[sargc] = argv[i], slens[sargc++] = argvlen[i];
    for (int i = 2; i < argc; i += 2) {
        if (config_canonical_name(argv[i], argvlen[i])) continue;
        sargv[sargc] = argv[i], slens[sargc++] = argvlen[i];
        sargv[sargc] = argv[i + 1], slens[sargc++] = argvlen[i + 1];
    }
    u->slot = client_slot_add(c);
    int conn = client_shared_conn(c);
    if (conn < 0 || backend_send(server.backend, conn, c->db, sargc, sargv, slens, BACKEND_RAW, config_set_store_cb,
                                 u) != 0) {
        config_undo_apply(u);
        reply_error(u->slot->buf, backend_error(server.backend));
        client_slot_done(u->slot);
        config_undo_free(u);
    }
    free(sargv);
    free(slens);
}

void cmd_config(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!strcmp(cmd->name, "config|get")) {
        config_get(c, argc, argv, argvlen);
    } else if (!strcmp(cmd->name, "config|set")) {
        config_set_command(c, cmd, argc, argv, argvlen);
    } else if (!strcmp(cmd->name, "config|rewrite")) {
        char err[256];
        struct evbuffer *out = client_reply_buffer(c);
        if (config_rewrite(err, sizeof(err)) == 0) {
            log_notice("CONFIG REWRITE executed with success.");
            reply_ok(out);
        } else {
            reply_errorf(out, "ERR %s", err);
        }
    } else if (!strcmp(cmd->name, "config|resetstat")) {
        stats_reset();
        /* The store resets its own (keyspace hits, ...; memcached's backend
         * the expired keys it counts). */
        relay_command(c, cmd, argc, argv, argvlen);
    } else {
        relay_command(c, cmd, argc, argv, argvlen);
    }
}

/* DEBUG: PROTOCOL and SET-DISABLE-DENY-SCRIPTS touch no data and are
 * answered here (Redis's own test suites use them); the rest administers
 * the store, refused unless backend-admin-commands. */
void cmd_debug(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (argc == 3 && !strcasecmp(argv[1], "protocol")) {
        c->cur_shape = NULL; /* written in the client's own protocol */
        struct evbuffer *out = client_reply_buffer(c);
        if (!reply_debug_protocol(out, argv[2], argvlen[2], c->resp))
            reply_error(out, "ERR Wrong protocol type name. Please use one of the following: "
                             "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
        return;
    }
    if (argc == 3 && !strcasecmp(argv[1], "set-disable-deny-scripts")) {
        server.script_deny_disabled = atoi(argv[2]) != 0;
        reply_ok(client_reply_buffer(c));
        return;
    }
    if (config.backend_admin_commands) {
        relay_command(c, cmd, argc, argv, argvlen);
        return;
    }
    reply_error(client_reply_buffer(c), "ERR command 'debug' administers the store and is not relayed by evalproxy "
                                         "(set backend-admin-commands yes to allow it)");
}
