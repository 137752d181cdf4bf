/* FUNCTION LOAD/LIST/DELETE/FLUSH/DUMP/RESTORE/STATS/KILL/HELP, with Redis
 * 7.0's replies and errors, and the functions-file that keeps libraries
 * across restarts (the FUNCTION DUMP payload, replaced atomically after every
 * change). FCALL runs in scripting.c with EVAL's machinery. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lua/script_engine.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/config.h"
#include "util/files.h"
#include "proxy/commands/function_payload.h"
#include "util/log.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "proxy/core/store_refusal.h"
#include "util/args.h"
#include "proxy/commands/scripting.h"
#include "util/glob.h"

static const char *const function_help[] = {
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE "
    "command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
    NULL,
};

/* The current libraries as a payload (FUNCTION DUMP, the functions-file). */
static char *dump_payload(size_t *len)
{
    script_engine *e = scripting_engine();
    size_t n = script_library_count(e);
    const char **codes = malloc(sizeof(*codes) * (n ? n : 1));
    size_t *lens = malloc(sizeof(*lens) * (n ? n : 1));
    if (!codes || !lens) abort();
    for (size_t i = 0; i < n; i++) codes[i] = script_library_code(script_library_at(e, i), &lens[i]);
    char *p = function_payload_encode((int)n, codes, lens, len);
    free(codes);
    free(lens);
    return p;
}

/* After every change; a crash leaves the old or the new set (file_write_atomic). */
static void persist(void)
{
    if (!config.functions_file) return;
    size_t len;
    char *p = dump_payload(&len);
    if (file_write_atomic(config.functions_file, p, len) != 0)
        log_warning("cannot write functions-file %s: %s", config.functions_file, strerror(errno));
    free(p);
}

int functions_load_file(void)
{
    if (!config.functions_file) return 0;
    size_t len;
    char *buf = file_read_all(config.functions_file, &len);
    if (!buf) {
        if (errno == ENOENT) return 0;
        log_warning("cannot read functions-file %s: %s", config.functions_file, strerror(errno));
        return -1;
    }
    int rc = 0;
    if (len > 0) {
        int n;
        char **codes;
        size_t *lens;
        const char *perr;
        char err[1024];
        if (function_payload_decode(buf, len, &n, &codes, &lens, &perr) != 0) {
            log_warning("functions-file %s: %s", config.functions_file, perr);
            rc = -1;
        } else {
            if (script_functions_restore(scripting_engine(), n, (const char *const *)codes, lens,
                                         SCRIPT_RESTORE_FLUSH, err, sizeof(err)) != 0) {
                log_warning("functions-file %s: %s", config.functions_file, err);
                rc = -1;
            } else {
                log_notice("loaded %zu function libraries from %s", script_library_count(scripting_engine()),
                           config.functions_file);
            }
            function_payload_free(n, codes, lens);
        }
    }
    free(buf);
    return rc;
}

static void function_load(struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    int replace = 0, pos = 2;
    while (pos < argc - 1) {
        if (!strcasecmp(argv[pos], "replace")) {
            replace = 1;
            pos++;
            continue;
        }
        reply_errorf(out, "ERR Unknown option given: %s", argv[pos]);
        return;
    }
    if (pos >= argc) {
        reply_error(out, "ERR Function code is missing");
        return;
    }
    char err[1024];
    const script_library *l = script_functions_load(scripting_engine(), argv[pos], argvlen[pos], replace, err,
                                                    sizeof(err));
    if (!l) {
        reply_error(out, err);
        return;
    }
    reply_bulk_cstr(out, script_library_name(l));
    persist();
}

static void reply_flags(struct evbuffer *out, int flags)
{
    int n = 0;
    for (int b = 0; b < 16; b++)
        if ((flags & (1 << b)) && script_flag_name(b)) n++;
    reply_array(out, n);
    for (int b = 0; b < 16; b++)
        if ((flags & (1 << b)) && script_flag_name(b)) reply_status(out, script_flag_name(b));
}

static void function_list(struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    int with_code = 0;
    const char *pattern = NULL;
    size_t patlen = 0;
    for (int i = 2; i < argc; i++) {
        if (!with_code && !strcasecmp(argv[i], "withcode")) {
            with_code = 1;
            continue;
        }
        if (!pattern && !strcasecmp(argv[i], "libraryname")) {
            if (i >= argc - 1) {
                reply_error(out, "ERR library name argument was not given");
                return;
            }
            pattern = argv[++i];
            patlen = argvlen[i];
            continue;
        }
        reply_errorf(out, "ERR Unknown argument %s", argv[i]);
        return;
    }
    script_engine *e = scripting_engine();
    size_t total = script_library_count(e), n = 0;
    for (size_t i = 0; i < total; i++) {
        const char *name = script_library_name(script_library_at(e, i));
        if (!pattern || glob_match(pattern, patlen, name, strlen(name), 1)) n++;
    }
    reply_array(out, (long long)n);
    for (size_t i = 0; i < total; i++) {
        const script_library *l = script_library_at(e, i);
        const char *name = script_library_name(l);
        if (pattern && !glob_match(pattern, patlen, name, strlen(name), 1)) continue;
        reply_array(out, with_code ? 8 : 6);
        reply_bulk_cstr(out, "library_name");
        reply_bulk_cstr(out, name);
        reply_bulk_cstr(out, "engine");
        reply_bulk_cstr(out, "LUA");
        reply_bulk_cstr(out, "functions");
        int nf = script_library_function_count(l);
        reply_array(out, nf);
        for (int j = 0; j < nf; j++) {
            const script_function *f = script_library_function(l, j);
            reply_array(out, 6);
            reply_bulk_cstr(out, "name");
            reply_bulk_cstr(out, script_function_name(f));
            reply_bulk_cstr(out, "description");
            size_t dlen;
            const char *desc = script_function_desc(f, &dlen);
            if (desc) reply_bulk(out, desc, dlen);
            else reply_null_bulk(out);
            reply_bulk_cstr(out, "flags");
            reply_flags(out, script_function_flags(f));
        }
        if (with_code) {
            size_t clen;
            const char *code = script_library_code(l, &clen);
            reply_bulk_cstr(out, "library_code");
            reply_bulk(out, code, clen);
        }
    }
}

