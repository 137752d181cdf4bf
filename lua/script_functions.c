/* Redis 7.0 Functions: the library registry. A library is its code and the
 * functions its load registered; the registry keeps libraries in name order
 * and an index of every function by name (case-insensitive, as Redis's
 * function dictionary). Changes are all or nothing: a load, a replace or a
 * restore is built on the side and swapped in only when it is valid. The
 * Lua side (compiling, the load environment, redis.register_function) is in
 * script_engine.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/script_engine.h"
#include "lua/script_internal.h"

struct script_function {
    char *name;
    char *desc; /* NULL: none */
    size_t desc_len;
    int flags;
    unsigned host_bits;
    int ref; /* registry ref of the callback */
    struct script_library *lib;
    struct script_function *hnext; /* index chain */
};

struct script_library {
    char *name;
    char *code;
    size_t code_len;
    script_function **fns; /* name order */
    int nfns, capfns;
};

struct fn_registry {
    script_library **libs; /* name order */
    size_t nlibs, caplibs;
    script_function **index;
    size_t nbuckets, nfunctions;
};

struct fn_loader {
    script_engine *e;
    script_library *lib;
};

#define LIBRARY_NAME_ERROR \
    "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* [a-zA-Z0-9_]+, as Redis's functionsVerifyName. */
static int valid_name(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

static void set_errf(char *err, size_t errlen, const char *fmt, const char *a)
{
    snprintf(err, errlen, fmt, a);
    for (char *p = err; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
}

/* ---- libraries ---------------------------------------------------------------- */

static void library_free(script_engine *e, script_library *l)
{
    if (!l) return;
    for (int i = 0; i < l->nfns; i++) {
        engine_unref(e, l->fns[i]->ref);
        free(l->fns[i]->name);
        free(l->fns[i]->desc);
        free(l->fns[i]);
    }
    free(l->fns);
    free(l->name);
    free(l->code);
    free(l);
}

int fn_loader_add(fn_loader *ld, const char *name, size_t nlen, const char *desc, size_t dlen, int flags, int ref,
                  const char **err)
{
    script_library *l = ld->lib;
    /* Redis 7.0 reports a bad function name with the library-name text. */
    if (!valid_name(name, nlen) || memchr(name, '\0', nlen)) {
        engine_unref(ld->e, ref);
        *err = LIBRARY_NAME_ERROR;
        return -1;
    }
    int pos = 0;
    while (pos < l->nfns && strcmp(l->fns[pos]->name, name) < 0) pos++;
    if (pos < l->nfns && strcmp(l->fns[pos]->name, name) == 0) {
        engine_unref(ld->e, ref);
        *err = "Function already exists in the library";
        return -1;
    }
    if (l->nfns == l->capfns) {
        l->capfns = l->capfns ? l->capfns * 2 : 4;
        l->fns = realloc(l->fns, sizeof(*l->fns) * (size_t)l->capfns);
        if (!l->fns) abort();
    }
    script_function *f = calloc(1, sizeof(*f));
    if (!f) abort();
    f->name = xstrndup(name, nlen);
    if (desc) {
        f->desc = xstrndup(desc, dlen);
        f->desc_len = dlen;
    }
    f->flags = flags;
    f->ref = ref;
    f->lib = l;
    memmove(l->fns + pos + 1, l->fns + pos, sizeof(*l->fns) * (size_t)(l->nfns - pos));
    l->fns[pos] = f;
    l->nfns++;
    return 0;
}

/* ---- the registry --------------------------------------------------------------- */

fn_registry *fn_registry_new(void)
{
    fn_registry *r = calloc(1, sizeof(*r));
    if (!r) abort();
    return r;
}

void fn_registry_free(script_engine *e, fn_registry *reg)
{
    if (!reg) return;
    for (size_t i = 0; i < reg->nlibs; i++) library_free(e, reg->libs[i]);
    free(reg->libs);
    free(reg->index);
    free(reg);
}

static size_t name_hash(const char *s, size_t n)
{
    unsigned long long h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)tolower((unsigned char)s[i])) * 1099511628211ull;
    return (size_t)h;
}

static void reindex(fn_registry *reg)
{
    size_t total = 0;
    for (size_t i = 0; i < reg->nlibs; i++) total += (size_t)reg->libs[i]->nfns;
    size_t nb = 16;
    while (nb < total * 2) nb *= 2;
    free(reg->index);
    reg->index = calloc(nb, sizeof(*reg->index));
    if (!reg->index) abort();
    reg->nbuckets = nb;
    reg->nfunctions = total;
    for (size_t i = 0; i < reg->nlibs; i++) {
        script_library *l = reg->libs[i];
        for (int j = 0; j < l->nfns; j++) {
            script_function *f = l->fns[j];
            size_t k = name_hash(f->name, strlen(f->name)) & (nb - 1);
            f->hnext = reg->index[k];
            reg->index[k] = f;
        }
    }
}

static script_function *reg_find_function(const fn_registry *reg, const char *name, size_t len)
{
    if (!reg->nbuckets) return NULL;
    for (script_function *f = reg->index[name_hash(name, len) & (reg->nbuckets - 1)]; f; f = f->hnext)
        if (strlen(f->name) == len && strncasecmp(f->name, name, len) == 0) return f;
    return NULL;
}

