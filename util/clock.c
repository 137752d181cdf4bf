#include <time.h>

#include "util/clock.h"

unsigned long long clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

long long clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The event loop is one thread: plain statics. */
static unsigned burst_depth;
static unsigned long long recent_us;

void clock_burst_begin(void)
{
    burst_depth++;
    recent_us = clock_us();
}

void clock_burst_end(void)
{
    if (burst_depth && !--burst_depth) recent_us = 0;
}

unsigned long long clock_recent_us(void) { return burst_depth ? recent_us : clock_us(); }

long long clock_recent_ms(void) { return (long long)(clock_recent_us() / 1000); }

unsigned long long clock_recent_refresh(void)
{
    unsigned long long now = clock_us();
    if (burst_depth) recent_us = now;
    return now;
}