static void subcommand_syntax_error(struct evbuffer *out, const char *sub)
{
    reply_errorf(out, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try FUNCTION HELP.", sub);
}

static void function_restore(struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    if (argc > 4) {
        subcommand_syntax_error(out, argv[1]);
        return;
    }
    int policy = SCRIPT_RESTORE_APPEND;
    if (argc == 4) {
        if (!strcasecmp(argv[3], "append")) policy = SCRIPT_RESTORE_APPEND;
        else if (!strcasecmp(argv[3], "replace")) policy = SCRIPT_RESTORE_REPLACE;
        else if (!strcasecmp(argv[3], "flush")) policy = SCRIPT_RESTORE_FLUSH;
        else {
            reply_error(out, "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.");
            return;
        }
    }
    int n;
    char **codes;
    size_t *lens;
    const char *perr;
    if (function_payload_decode(argv[2], argvlen[2], &n, &codes, &lens, &perr) != 0) {
        reply_error(out, perr);
        return;
    }
    char err[1024];
    int rc = script_functions_restore(scripting_engine(), n, (const char *const *)codes, lens, policy, err,
                                      sizeof(err));
    function_payload_free(n, codes, lens);
    if (rc != 0) {
        reply_error(out, err);
        return;
    }
    reply_ok(out);
    persist();
}

static void function_run(client *c, const char *sub, struct evbuffer *out, int argc, char **argv, size_t *argvlen);

/* A FUNCTION subcommand held back while the store is asked whether it
 * takes writes: its arguments, copied, and the client's place in line. */
typedef struct function_deferred {
    reply_slot *slot;
    const char *sub;
    int argc;
    char **argv;
    size_t *argvlen;
} function_deferred;

static void function_checked(void *ctx, const char *error, int oom)
{
    (void)oom;
    function_deferred *d = ctx;
    reply_slot *s = d->slot;
    client *c = s->c;
    if (error) {
        reply_error(s->buf, error);
    } else if (c) {
        /* Run as it would have: the reply is made in the client's own buffer
         * (for SCRIPT KILL's and the like's client) then kept in the slot. */
        struct evbuffer *out = evbuffer_new();
        if (!out) abort();
        function_run(c, d->sub, out, d->argc, d->argv, d->argvlen);
        evbuffer_add_buffer(s->buf, out);
        evbuffer_free(out);
    }
    client_release_reply(s);
    free(d->argv);
    free(d);
}

/* What Redis 7.0 checks of the server first: LOAD and RESTORE may write and
 * need memory (deny-oom); DELETE and FLUSH write. */
static int store_checks(const char *sub)
{
    if (!strcmp(sub, "load") || !strcmp(sub, "restore")) return STORE_CHECK_WRITE | STORE_CHECK_OOM;
    if (!strcmp(sub, "delete") || !strcmp(sub, "flush")) return STORE_CHECK_WRITE;
    return 0;
}

void cmd_function(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *sub = cmd->name + 9; /* "function|" */
    int checks = store_checks(sub);
    if (store_refusal_wanted(checks)) {
        function_deferred *d = malloc(sizeof(*d));
        if (!d) abort();
        if (store_refusal_check(checks, c->db, NULL, 0, function_checked, d)) {
            d->sub = sub;
            d->argc = argc;
            d->argv = args_copy(argc, argv, argvlen, &d->argvlen);
            d->slot = client_hold_reply(c);
            return;
        }
        free(d);
    }
    function_run(c, sub, client_reply_buffer(c), argc, argv, argvlen);
}

static void function_run(client *c, const char *sub, struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    script_engine *e = scripting_engine();
    if (!strcmp(sub, "load")) {
        function_load(out, argc, argv, argvlen);
    } else if (!strcmp(sub, "list")) {
        function_list(out, argc, argv, argvlen);
    } else if (!strcmp(sub, "delete")) {
        if (script_functions_delete(e, argv[2], argvlen[2]) != 0) {
            reply_error(out, "ERR Library not found");
            return;
        }
        reply_ok(out);
        persist();
    } else if (!strcmp(sub, "flush")) {
        if (argc > 3) {
            subcommand_syntax_error(out, argv[1]);
            return;
        }
        if (argc == 3 && strcasecmp(argv[2], "sync") && strcasecmp(argv[2], "async")) {
            reply_error(out, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
            return;
        }
        script_functions_flush(e);
        reply_ok(out);
        persist();
    } else if (!strcmp(sub, "dump")) {
        size_t len;
        char *p = dump_payload(&len);
        reply_bulk(out, p, len);
        free(p);
    } else if (!strcmp(sub, "restore")) {
        function_restore(out, argc, argv, argvlen);
    } else if (!strcmp(sub, "stats")) {
        scripting_function_stats(out);
    } else if (!strcmp(sub, "kill")) {
        scripting_kill(c, 0);
    } else if (!strcmp(sub, "help")) {
        long long n = 0;
        while (function_help[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_status(out, function_help[i]);
    } else {
        reply_errorf(out, "ERR unknown subcommand '%s'. Try FUNCTION HELP.", argv[1]);
    }
}
