/* The monitors and the lines they get. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/buffer.h>

#include "proxy/core/command_table.h"
#include "proxy/core/config.h"
#include "proxy/core/monitor.h"
#include "proxy/core/slowlog.h"

static client **monitors;
static int monitors_n, monitors_cap;

int monitor_active(void) { return monitors_n > 0; }

int monitor_is(const client *c)
{
    for (int i = 0; i < monitors_n; i++)
        if (monitors[i] == c) return 1;
    return 0;
}

void monitor_add(client *c)
{
    if (monitor_is(c)) return;
    if (monitors_n == monitors_cap) {
        monitors_cap = monitors_cap ? monitors_cap * 2 : 8;
        monitors = realloc(monitors, sizeof(*monitors) * (size_t)monitors_cap);
        if (!monitors) abort();
    }
    monitors[monitors_n++] = c;
}

void monitor_remove(client *c)
{
    for (int i = 0; i < monitors_n; i++)
        if (monitors[i] == c) {
            memmove(&monitors[i], &monitors[i + 1], sizeof(*monitors) * (size_t)(monitors_n - i - 1));
            monitors_n--;
            return;
        }
}

void monitor_shutdown(void)
{
    free(monitors);
    monitors = NULL;
    monitors_n = monitors_cap = 0;
}

/* Quoted as Redis's sdscatrepr. */
static void add_repr(struct evbuffer *b, const char *p, size_t len)
{
    evbuffer_add(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        switch (ch) {
        case '\\': evbuffer_add(b, "\\\\", 2); break;
        case '"': evbuffer_add(b, "\\\"", 2); break;
        case '\n': evbuffer_add(b, "\\n", 2); break;
        case '\r': evbuffer_add(b, "\\r", 2); break;
        case '\t': evbuffer_add(b, "\\t", 2); break;
        case '\a': evbuffer_add(b, "\\a", 2); break;
        case '\b': evbuffer_add(b, "\\b", 2); break;
        default:
            if (isprint(ch)) evbuffer_add(b, &ch, 1);
            else evbuffer_add_printf(b, "\\x%02x", ch);
        }
    }
    evbuffer_add(b, "\"", 1);
}

void monitor_feed(const client *c, int db, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!monitors_n) return;
    struct evbuffer *line = evbuffer_new();
    if (!line) abort();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    evbuffer_add_printf(line, "+%ld.%06ld ", (long)tv.tv_sec, (long)tv.tv_usec);
    if (!c) evbuffer_add_printf(line, "[%d lua] ", db);
    else if (c->flags & CLIENT_UNIX_SOCKET)
        evbuffer_add_printf(line, "[%d unix:%s] ", db, config.unixsocket ? config.unixsocket : "");
    else evbuffer_add_printf(line, "[%d %s] ", db, c->addr);
    for (int i = 0; i < argc; i++) {
        if (slowlog_arg_redacted(cmd, argc, argv, i)) add_repr(line, "(redacted)", 10);
        else add_repr(line, argv[i], argvlen[i]);
        if (i != argc - 1) evbuffer_add(line, " ", 1);
    }
    evbuffer_add(line, "\r\n", 2);
    size_t len = evbuffer_get_length(line);
    const char *bytes = (const char *)evbuffer_pullup(line, -1);
    for (int i = 0; i < monitors_n; i++) evbuffer_add(client_push_buffer(monitors[i]), bytes, len);
    evbuffer_free(line);
}
