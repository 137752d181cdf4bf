/* Redis's strict integer parsing (string2ll), shared by the proxy and the
 * backends that translate commands. */
#ifndef EVALPROXY_STRCONV_H
#define EVALPROXY_STRCONV_H

#include <stddef.h>

/* 1 and *out set when s is a decimal long long as Redis accepts it: no
 * spaces, no '+', no leading zeros; else 0. */
int string_to_ll(const char *s, size_t len, long long *out);

/* A memory size ("10mb", "1gb"); *err set to 1 when it is not one. */
long long mem_to_ll(const char *p, int *err);
/* The value of a "name:value" line of an INFO text (len bytes), or NULL;
 * *vlen (if given) is its length up to the line's end. */
const char *info_text_field(const char *text, size_t len, const char *name, size_t *vlen);

#endif
