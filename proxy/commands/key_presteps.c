/* The registry of work done under a command's key locks before it runs. */
#include "proxy/commands/key_presteps.h"

#include <stdlib.h>

#define MAX_PRESTEPS 4

static const key_prestep *presteps[MAX_PRESTEPS];
static int npresteps;

void key_prestep_register(const key_prestep *p)
{
    for (int i = 0; i < npresteps; i++)
        if (presteps[i] == p) return;
    if (npresteps == MAX_PRESTEPS) abort(); /* a fixed set of features registers here */
    presteps[npresteps++] = p;
}

int key_presteps_wanted(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen)
{
    for (int i = 0; i < npresteps; i++)
        if (presteps[i]->wanted(cmd, db, argc, argv, argvlen)) return 1;
    return 0;
}

/* One run through the registry: which prestep is next. */
typedef struct prestep_chain {
    prestep_call call;
    int next;
    prestep_done_fn *done;
    void *ctx;
} prestep_chain;

static void chain_step(void *ctx, const char *error)
{
    prestep_chain *ch = ctx;
    if (!error) {
        while (ch->next < npresteps) {
            const key_prestep *p = presteps[ch->next++];
            const prestep_call *c = &ch->call;
            if (p->wanted(c->cmd, c->db, c->argc, c->argv, c->argvlen)) {
                p->run(c, chain_step, ch);
                return;
            }
        }
    }
    prestep_done_fn *done = ch->done;
    void *dctx = ch->ctx;
    free(ch);
    done(dctx, error);
}

void key_presteps_run(const prestep_call *call, prestep_done_fn *done, void *ctx)
{
    prestep_chain *ch = malloc(sizeof(*ch));
    if (!ch) abort();
    ch->call = *call;
    ch->next = 0;
    ch->done = done;
    ch->ctx = ctx;
    chain_step(ch, NULL);
}
