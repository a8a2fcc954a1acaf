/* Loops: backend choice (AUTO probing, RINGSOCK_BACKEND), the per-thread default loop, and the
 * submit/run/exec paths every operation takes. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringsock/loop.h"
#include "loop_i.h"
#include "fault_i.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT const char *rs_backend_name(int backend)
{
    switch (backend) {
    case RS_BACKEND_AUTO: return "auto";
    case RS_BACKEND_URING: return "uring";
    case RS_BACKEND_EPOLL: return "epoll";
    case RS_BACKEND_POLL: return "poll";
    default: return NULL;
    }
}

static const struct rs_backend_ops *ops_of(int backend)
{
    switch (backend) {
#ifdef RS_HAVE_URING
    case RS_BACKEND_URING: return &rs__uring_ops;
#endif
#ifdef RS_HAVE_EPOLL
    case RS_BACKEND_EPOLL: return &rs__epoll_ops;
#endif
    case RS_BACKEND_POLL: return &rs__poll_ops;
    default: return NULL;
    }
}

/* AUTO resolved: the environment first, then probing. */
static int resolve_auto(int *backend, bool *probing)
{
    const char *env = getenv("RINGSOCK_BACKEND");
    if (env && *env && strcmp(env, "auto") != 0) {
        for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
            if (strcmp(env, rs_backend_name(b)) == 0) {
                *backend = b;
                return 0;
            }
        }
        fprintf(stderr, "ringsock: RINGSOCK_BACKEND=\"%s\" is not one of uring, epoll, poll, auto\n", env);
        return -EINVAL;
    }
    *probing = true;
#ifdef RS_HAVE_URING
    if (rs__uring_probe() == 0) {
        *backend = RS_BACKEND_URING;
        return 0;
    }
#endif
#ifdef RS_HAVE_EPOLL
    *backend = RS_BACKEND_EPOLL;
#else
    *backend = RS_BACKEND_POLL;
#endif
    return 0;
}

EXPORT int rs_loop_new(rs_loop **out, const struct rs_loop_opts *opts)
{
    static const struct rs_loop_opts defaults = RS_LOOP_OPTS_INIT;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    RS_FAULT_LOOP_NEW(opts);
    if (opts->flags & ~RS_LOOP_SQPOLL || opts->entries > 32768)
        return -EINVAL;
    unsigned buf_count = opts->buf_count ? opts->buf_count : 1024;
    unsigned buf_size = opts->buf_size ? opts->buf_size : 4096;
    /* the kernel's buffer ring wants a power of two, at most 32768 entries */
    if (buf_count > 32768 || (buf_count & (buf_count - 1)) || buf_size > (1u << 20))
        return -EINVAL;
    int backend = opts->backend;
    bool probing = false;
    if (backend == RS_BACKEND_AUTO) {
        int r = resolve_auto(&backend, &probing);
        if (r < 0)
            return r;
    } else if (!rs_backend_name(backend)) {
        return -EINVAL;
    }
    const struct rs_backend_ops *ops = ops_of(backend);
    if (!ops)
        return -ENOSYS; /* not built in */
    struct rs_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    static _Atomic uint64_t next_id = 1;
    loop->ops = ops;
    loop->backend = backend;
    loop->id = atomic_fetch_add(&next_id, 1);
    loop->buf_count = buf_count;
    loop->buf_size = buf_size;
    loop->zc_threshold = opts->zc_threshold ? opts->zc_threshold : RS_ZC_THRESHOLD_DEFAULT;
    int r = ops->init(loop, opts->entries ? opts->entries : 256, opts->flags);
    while (r < 0 && probing && backend != RS_BACKEND_POLL) {
        /* AUTO's probe said yes but this ring was refused (a seccomp filter installed after the
         * probe, a memlock limit): take the next backend instead of failing */
        backend = backend == RS_BACKEND_URING && ops_of(RS_BACKEND_EPOLL) ? RS_BACKEND_EPOLL : RS_BACKEND_POLL;
        loop->ops = ops = ops_of(backend);
        loop->backend = backend;
        r = ops->init(loop, opts->entries ? opts->entries : 256, opts->flags);
    }
    if (r < 0) {
        free(loop);
        return r;
    }
    *out = loop;
    return 0;
}

/* initial-exec: every blocking call reads it, and the default (global-dynamic) model costs a
 * __tls_get_addr call each time from a shared library */
static __thread struct rs_loop *tls_loop __attribute__((tls_model("initial-exec")));
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

EXPORT int rs_loop_free(rs_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->pending)
        return -EBUSY;
    rs__bufpool_free(loop);
    rs__pipepool_free(loop);
    loop->ops->fini(loop);
    if (loop == tls_loop)
        tls_loop = NULL;
    free(loop);
    return 0;
}

static void thread_exit(void *p)
{
    struct rs_loop *loop = p;
    if (loop == tls_loop) {
        /* Operations still pending at thread exit belong to callbacks that can never run; the
         * kernel side goes away with the ring. */
        loop->pending = 0;
        rs_loop_free(loop);
    }
}

/* A child of fork() must not use its parent's ring (SINGLE_ISSUER rings refuse other tasks and
 * the two processes would share one): drop the inherited default loop in the child. */
static void after_fork_child(void)
{
    if (tls_loop) {
        tls_loop->pending = 0;
        rs_loop_free(tls_loop);
    }
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, thread_exit);
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* The main thread never runs pthread key destructors: free its loop when the library unloads
 * or the process exits, so that every fd is closed (valgrind --track-fds). */
__attribute__((destructor)) static void lib_exit(void)
{
    if (tls_loop) {
        tls_loop->pending = 0;
        rs_loop_free(tls_loop);
    }
}

