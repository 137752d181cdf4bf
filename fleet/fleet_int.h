/* Between fleet.c (membership) and recovery.c (undoing the unfinished
 * scripts of members that left). */
#ifndef EVALPROXY_FLEET_INT_H
#define EVALPROXY_FLEET_INT_H

struct event_base;

const char *fleet_name(void);
struct event_base *fleet_base(void);

#endif
