/* GET /metrics in Prometheus text format 0.0.4, on metrics-bind:metrics-port. */
#ifndef EVALPROXY_METRICS_H
#define EVALPROXY_METRICS_H

struct event_base;

/* 0, or -1 (logged) when the port cannot be bound. Nothing when metrics-port is 0. */
int metrics_start(struct event_base *base);
void metrics_stop(void);

#endif