/* Index of the library called name, or where it would go (*found = 0). */
static size_t reg_lib_pos(const fn_registry *reg, const char *name, size_t len, int *found)
{
    size_t lo = 0, hi = reg->nlibs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *m = reg->libs[mid]->name;
        size_t ml = strlen(m);
        int c = memcmp(m, name, ml < len ? ml : len);
        if (c == 0) c = ml < len ? -1 : ml > len ? 1 : 0;
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static void reg_insert(fn_registry *reg, script_library *l)
{
    int found;
    size_t pos = reg_lib_pos(reg, l->name, strlen(l->name), &found);
    if (reg->nlibs == reg->caplibs) {
        reg->caplibs = reg->caplibs ? reg->caplibs * 2 : 8;
        reg->libs = realloc(reg->libs, sizeof(*reg->libs) * reg->caplibs);
        if (!reg->libs) abort();
    }
    memmove(reg->libs + pos + 1, reg->libs + pos, sizeof(*reg->libs) * (reg->nlibs - pos));
    reg->libs[pos] = l;
    reg->nlibs++;
}

static script_library *reg_remove_at(fn_registry *reg, size_t pos)
{
    script_library *l = reg->libs[pos];
    memmove(reg->libs + pos, reg->libs + pos + 1, sizeof(*reg->libs) * (reg->nlibs - pos - 1));
    reg->nlibs--;
    return l;
}

/* ---- loading ------------------------------------------------------------------------ */

/* The shebang "#!<engine> name=<lib>", as Redis's functionExtractLibMetaData.
 * On success *name is malloc'd and *body_at is where the code after the
 * shebang starts (at its newline, so line numbers stay). */
static int parse_metadata(const char *code, size_t len, char **name, size_t *body_at, char *err, size_t errlen)
{
    *name = NULL;
    if (len < 2 || code[0] != '#' || code[1] != '!') {
        set_errf(err, errlen, "%s", "ERR Missing library metadata");
        return -1;
    }
    /* Redis looks for the newline with strchr: a NUL ends the search. */
    size_t eol = 0;
    while (eol < len && code[eol] != '\n' && code[eol] != '\0') eol++;
    if (eol >= len || code[eol] != '\n') {
        set_errf(err, errlen, "%s", "ERR Invalid library metadata");
        return -1;
    }
    char *buf = xmalloc(eol + 1);
    char **parts = xmalloc(sizeof(char *) * (eol / 2 + 2));
    int n = engine_split_args(code, eol, buf, parts, (int)(eol / 2 + 2));
    int rc = -1;
    if (n <= 0) {
        set_errf(err, errlen, "%s", "ERR Invalid library metadata");
        goto done;
    }
    const char *engine = parts[0] + 2;
    for (int i = 1; i < n; i++) {
        if (strncasecmp(parts[i], "name=", 5) == 0) {
            if (*name) {
                set_errf(err, errlen, "%s", "ERR Invalid metadata value, name argument was given multiple times");
                goto done;
            }
            *name = xstrndup(parts[i] + 5, strlen(parts[i] + 5));
            continue;
        }
        set_errf(err, errlen, "ERR Invalid metadata value given: %.200s", parts[i]);
        goto done;
    }
    if (!*name) {
        set_errf(err, errlen, "%s", "ERR Library name was not given");
        goto done;
    }
    if (!valid_name(*name, strlen(*name))) {
        set_errf(err, errlen, "%s", "ERR " LIBRARY_NAME_ERROR);
        goto done;
    }
    if (strcasecmp(engine, "lua") != 0) {
        set_errf(err, errlen, "ERR Engine '%.200s' not found", engine);
        goto done;
    }
    *body_at = eol;
    rc = 0;
done:
    if (rc != 0) {
        free(*name);
        *name = NULL;
    }
    free(buf);
    free(parts);
    return rc;
}

/* Redis's functionsCreateWithLibraryCtx into reg. Returns the new library
 * (linked into reg) or NULL with err. */
static script_library *library_create(script_engine *e, fn_registry *reg, const char *code, size_t len, int replace,
                                      char *err, size_t errlen)
{
    char *name;
    size_t body_at;
    if (parse_metadata(code, len, &name, &body_at, err, errlen) != 0) return NULL;
    int found;
    size_t old_pos = reg_lib_pos(reg, name, strlen(name), &found);
    script_library *old = found ? reg->libs[old_pos] : NULL;
    if (old && !replace) {
        set_errf(err, errlen, "ERR Library '%.200s' already exists", name);
        free(name);
        return NULL;
    }
    script_library *l = calloc(1, sizeof(*l));
    if (!l) abort();
    l->name = name;
    l->code = xstrndup(code, len);
    l->code_len = len;
    fn_loader ld = {e, l};
    if (engine_run_library(e, code + body_at, len - body_at, &ld, err, errlen) != 0) goto fail;
    if (l->nfns == 0) {
        set_errf(err, errlen, "%s", "ERR No functions registered");
        goto fail;
    }
    for (int i = 0; i < l->nfns; i++) {
        script_function *other = reg_find_function(reg, l->fns[i]->name, strlen(l->fns[i]->name));
        if (other && other->lib != old) {
            set_errf(err, errlen, "ERR Function %.200s already exists", l->fns[i]->name);
            goto fail;
        }
    }
    if (old) library_free(e, reg_remove_at(reg, old_pos));
    reg_insert(reg, l);
    reindex(reg);
    return l;
fail:
    library_free(e, l);
    return NULL;
}

const script_library *script_functions_load(script_engine *e, const char *code, size_t len, int replace, char *err,
                                            size_t errlen)
{
    return library_create(e, engine_functions(e), code, len, replace, err, errlen);
}

int script_functions_delete(script_engine *e, const char *name, size_t len)
{
    fn_registry *reg = engine_functions(e);
    int found;
    size_t pos = reg_lib_pos(reg, name, len, &found);
    if (!found) return -1;
    library_free(e, reg_remove_at(reg, pos));
    reindex(reg);
    return 0;
}

void script_functions_flush(script_engine *e)
{
    fn_registry_free(e, engine_functions(e));
    engine_set_functions(e, fn_registry_new());
}

int script_functions_restore(script_engine *e, int n, const char *const *codes, const size_t *lens, int policy,
                             char *err, size_t errlen)
{
    /* The payload's libraries first form a registry of their own. */
    fn_registry *in = fn_registry_new();
    for (int i = 0; i < n; i++) {
        if (!library_create(e, in, codes[i], lens[i], 0, err, errlen)) {
            fn_registry_free(e, in);
            return -1;
        }
    }
    if (policy == SCRIPT_RESTORE_FLUSH) {
        fn_registry_free(e, engine_functions(e));
        engine_set_functions(e, in);
        return 0;
    }
    /* Redis's libraryJoin: library clashes first, then function clashes
     * against what stays. */
    fn_registry *cur = engine_functions(e);
    char *replaced = calloc(cur->nlibs ? cur->nlibs : 1, 1);
    if (!replaced) abort();
    int rc = -1;
    for (size_t i = 0; i < in->nlibs; i++) {
        int found;
        size_t pos = reg_lib_pos(cur, in->libs[i]->name, strlen(in->libs[i]->name), &found);
        if (!found) continue;
        if (policy != SCRIPT_RESTORE_REPLACE) {
            set_errf(err, errlen, "ERR Library %.200s already exists", in->libs[i]->name);
            goto done;
        }
        replaced[pos] = 1;
    }
    for (size_t i = 0; i < in->nlibs; i++) {
        script_library *l = in->libs[i];
        for (int j = 0; j < l->nfns; j++) {
            script_function *f = reg_find_function(cur, l->fns[j]->name, strlen(l->fns[j]->name));
            if (!f) continue;
            int found;
            size_t pos = reg_lib_pos(cur, f->lib->name, strlen(f->lib->name), &found);
            if (found && replaced[pos]) continue;
            set_errf(err, errlen, "ERR Function %.200s already exists", l->fns[j]->name);
            goto done;
        }
    }
    for (size_t pos = cur->nlibs; pos-- > 0;)
        if (replaced[pos]) library_free(e, reg_remove_at(cur, pos));
    for (size_t i = 0; i < in->nlibs; i++) reg_insert(cur, in->libs[i]);
    in->nlibs = 0;
    reindex(cur);
    rc = 0;
done:
    free(replaced);
    fn_registry_free(e, in);
    return rc;
}

/* ---- lookups ---------------------------------------------------------------------- */

const script_function *script_function_find(script_engine *e, const char *name, size_t len)
{
    return reg_find_function(engine_functions(e), name, len);
}

size_t script_library_count(const script_engine *e) { return engine_functions((script_engine *)e)->nlibs; }
size_t script_function_count(const script_engine *e) { return engine_functions((script_engine *)e)->nfunctions; }
const script_library *script_library_at(const script_engine *e, size_t i)
{
    fn_registry *reg = engine_functions((script_engine *)e);
    return i < reg->nlibs ? reg->libs[i] : NULL;
}
const char *script_library_name(const script_library *l) { return l->name; }
const char *script_library_code(const script_library *l, size_t *len)
{
    if (len) *len = l->code_len;
    return l->code;
}
int script_library_function_count(const script_library *l) { return l->nfns; }
const script_function *script_library_function(const script_library *l, int i)
{
    return i >= 0 && i < l->nfns ? l->fns[i] : NULL;
}
const char *script_function_name(const script_function *f) { return f->name; }
const char *script_function_desc(const script_function *f, size_t *len)
{
    if (len) *len = f->desc_len;
    return f->desc;
}
int script_function_flags(const script_function *f) { return f->flags; }
unsigned script_function_host_bits(const script_function *f) { return f->host_bits; }
void script_function_set_host_bits(const script_function *f, unsigned bits)
{
    ((script_function *)f)->host_bits = bits;
}
int engine_function_ref(const void *f) { return ((const script_function *)f)->ref; }