struct rs_loop *rs__loop_current(void) { return tls_loop; }

EXPORT int rs_loop_default(rs_loop **out)
{
    if (!out)
        return -EINVAL;
    if (tls_loop) {
        *out = tls_loop;
        return 0;
    }
    pthread_once(&tls_once, tls_init);
    int r = rs_loop_new(&tls_loop, NULL);
    if (r < 0)
        return r;
    pthread_setspecific(tls_key, tls_loop);
    *out = tls_loop;
    return 0;
}

EXPORT int rs_loop_default_release(void)
{
    if (!tls_loop)
        return 0;
    return rs_loop_free(tls_loop);
}

EXPORT int rs_loop_stats(const rs_loop *loop, struct rs_loop_stats *st)
{
    if (!loop || !st)
        return -EINVAL;
    *st = loop->stats;
    return 0;
}

EXPORT int rs_loop_backend(const rs_loop *loop) { return loop ? loop->backend : -EINVAL; }

EXPORT unsigned rs_loop_features(const rs_loop *loop)
{
    return loop && loop->ops->features ? loop->ops->features((struct rs_loop *)loop) : 0;
}

EXPORT size_t rs_loop_pending(const rs_loop *loop) { return loop ? loop->pending : 0; }

EXPORT void rs_loop_stop(rs_loop *loop)
{
    if (loop)
        loop->stop = true;
}

int rs__loop_submit(struct rs_loop *loop, struct rs_op *op)
{
    op->done = false;
    op->cancelled = false;
    op->bstate = 0;
    op->xfer = 0;
    op->res = 0;
    op->next = NULL;
    op->mdata = NULL;
    if (op->kind == RS_OP_DEFER) {
        /* a callback on the next turn costs no system call on any backend */
        op->deadline = RS_DEADLINE_NOW;
        loop->pending++;
        loop->stats.submitted++;
        rs__loop_defer(loop, op, 0);
        return 0;
    }
    RS_FAULT_SUBMIT(loop, op);
    int r = loop->ops->submit(loop, op);
    if (r == 0) {
        loop->pending++;
        loop->stats.submitted++;
    }
    return r;
}

void rs__loop_defer(struct rs_loop *loop, struct rs_op *op, int res)
{
    op->res = res;
    op->next = NULL;
    if (loop->deferred_tail)
        loop->deferred_tail->next = op;
    else
        loop->deferred_head = op;
    loop->deferred_tail = op;
}

void rs__op_complete(struct rs_loop *loop, struct rs_op *op, int res)
{
    RS_FAULT_OP_DONE(op);
    /* io_uring reports a fired LINK_TIMEOUT as -ECANCELED on the operation itself. */
    if (res == -ECANCELED && !op->cancelled && op->deadline != RS_DEADLINE_NONE)
        res = -ETIMEDOUT;
    op->res = res;
    op->done = true;
    loop->pending--;
    loop->stats.completed++;
    if (op->cb)
        op->cb(op);
}

void rs__op_deliver(struct rs_loop *loop, struct rs_op *op, int res, const void *data)
{
    op->res = res;
    op->mdata = data;
    loop->stats.completed++;
    if (op->cb)
        op->cb(op);
}

static int drain_deferred(struct rs_loop *loop)
{
    int n = 0;
    struct rs_op *op = loop->deferred_head;
    loop->deferred_head = loop->deferred_tail = NULL;
    while (op) {
        struct rs_op *next = op->next;
        rs__op_complete(loop, op, op->res);
        op = next;
        n++;
    }
    return n;
}

/* One turn: deferred completions, then the backend (without waiting if anything was done). */
/* One turn: deferred completions, then the backend. After deferred completions the backend
 * may still block if they did not finish what the caller waits for (`until`: a blocking call's
 * op; NULL for rs_loop_run(DEFAULT), which waits for whatever comes): a send that completed
 * inside its submit must not cost an extra non-blocking epoll_wait per message. */
static int turn(struct rs_loop *loop, bool block, bool drain_may_satisfy, const struct rs_op *until)
{
    int n = drain_deferred(loop);
    if (!loop->pending)
        return n; /* nothing in flight: no reason to ask the kernel */
    if (n > 0 && (drain_may_satisfy || (until && until->done) || loop->stop || loop->deferred_head))
        block = false;
    loop->stats.waits++;
    int r = loop->ops->wait(loop, block);
    return r < 0 ? r : n + r;
}

int rs__loop_exec(struct rs_loop *loop, struct rs_op *op)
{
    op->cb = NULL;
    int r = rs__loop_submit(loop, op);
    if (r < 0)
        return r;
    while (!op->done) {
        /* op lives on our caller's stack and the kernel may still write into it: an engine
         * error cannot end this wait, only op's completion can. */
        turn(loop, true, false, op);
    }
    return op->res;
}

int rs__loop_cancel(struct rs_loop *loop, struct rs_op *op)
{
    if (op->done)
        return -EALREADY;
    if (op->kind == RS_OP_DEFER)
        return 0; /* it completes on the next turn anyway */
    op->cancelled = true;
    return loop->ops->cancel(loop, op);
}

EXPORT int rs_loop_run(rs_loop *loop, int mode)
{
    if (!loop || mode < RS_RUN_DEFAULT || mode > RS_RUN_NOWAIT)
        return -EINVAL;
    loop->stop = false;
    int total = 0;
    do {
        if (mode == RS_RUN_DEFAULT && !loop->pending && !loop->deferred_head)
            break;
        int r = turn(loop, mode != RS_RUN_NOWAIT, mode == RS_RUN_ONCE, NULL);
        if (r < 0)
            return r;
        total += r;
    } while (mode == RS_RUN_DEFAULT && !loop->stop);
    return total;
}
