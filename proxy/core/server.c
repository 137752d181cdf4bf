/* The one shared server state (kept apart from main so tests can link),
 * and what the process may hold: the open-files limit against maxclients. */
#include "proxy/core/server.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "util/log.h"

server_state server;

/* Redis's rule: room for maxclients plus a reserve of descriptors (here
 * also the shared store connections). The limit is raised if it can be;
 * otherwise maxclients shrinks to fit, with Redis's warnings. */
#define MIN_RESERVED_FDS 32

int server_fit_open_files(int maxclients, int store_connections)
{
    rlim_t reserved = (rlim_t)MIN_RESERVED_FDS + (rlim_t)store_connections;
    rlim_t maxfiles = (rlim_t)maxclients + reserved;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1) {
        log_warning("Unable to obtain the current NOFILE limit (%s), assuming 1024 and setting the max clients "
                    "configuration accordingly.",
                    strerror(errno));
        return (int)(1024 - reserved);
    }
    rlim_t oldlimit = limit.rlim_cur;
    if (oldlimit >= maxfiles) return maxclients;
    /* Try the full number, then less and less, down to what is set now. */
    rlim_t best = maxfiles;
    int setrlimit_error = 0;
    while (best > oldlimit) {
        limit.rlim_cur = best;
        if (limit.rlim_max < best) limit.rlim_max = best;
        if (setrlimit(RLIMIT_NOFILE, &limit) != -1) break;
        setrlimit_error = errno;
        getrlimit(RLIMIT_NOFILE, &limit);
        if (best < 16) {
            best = oldlimit;
            break;
        }
        best -= 16;
    }
    if (best < oldlimit) best = oldlimit;
    if (best >= maxfiles) {
        log_notice("Increased maximum number of open files to %llu (it was originally set to %llu).",
                   (unsigned long long)maxfiles, (unsigned long long)oldlimit);
        return maxclients;
    }
    if (best <= reserved) {
        log_warning("Your current 'ulimit -n' of %llu is not enough for the server to start. Please increase your "
                    "open file limit to at least %llu. Exiting.",
                    (unsigned long long)oldlimit, (unsigned long long)maxfiles);
        return -1;
    }
    int fit = (int)(best - reserved);
    log_warning("You requested maxclients of %d requiring at least %llu max file descriptors.", maxclients,
                (unsigned long long)maxfiles);
    log_warning("Server can't set maximum open files to %llu because of OS error: %s.", (unsigned long long)maxfiles,
                strerror(setrlimit_error));
    log_warning("Current maximum open files is %llu. maxclients has been reduced to %d to compensate for low "
                "ulimit. If you need higher maxclients increase 'ulimit -n'.",
                (unsigned long long)best, fit);
    return fit;
}
