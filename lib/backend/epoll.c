/* The epoll backend: the readiness engine with an edge-triggered epoll set. An fd is registered
 * once (IN|OUT|RDHUP, edge-triggered) when something first waits on it and never modified, so a
 * wait costs no epoll_ctl; events for fds with no waiters are simply ignored. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ready_i.h"

#define MAX_EVENTS 256

struct epoll_state {
    int epfd;
};

static int ep_init(struct ready *r)
{
    struct epoll_state *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int e = -errno;
        free(s);
        return e;
    }
    /* level-triggered: a wake-up stays visible until rs__ready_woken reads it */
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = r->wakefd };
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) < 0) {
        int e = -errno;
        close(s->epfd);
        free(s);
        return e;
    }
    r->pstate = s;
    return 0;
}

static void ep_fini(struct ready *r)
{
    struct epoll_state *s = r->pstate;
    close(s->epfd);
    free(s);
}

static int ep_update(struct ready *r, int fd, struct fdent *e, uint64_t gen)
{
    if (e->registered && e->gen == gen)
        return 0;
    if (!e->rhead && !e->whead)
        return 0;
    struct epoll_state *s = r->pstate;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET, .data.fd = fd };
    /* A different owner of this fd number (gen) may still be in the set if the old file lives on
     * in a dup: MOD then points the registration at the current file. */
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (errno != EEXIST || epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
            return -errno;
    }
    e->registered = true;
    e->gen = gen;
    return 0;
}

static void ep_forget(struct ready *r, int fd, struct fdent *e)
{
    /* close(2) removes the fd from the set; an explicit EPOLL_CTL_DEL would cost a syscall per
     * close. If a dup keeps the file alive its stale events meet empty lists and are dropped. */
    (void)r;
    (void)fd;
    (void)e;
}

static int ep_wait(struct ready *r, int timeout_ms)
{
    struct epoll_state *s = r->pstate;
    /* on our stack: a callback that runs the loop again must not overwrite the events this
     * wait has yet to dispatch */
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(s->epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return -errno;
    int done = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == r->wakefd) {
            rs__ready_woken(r);
            continue;
        }
        uint32_t ev = evs[i].events;
        short pe = (short)(ev & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLPRI));
        if (ev & EPOLLRDHUP)
            pe |= EPOLLIN;
        done += rs__ready_event(r, evs[i].data.fd, pe);
    }
    return done;
}

static const struct rs_poller epoll_poller = {
    .init = ep_init,
    .fini = ep_fini,
    .update = ep_update,
    .forget = ep_forget,
    .wait = ep_wait,
};

static int epoll_backend_init(struct rs_engine *loop, unsigned entries, unsigned flags)
{
    (void)entries;
    (void)flags;
    return rs__ready_init(loop, &epoll_poller);
}

const struct rs_backend_ops rs__epoll_ops = {
    .name = "epoll",
    .init = epoll_backend_init,
    .fini = rs__ready_fini,
    .abandon = rs__ready_fini, /* close(2) of the epoll fd and free(): nothing acts on the set */
    .submit = rs__ready_submit,
    .wait = rs__ready_wait,
    .cancel = rs__ready_cancel,
    .forget_fd = rs__ready_forget_fd,
    .buffers_init = rs__ready_buffers_init,
    .buffer_update = rs__ready_buffer_update,
};
