/* The readiness engine shared by the epoll and poll backends: try the non-blocking syscall, on
 * EAGAIN queue the operation on its fd and wait for readiness, then retry; deadlines in a heap. */
#ifndef RS_READY_I_H
#define RS_READY_I_H

#include <stdbool.h>
#include <stdint.h>

#include "heap_i.h"
#include "backend.h"

struct ready;

/* Per-fd waiters: operations waiting to read (accept, recv) and to write (connect, send). */
struct fdent {
    struct rs_op *rhead, *rtail, *whead, *wtail;
    uint64_t gen; /* fdgen the poller registration belongs to */
    bool registered;
    uint32_t slot; /* poll backend: index in its pollfd array */
};

/* How a readiness backend learns about fds: the only part epoll and poll do differently. */
struct rs_poller {
    int (*init)(struct ready *r);
    void (*fini)(struct ready *r);
    /* The waiter lists of fd changed (ent says what is waited for). 0 or -errno. */
    int (*update)(struct ready *r, int fd, struct fdent *ent, uint64_t gen);
    /* The fd is being closed. */
    void (*forget)(struct ready *r, int fd, struct fdent *ent);
    /* Wait up to timeout_ms (-1 forever) and call rs__ready_event for each ready fd. Returns the
     * number of events or -errno. */
    int (*wait)(struct ready *r, int timeout_ms);
};

struct ready {
    const struct rs_poller *p;
    struct rs_engine *loop;
    struct fdent *fds;
    size_t nfds;
    struct rs_heap heap;
    void *pstate; /* the poller's own state */
    int *kick;    /* fds to try on the next turn without waiting for an event */
    size_t nkick, kick_cap;
    char *scratch;     /* multishot receives read here; the callback borrows it */
    bool scratch_busy; /* a delivery from scratch is in progress (a callback may run the loop) */
    int wakefd;        /* the loop's wake-up eventfd: pollers watch it, level-triggered */
};

int rs__ready_init(struct rs_engine *loop, const struct rs_poller *p);
void rs__ready_fini(struct rs_engine *loop);
int rs__ready_submit(struct rs_engine *loop, struct rs_op *op);
int rs__ready_wait(struct rs_engine *loop, bool block, unsigned min, int64_t deadline);
int rs__ready_cancel(struct rs_engine *loop, struct rs_op *op);
void rs__ready_forget_fd(struct rs_engine *loop, int fd);
int rs__ready_buffers_init(struct rs_engine *loop, unsigned nslots);
int rs__ready_buffer_update(struct rs_engine *loop, unsigned slot, const struct iovec *iov);
/* For pollers: the wake-up eventfd was readable; reset it. */
void rs__ready_woken(struct ready *r);
/* For pollers: fd is ready for revents (POLLIN/POLLOUT/POLLERR/POLLHUP bits). */
int rs__ready_event(struct ready *r, int fd, short revents);

#endif
