/* The monotonic clock, in the units the proxy counts in. */
#ifndef EVALPROXY_CLOCK_H
#define EVALPROXY_CLOCK_H

unsigned long long clock_us(void);
long long clock_ms(void);
/* The wall clock in ms since the epoch (deadlines clients give as times). */
long long clock_wall_ms(void);

/* A burst is the work one read brings in: a client's pipeline, a batch of
 * store replies and the scripts they resume. Inside one (between
 * clock_burst_begin and clock_burst_end, which nest), clock_recent_us() is
 * the time it began or was last refreshed, so the commands of a batch share
 * one clock read for their timings; under some hypervisors each read costs
 * 50-100 ns. Outside a burst it reads the clock. */
void clock_burst_begin(void);
void clock_burst_end(void);
unsigned long long clock_recent_us(void);
long long clock_recent_ms(void);
/* Reads the clock; inside a burst, the recent time becomes it (after work
 * whose length matters, such as running Lua). */
unsigned long long clock_recent_refresh(void);

#endif
