/* The readiness engine behind the epoll and poll backends. An operation is first tried as a
 * non-blocking syscall; on EAGAIN it waits on its fd's read or write list (in submission order)
 * until the poller reports readiness, and is retried; deadlines live in a min-heap. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ready_i.h"
#include "../fault_i.h"

/* op->bstate bits owned by this file (bit 0 belongs to rs__op_try's connect state) */
#define ON_LIST 0x80
#define ON_HEAP 0x40

static bool writes(const struct rs_op *op)
{
    short ev;
    rs__op_try_events(op, &ev);
    return ev == POLLOUT;
}

static struct fdent *ent_get(struct ready *r, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= r->nfds) {
        size_t n = r->nfds ? r->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct fdent *v = realloc(r->fds, n * sizeof *v);
        if (!v)
            return NULL;
        memset(v + r->nfds, 0, (n - r->nfds) * sizeof *v);
        r->fds = v;
        r->nfds = n;
    }
    return &r->fds[fd];
}

int rs__ready_init(struct rs_engine *loop, const struct rs_poller *p)
{
    struct ready *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->p = p;
    r->loop = loop;
    r->wakefd = loop->wakefd;
    int rc = p->init(r);
    if (rc < 0) {
        free(r);
        return rc;
    }
    loop->be = r;
    return 0;
}

void rs__ready_fini(struct rs_engine *loop)
{
    struct ready *r = loop->be;
    r->p->fini(r);
    free(r->kick);
    free(r->scratch);
    rs__heap_free(&r->heap);
    free(r->fds);
    free(r);
    loop->be = NULL;
}

void rs__ready_woken(struct ready *r)
{
    uint64_t v;
    ssize_t n = read(r->wakefd, &v, sizeof v);
    (void)n; /* level-triggered: a read that failed is retried at the next wait */
}

static void list_append(struct rs_op **head, struct rs_op **tail, struct rs_op *op)
{
    op->next = NULL;
    if (*tail)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
}

static void list_remove(struct rs_op **head, struct rs_op **tail, struct rs_op *op)
{
    struct rs_op *prev = NULL;
    for (struct rs_op *o = *head; o; prev = o, o = o->next) {
        if (o != op)
            continue;
        if (prev)
            prev->next = o->next;
        else
            *head = o->next;
        if (*tail == o)
            *tail = prev;
        o->next = NULL;
        return;
    }
}

/* Take op off its fd list and the heap. */
static void unlink_op(struct ready *r, struct rs_op *op)
{
    if (op->bstate & ON_LIST) {
        struct fdent *e = &r->fds[op->fd];
        if (writes(op))
            list_remove(&e->whead, &e->wtail, op);
        else
            list_remove(&e->rhead, &e->rtail, op);
    }
    if (op->bstate & ON_HEAP)
        rs__heap_remove(&r->heap, op);
    op->bstate &= (uint8_t) ~(ON_LIST | ON_HEAP);
}

int rs__ready_submit(struct rs_engine *loop, struct rs_op *op)
{
    struct ready *r = loop->be;
    op->heap_idx = RS_HEAP_NONE;
    if (op->kind == RS_OP_TIMER) {
        int rc = rs__heap_push(&r->heap, op);
        if (rc == 0)
            op->bstate |= ON_HEAP;
        return rc;
    }
    struct fdent *e = ent_get(r, op->fd);
    if (!e)
        return op->fd < 0 ? -EBADF : -ENOMEM;
    struct rs_op **head = writes(op) ? &e->whead : &e->rhead;
    struct rs_op **tail = writes(op) ? &e->wtail : &e->rtail;
    if (op->multishot) {
        /* Not tried here (a delivery would run a callback inside the submitting call): the fd
         * is tried on the next turn instead. An edge-triggered poller would not report data
         * that was already waiting. */
        if (op->kind == RS_OP_RECV && !op->u.io.buf && !r->scratch &&
            !(r->scratch = malloc(RS_READY_RECV_BUF)))
            return -ENOMEM;
        if (r->nkick == r->kick_cap) {
            size_t cap = r->kick_cap ? r->kick_cap * 2 : 16;
            int *k = realloc(r->kick, cap * sizeof *k);
            if (!k)
                return -ENOMEM;
            r->kick = k;
            r->kick_cap = cap;
        }
        r->kick[r->nkick++] = op->fd;
    } else if (!*head) {
        /* Earlier operations of the same direction still waiting go first: no overtaking. */
        short ev;
        int res = rs__op_try(op, &ev);
        if (res != -EAGAIN || op->deadline == RS_DEADLINE_NOW) {
            rs__eng_defer(loop, op, res);
            return 0;
        }
    } else if (op->deadline == RS_DEADLINE_NOW) {
        rs__eng_defer(loop, op, -EAGAIN);
        return 0;
    }
    list_append(head, tail, op);
    op->bstate |= ON_LIST;
    int rc = 0;
    if (op->deadline != RS_DEADLINE_NONE) {
        rc = rs__heap_push(&r->heap, op);
        if (rc == 0)
            op->bstate |= ON_HEAP;
    }
    if (rc == 0)
        rc = r->p->update(r, op->fd, e, op->fdgen);
    if (rc < 0)
        unlink_op(r, op);
    return rc;
}

