/* The per-loop pool of splice pipes (pipepool_i.h): a loop resource, freed with the loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop_i.h"
#include "pipepool_i.h"

/* F_SETPIPE_SZ asks for 1 MiB (the default /proc/sys/fs/pipe-max-size): one SPLICE pair then moves
 * up to 1 MiB. Refused (EPERM above pipe-max-size, or a user past pipe-user-pages-soft) we keep
 * what pipe2 gave. */
#define PIPE_WANT (1u << 20)
/* A user past pipe-user-pages-soft gets 2-page pipes: splicing 8 KiB at a time loses to
 * sendfile(2), which needs no pipe of ours. Below this capacity we use sendfile(2) instead. */
#define PIPE_MIN (64u << 10)
/* Pool pipes alive in the process (2 fds and up to 1 MiB of pipe buffer each). One pipe per
 * concurrent transfer would meet pipe-user-pages-soft (64 MiB per user) near 64 transfers of 1 MiB
 * pipes; past this cap transfers use sendfile(2), so there is no cliff. */
#define PIPES_MAX 64
/* Idle pipes a loop keeps for its next transfers: a blocking call needs one at a time, and an idle
 * pipe a thread keeps is one another thread cannot have. */
#define POOL_IDLE 1
struct pool {
    struct rs_pipe idle[POOL_IDLE];
    unsigned nidle;
};

static _Atomic int pipes_alive;

static const char pool_key = 'p'; /* this file's per-loop resource */

/* (also in a fork child: the child's copies of the pipes are closed, nothing else) */
static void pool_free(void *v)
{
    struct pool *pp = v;
    for (unsigned i = 0; i < pp->nidle; i++) {
        close(pp->idle[i].rd);
        close(pp->idle[i].wr);
        atomic_fetch_sub(&pipes_alive, 1);
    }
    free(pp);
}

static struct pool *pool_of(struct rs_loop *loop)
{
    struct pool *pp = rs__loop_res(loop, &pool_key);
    if (!pp && (pp = calloc(1, sizeof *pp)) && rs__loop_res_attach(loop, &pool_key, pp, pool_free) < 0) {
        free(pp);
        pp = NULL;
    }
    return pp;
}

int rs__pipe_get(struct rs_loop *loop, struct rs_pipe *p, bool *made)
{
    *made = false;
    struct pool *pp = pool_of(loop);
    if (!pp)
        return -ENOMEM;
    if (pp->nidle) {
        *p = pp->idle[--pp->nidle];
        return 0;
    }
    if (atomic_fetch_add(&pipes_alive, 1) >= PIPES_MAX) {
        atomic_fetch_sub(&pipes_alive, 1);
        return -EAGAIN;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        int e = -errno;
        atomic_fetch_sub(&pipes_alive, 1);
        return e;
    }
    int cap = fcntl(fds[1], F_SETPIPE_SZ, (int)PIPE_WANT);
    if (cap < 0)
        cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap < (int)PIPE_MIN) {
        close(fds[0]);
        close(fds[1]);
        atomic_fetch_sub(&pipes_alive, 1);
        return -ENOBUFS;
    }
    *made = true;
    *p = (struct rs_pipe){ .rd = fds[0], .wr = fds[1], .cap = (size_t)cap };
    return 0;
}

void rs__pipe_put(struct rs_loop *loop, struct rs_pipe *p, bool empty)
{
    struct pool *pp = rs__loop_res(loop, &pool_key);
    if (empty && pp && pp->nidle < POOL_IDLE) {
        pp->idle[pp->nidle++] = *p;
        return;
    }
    close(p->rd);
    close(p->wr);
    atomic_fetch_sub(&pipes_alive, 1);
}
