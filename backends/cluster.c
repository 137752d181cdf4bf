/* Redis Cluster as the store. */
#include "backends/router_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int backend_url_is_cluster(const char *url)
{
    return url && (!strncasecmp(url, "redis-cluster://", 16) || !strncasecmp(url, "rediss-cluster://", 17));
}

backend *backend_cluster_create(struct event_base *base, const char *url, int connections,
                                const struct store_tls_options *tls, char *err, size_t errlen)
{
    (void)base; (void)url; (void)connections; (void)tls;
    snprintf(err, errlen, "not built yet");
    return NULL;
}
