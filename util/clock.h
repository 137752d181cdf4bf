/* The monotonic clock, in the units the proxy counts in. */
#ifndef EVALPROXY_CLOCK_H
#define EVALPROXY_CLOCK_H

unsigned long long clock_us(void);
long long clock_ms(void);

#endif
