#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int current_level = LL_NOTICE;
static FILE *log_fp;

void log_set_level(int level) { current_level = level; }
int log_get_level(void) { return current_level; }

int log_set_file(const char *path)
{
    FILE *fp = stderr;
    if (path && path[0]) {
        fp = fopen(path, "a");
        if (!fp) return -1;
    }
    if (log_fp && log_fp != stderr) fclose(log_fp);
    log_fp = fp;
    return 0;
}

void log_raw(int level, const char *msg, size_t len)
{
    static const char marks[] = ".-*#";
    if (level < current_level || level >= LL_NOTHING) return;
    FILE *fp = log_fp ? log_fp : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char when[64];
    size_t off = strftime(when, sizeof(when), "%d %b %Y %H:%M:%S.", &tm);
    snprintf(when + off, sizeof(when) - off, "%03d", (int)(tv.tv_usec / 1000));
    /* Same shape as redis-server's log lines: pid:role date mark message. */
    fprintf(fp, "%d:P %s %c %.*s\n", (int)getpid(), when, marks[level], (int)len, msg);
    fflush(fp);
}

void log_write(int level, const char *fmt, ...)
{
    if (level < current_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof(msg)) n = sizeof(msg) - 1;
    log_raw(level, msg, (size_t)n);
}
