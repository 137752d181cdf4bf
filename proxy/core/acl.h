/* Redis 7.0 users and ACL rules: parsing, description (ACL LIST/GETUSER),
 * permission checks, the ACL log and the ACL file. Pure data: no sockets and
 * no clients here; the connection side lives in commands/acl_command.c and dispatch.c. */
#ifndef EVALPROXY_ACL_H
#define EVALPROXY_ACL_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/core/command_table.h"

/* Check results, numbered as in Redis (the log's "reason"). */
enum { ACL_OK = 0, ACL_DENIED_CMD = 1, ACL_DENIED_KEY = 2, ACL_DENIED_AUTH = 3, ACL_DENIED_CHANNEL = 4 };
/* Where a denial happened (the log's "context"). */
enum { ACL_CTX_TOPLEVEL = 0, ACL_CTX_MULTI = 1, ACL_CTX_LUA = 2 };

/* Why a rule was refused; acl_error_text() gives Redis's words. */
enum {
    ACL_ERR_NONE = 0,
    ACL_ERR_SYNTAX,
    ACL_ERR_UNKNOWN,         /* unknown command or category */
    ACL_ERR_KEYS_AFTER_ALL,  /* ~pattern after allkeys */
    ACL_ERR_CHANS_AFTER_ALL, /* &pattern after allchannels */
    ACL_ERR_NO_SUCH_PASS,
    ACL_ERR_BAD_HASH,
    ACL_ERR_DUPLICATE_USER,
    ACL_ERR_SUB_FIRSTARG,
};

#define ACL_USER_ON (1 << 0)
#define ACL_USER_OFF (1 << 1)
#define ACL_USER_NOPASS (1 << 2)
#define ACL_USER_SKIP_SANITIZE (1 << 3)
#define ACL_USER_SANITIZE (1 << 4)

#define ACL_SEL_ALLKEYS (1 << 0)
#define ACL_SEL_ALLCHANNELS (1 << 1)
#define ACL_SEL_ALLCOMMANDS (1 << 2)

#define ACL_PERM_READ 1
#define ACL_PERM_WRITE 2
#define ACL_PERM_ALL 3

#define ACL_CMD_WORDS 16 /* 1024 command bits, as Redis */

typedef struct acl_key_pattern {
    char *pattern;
    size_t len;
    int perms; /* ACL_PERM_* */
} acl_key_pattern;

/* What a selector allows: commands, keys and channels. A user has its root
 * selector and, optionally, more `(...)` selectors; a command is allowed
 * when one of them allows it. */
typedef struct acl_selector {
    int flags;                 /* ACL_SEL_* */
    uint64_t cmd_bits[ACL_CMD_WORDS];
    int future_commands;       /* started from +@all: commands not in the table run too */
    char ***firstargs;         /* per command id: NULL-terminated allowed first args, or NULL */
    acl_key_pattern *keys;
    int nkeys;
    char **channels;
    size_t *chanlens;
    int nchannels;
} acl_selector;

typedef struct acl_user {
    char *name;
    size_t namelen;
    int flags;                 /* ACL_USER_* */
    char (*passwords)[65];     /* SHA-256 hex of each password, in order */
    int npasswords;
    acl_selector root;
    acl_selector *selectors;   /* the (...) ones */
    int nselectors;
    int unrestricted; /* all commands, keys and channels: checks can be skipped */
    int refs;         /* clients and running scripts using it */
    int deleted;      /* no longer in the users table: freed at refs == 0 */
} acl_user;

/* Builds the command ids and categories (once) and the default user. */
void acl_init(void);
acl_user *acl_default_user(void);
acl_user *acl_find_user(const char *name, size_t len);
/* All users, sorted by name as Redis lists them. */
acl_user **acl_users(int *count);

void acl_user_retain(acl_user *u);
void acl_user_release(acl_user *u);

/* A user that belongs to no table (to stage changes): free with acl_user_free. */
acl_user *acl_user_new_unlinked(const char *name, size_t len);
void acl_user_free(acl_user *u);
void acl_user_copy(acl_user *dst, const acl_user *src); /* rules only, not the name */
/* Creates a user in the table (NULL if the name exists). */
acl_user *acl_create_user(const char *name, size_t len);
/* Removes a user from the table; returns it (still allocated while referenced) or NULL. */
acl_user *acl_remove_user(const char *name, size_t len);

