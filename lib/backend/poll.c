/* The poll backend: the readiness engine over poll(2), for where io_uring and epoll are refused
 * (seccomp profiles, gVisor, old kernels). The pollfd array holds the loop's wake-up eventfd and
 * the fds with waiters. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "ready_i.h"

struct poll_state {
    struct pollfd *v;
    size_t len, cap;
    struct pollfd *ready; /* snapshot of ready entries: dispatch may reorder v */
    size_t ready_cap;
};

static int pl_init(struct ready *r)
{
    struct poll_state *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    /* slot 0 is the wake-up eventfd for the loop's whole life: drop_slot never moves it */
    s->v = malloc(16 * sizeof *s->v);
    if (!s->v) {
        free(s);
        return -ENOMEM;
    }
    s->cap = 16;
    s->len = 1;
    s->v[0] = (struct pollfd){ .fd = r->wakefd, .events = POLLIN };
    r->pstate = s;
    return 0;
}

static void pl_fini(struct ready *r)
{
    struct poll_state *s = r->pstate;
    free(s->v);
    free(s->ready);
    free(s);
}

static void drop_slot(struct ready *r, struct fdent *e)
{
    struct poll_state *s = r->pstate;
    size_t i = e->slot;
    s->len--;
    if (i != s->len) {
        s->v[i] = s->v[s->len];
        r->fds[s->v[i].fd].slot = (uint32_t)i;
    }
    e->registered = false;
}

static int pl_update(struct ready *r, int fd, struct fdent *e, uint64_t gen)
{
    struct poll_state *s = r->pstate;
    short want = (short)((e->rhead ? POLLIN | POLLPRI : 0) | (e->whead ? POLLOUT : 0));
    if (!want) {
        if (e->registered)
            drop_slot(r, e);
        return 0;
    }
    if (!e->registered) {
        if (s->len == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            struct pollfd *v = realloc(s->v, cap * sizeof *v);
            if (!v)
                return -ENOMEM;
            s->v = v;
            s->cap = cap;
        }
        e->slot = (uint32_t)s->len++;
        s->v[e->slot].fd = fd;
        e->registered = true;
    }
    e->gen = gen;
    s->v[e->slot].events = want;
    return 0;
}

static void pl_forget(struct ready *r, int fd, struct fdent *e)
{
    (void)fd;
    if (e->registered)
        drop_slot(r, e);
}

static int pl_wait(struct ready *r, int timeout_ms)
{
    struct poll_state *s = r->pstate;
    int n = poll(s->v, (nfds_t)s->len, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    if (s->v[0].revents) {
        rs__ready_woken(r);
        n--;
    }
    /* The snapshot is taken from the state for the dispatch: a callback that runs the loop
     * again makes its own and must not overwrite the entries this wait has yet to dispatch. */
    struct pollfd *ready = s->ready;
    size_t cap = s->ready_cap;
    s->ready = NULL;
    s->ready_cap = 0;
    if ((size_t)n > cap) {
        struct pollfd *v = realloc(ready, (size_t)n * sizeof *v);
        if (!v) {
            free(ready);
            return -ENOMEM;
        }
        ready = v;
        cap = (size_t)n;
    }
    size_t k = 0;
    for (size_t i = 1; i < s->len && k < (size_t)n; i++)
        if (s->v[i].revents)
            ready[k++] = s->v[i];
    int done = 0;
    for (size_t i = 0; i < k; i++)
        done += rs__ready_event(r, ready[i].fd, ready[i].revents);
    if (!s->ready) {
        s->ready = ready;
        s->ready_cap = cap;
    } else {
        free(ready);
    }
    return done;
}

static const struct rs_poller poll_poller = {
    .init = pl_init,
    .fini = pl_fini,
    .update = pl_update,
    .forget = pl_forget,
    .wait = pl_wait,
};

static int poll_backend_init(struct rs_engine *loop, unsigned entries, unsigned flags)
{
    (void)entries;
    (void)flags;
    return rs__ready_init(loop, &poll_poller);
}

const struct rs_backend_ops rs__poll_ops = {
    .name = "poll",
    .init = poll_backend_init,
    .fini = rs__ready_fini,
    .abandon = rs__ready_fini, /* memory only */
    .submit = rs__ready_submit,
    .wait = rs__ready_wait,
    .cancel = rs__ready_cancel,
    .forget_fd = rs__ready_forget_fd,
    .buffers_init = rs__ready_buffers_init,
    .buffer_update = rs__ready_buffer_update,
};