/* A multishot op at the head of its list: deliver results until the fd would block. Returns
 * true if op stays waiting (would block, or was stopped by its callback: then it is off the
 * list already), false if it ended and must be completed with *res. */
static bool run_multishot(struct ready *r, struct rs_op *op, int *res, int *n)
{
    bool own_buf = op->kind == RS_OP_RECV && !op->u.io.buf;
    /* A callback that runs the loop again may come back here while the outer delivery's bytes
     * are still in scratch: the nested one gets a buffer of its own. */
    char *buf = r->scratch;
    bool nested = own_buf && r->scratch_busy;
    if (nested && !(buf = malloc(RS_READY_RECV_BUF))) {
        *res = -ENOMEM;
        return false;
    }
    if (own_buf && !nested)
        r->scratch_busy = true;
    bool waiting = true;
    for (;;) {
        if (own_buf) {
            op->u.io.buf = buf;
            op->u.io.len = RS_READY_RECV_BUF;
        }
        short ev;
        int v = rs__op_try(op, &ev);
        if (own_buf)
            op->u.io.buf = NULL;
        if (v == -EAGAIN)
            break;
        bool more = op->kind == RS_OP_RECV ? v > 0 : v >= 0;
        if (!more) {
            *res = v;
            op->mdata = NULL;
            waiting = false;
            break;
        }
        rs__op_deliver(r->loop, op, v, own_buf ? buf : op->u.io.buf);
        (*n)++;
        if (!(op->bstate & ON_LIST))
            break; /* the callback stopped it */
    }
    if (nested)
        free(buf);
    else if (own_buf)
        r->scratch_busy = false;
    return waiting;
}

/* Retry the waiters of one list of fd in order until one would block again. The list is found
 * again after every callback: a callback may submit on another fd and grow (move) the table. */
static int run_list(struct ready *r, int fd, bool wr, bool hup)
{
    int n = 0;
    struct rs_op *op;
    for (;;) {
        struct fdent *e = &r->fds[fd];
        struct rs_op **head = wr ? &e->whead : &e->rhead;
        struct rs_op **tail = wr ? &e->wtail : &e->rtail;
        if ((op = *head) == NULL)
            break;
        short ev;
        int res;
        if (op->multishot) {
            if (run_multishot(r, op, &res, &n)) {
                if (op->bstate & ON_LIST)
                    break; /* would block */
                continue;  /* stopped by its callback: next waiter */
            }
            e = &r->fds[fd];
            head = wr ? &e->whead : &e->rhead;
            tail = wr ? &e->wtail : &e->rtail;
        } else {
            res = rs__op_try(op, &ev);
            /* An AF_UNIX listener that was shut down polls as hung up yet accept(2) says EAGAIN
             * without end: a blocking accept(2) would say EINVAL, and waiting on would spin. */
            if (res == -EAGAIN && hup && op->kind == RS_OP_ACCEPT)
                res = -EINVAL;
        }
        if (res == -EAGAIN)
            break;
        *head = op->next;
        if (!*head)
            *tail = NULL;
        op->next = NULL;
        op->bstate &= (uint8_t)~ON_LIST;
        if (op->bstate & ON_HEAP) {
            rs__heap_remove(&r->heap, op);
            op->bstate &= (uint8_t)~ON_HEAP;
        }
        rs__op_complete(r->loop, op, res);
        n++;
    }
    return n;
}

