/* Between fleet.c (membership) and recovery.c (undoing the unfinished
 * scripts of members that left). */
#ifndef EVALPROXY_FLEET_INT_H
#define EVALPROXY_FLEET_INT_H

struct event_base;

const char *fleet_name(void);
struct event_base *fleet_base(void);
/* Undoes every unfinished run of member id (where this member owns the
 * slots), then done(ctx). */
void fleet_recover_member(const char *id, void (*done)(void *ctx), void *ctx);
unsigned long long fleet_runs_undone(void);
unsigned long long fleet_keys_put_back(void);

#endif
