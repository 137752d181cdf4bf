#ifndef EVALPROXY_RESP3_H
#define EVALPROXY_RESP3_H
#include <stddef.h>
struct evbuffer;
typedef struct resp3_shape resp3_shape;
const resp3_shape *resp3_shape_for(const char *name, int argc, char **argv, const size_t *argvlen);
long resp3_convert(const resp3_shape *s, const char *in, size_t len, struct evbuffer *out);
long resp3_convert_exec(const resp3_shape *const *shapes, int n, const char *in, size_t len, struct evbuffer *out);
#endif