/* Applies one rule. Returns ACL_ERR_NONE or the reason. */
int acl_set_user(acl_user *u, const char *op, size_t len);
const char *acl_error_text(int err);
/* 1 if the string has spaces or NUL bytes (not allowed in names and patterns). */
int acl_has_spaces(const char *s, size_t len);

/* Credentials: the user, or NULL if unknown, disabled or the password is wrong. */
acl_user *acl_check_credentials(const char *user, size_t ulen, const char *pass, size_t plen);
/* The default user's password from requirepass (len 0 = nopass); binary. */
void acl_set_default_password(const char *pass, size_t len);

/* The check Redis runs before a command: ACL_OK or ACL_DENIED_*; on a key or
 * channel denial *argpos is the offending argument. */
int acl_check_command(const acl_user *u, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                      int *argpos);

/* SORT and SORT_RO with BY <pattern> or GET read keys the arguments do not
 * name: as Redis 7.0 they need a selector allowing the command with read
 * access to all keys. Redis's error text, or NULL (allowed, or an earlier
 * argument error the store reports). */
const char *acl_sort_option_denied(const acl_user *u, const command_def *cmd, int argc, char **argv,
                                   size_t *argvlen);
/* A channel (literal: a PSUBSCRIBE pattern, compared as it is) against the user's channel patterns. */
int acl_channel_allowed(const acl_user *u, const char *ch, size_t len, int literal);
/* Whether a change of the user from old to upcoming may leave subscribers
 * with channels they may no longer use (Redis's test: upcoming has no
 * selector with all channels, and some channel pattern of old is gone). */
int acl_channels_may_revoke(const acl_user *old, const acl_user *upcoming);
/* Merges selector arguments split by spaces ("(~x" "+get)") into one.
 * Returns a malloc'd array of pointers (elements malloc'd) and its size,
 * or NULL with *bad set to the index of the unmatched "(" argument. */
char **acl_merge_selector_args(int argc, char **argv, size_t *argvlen, int *merged_argc, size_t **merged_lens,
                               int *bad);

/* Descriptions, malloc'd strings. */
char *acl_describe_user(const acl_user *u);        /* what follows "user <name> " */
char *acl_describe_commands(const acl_selector *s); /* "+@all -get" */
char *acl_describe_keys(const acl_selector *s);     /* GETUSER keys */
char *acl_describe_channels(const acl_selector *s); /* GETUSER channels */

/* Categories. */
const char *const *acl_category_names(void);       /* NULL-terminated, Redis's order */
uint32_t acl_category_by_name(const char *name, size_t len); /* 0 if unknown */
uint32_t acl_command_categories(const command_def *cmd);

/* The user directive of proxy.conf (argv[0] is the user name): checked now,
 * applied by acl_load_startup. NULL or the reason. */
const char *acl_config_user(int argc, char **argv);
int acl_config_user_count(void);
/* Applies the configured users or the ACL file. 0, or -1 with the reason. */
int acl_load_startup(const char *aclfile, char *err, size_t errlen);

/* ACL LOAD: NULL on success, else the error text (malloc'd); users are
 * unchanged on error. On success the users that were replaced are passed to
 * gone(ctx, user) before release, so their clients can be closed. */
char *acl_load_file(const char *path, void (*gone)(void *ctx, acl_user *u), void *ctx);
/* ACL SAVE: 0 or -1 (errno set). */
int acl_save_file(const char *path);
/* The users as config lines "user <name> <rules>", malloc'd, one per line. */
char *acl_config_lines(void);
/* 1 while the users are what the proxy starts with when none is configured. */
int acl_is_pristine(void);

/* The ACL log. */
typedef struct acl_log_entry {
    struct acl_log_entry *next;
    long long count;
    int reason, context;
    char *object, *username, *cinfo;
    size_t object_len, username_len, cinfo_len;
    long long ctime_ms;
} acl_log_entry;
void acl_log_add(int reason, int context, const char *object, size_t olen, const char *username, size_t ulen,
                 const char *cinfo, size_t clen, long long max_len);
acl_log_entry *acl_log_entries(void); /* newest first */
void acl_log_reset(void);
void acl_shutdown(void);

#endif