int rs__ready_event(struct ready *r, int fd, short revents)
{
    if (fd < 0 || (size_t)fd >= r->nfds)
        return 0;
    int n = 0;
    if (revents & (POLLIN | POLLPRI | POLLERR | POLLHUP | POLLNVAL))
        n += run_list(r, fd, false, revents & POLLHUP);
    if (revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
        n += run_list(r, fd, true, revents & POLLHUP);
    struct fdent *e = &r->fds[fd];
    if (n)
        r->p->update(r, fd, e, e->gen);
    return n;
}

static int expire(struct ready *r)
{
    int n = 0;
    int64_t now = rs__now();
    struct rs_op *op;
    while ((op = rs__heap_top(&r->heap)) != NULL && op->deadline <= now) {
        unlink_op(r, op);
        if (op->kind != RS_OP_TIMER) {
            struct fdent *e = &r->fds[op->fd];
            r->p->update(r, op->fd, e, e->gen);
        }
        /* bytes a MSG_WAITALL receive already took are returned, never dropped */
        int res = op->kind == RS_OP_TIMER ? 0 : op->xfer ? (int)op->xfer : -ETIMEDOUT;
        rs__op_complete(r->loop, op, res);
        n++;
    }
    return n;
}

int rs__ready_wait(struct rs_engine *loop, bool block, unsigned min, int64_t deadline)
{
    (void)min;      /* readiness waits return with whatever is ready */
    (void)deadline; /* never given: the heap keeps every deadline */
    struct ready *r = loop->be;
    int kicked = 0;
    while (r->nkick) {
        int fd = r->kick[--r->nkick];
        kicked += rs__ready_event(r, fd, POLLIN | POLLOUT);
    }
    RS_FAULT_KICK(r, kicked);
    if (kicked)
        block = false;
    int timeout = 0;
    if (block) {
        struct rs_op *top = rs__heap_top(&r->heap);
        if (!top) {
            timeout = -1;
        } else {
            int64_t left = top->deadline - rs__now();
            /* round up: waking before the deadline would only spin */
            int64_t ms = left <= 0 ? 0 : (left + 999999) / 1000000;
            timeout = ms > 86400000 ? 86400000 : (int)ms;
        }
    }
    int rc = RS_FAULT_WAIT(r->p->wait(r, timeout));
    if (rc < 0 && rc != -EINTR)
        return rc;
    return kicked + (rc > 0 ? rc : 0) + expire(r);
}

int rs__ready_cancel(struct rs_engine *loop, struct rs_op *op)
{
    struct ready *r = loop->be;
    if (!(op->bstate & (ON_LIST | ON_HEAP)))
        return 0; /* already finished, completing on the next turn */
    unlink_op(r, op);
    if (op->kind != RS_OP_TIMER) {
        struct fdent *e = &r->fds[op->fd];
        r->p->update(r, op->fd, e, e->gen);
    }
    rs__eng_defer(loop, op, op->xfer ? (int)op->xfer : -ECANCELED);
    return 0;
}

void rs__ready_forget_fd(struct rs_engine *loop, int fd)
{
    struct ready *r = loop->be;
    if (fd < 0 || (size_t)fd >= r->nfds)
        return;
    struct fdent *e = &r->fds[fd];
    /* Waiters on a closing fd can never be woken: end them now. */
    struct rs_op *lists[2] = { e->rhead, e->whead };
    e->rhead = e->rtail = e->whead = e->wtail = NULL;
    for (int i = 0; i < 2; i++) {
        for (struct rs_op *op = lists[i], *next; op; op = next) {
            next = op->next;
            op->bstate &= (uint8_t)~ON_LIST;
            if (op->bstate & ON_HEAP)
                rs__heap_remove(&r->heap, op);
            op->bstate &= (uint8_t)~ON_HEAP;
            rs__eng_defer(loop, op, -EBADF);
        }
    }
    r->p->forget(r, fd, e);
    e->registered = false;
    e->gen = 0;
}

int rs__ready_buffers_init(struct rs_engine *loop, unsigned nslots)
{
    (void)loop;
    (void)nslots;
    return -EOPNOTSUPP;
}

int rs__ready_buffer_update(struct rs_engine *loop, unsigned slot, const struct iovec *iov)
{
    (void)loop;
    (void)slot;
    (void)iov;
    return -EOPNOTSUPP;
}
