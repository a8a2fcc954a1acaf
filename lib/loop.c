/* Loops: backend choice (AUTO probing, RINGSOCK_BACKEND), the per-thread default loop, and the
 * submit/run/exec paths every operation takes. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ringsock/loop.h"
#include "loop_i.h"
#include "fault_i.h"
#include "export_i.h"

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

/* Every live loop, so that a child of fork() can let go of the kernel objects it inherited. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_loop *reg_head;
_Atomic unsigned rs__forkgen_v;
#define forkgen rs__forkgen_v

static void reg_add(struct rs_loop *loop)
{
    pthread_mutex_lock(&reg_lock);
    loop->reg_prev = NULL;
    loop->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = loop;
    reg_head = loop;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_remove(struct rs_loop *loop)
{
    pthread_mutex_lock(&reg_lock);
    if (loop->reg_prev)
        loop->reg_prev->reg_next = loop->reg_next;
    else if (reg_head == loop)
        reg_head = loop->reg_next;
    if (loop->reg_next)
        loop->reg_next->reg_prev = loop->reg_prev;
    loop->reg_prev = loop->reg_next = NULL;
    pthread_mutex_unlock(&reg_lock);
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
    /* Every option is checked before any backend is tried, on every backend alike: a value one
     * backend would refuse must not make AUTO quietly take another. 32768 is the kernel's
     * IORING_MAX_ENTRIES; uring_init keeps the CQ ring within its limit for all of them. */
    if (opts->flags & ~RS_LOOP_SQPOLL || opts->entries > 32768 || !rs_backend_name(opts->backend))
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
    loop->eng.buf_count = buf_count;
    loop->eng.buf_size = buf_size;
    loop->eng.stats = &loop->stats;
    loop->zc_threshold = opts->zc_threshold ? opts->zc_threshold : RS_ZC_THRESHOLD_DEFAULT;
    /* blocking: io_uring's READ of it would fail with -EAGAIN on an O_NONBLOCK file; the
     * readiness backends read it only once their poller says it is readable */
    loop->eng.wakefd = eventfd(0, EFD_CLOEXEC);
    if (loop->eng.wakefd < 0) {
        int e = -errno;
        free(loop);
        return e;
    }
    int r = ops->init(&loop->eng, opts->entries ? opts->entries : 256, opts->flags);
    while (r < 0 && probing && backend != RS_BACKEND_POLL) {
        /* AUTO's probe said yes but this ring was refused (a seccomp filter installed after the
         * probe, a memlock limit): take the next backend instead of failing */
        backend =
            backend == RS_BACKEND_URING && ops_of(RS_BACKEND_EPOLL) ? RS_BACKEND_EPOLL : RS_BACKEND_POLL;
        loop->ops = ops = ops_of(backend);
        loop->backend = backend;
        r = ops->init(&loop->eng, opts->entries ? opts->entries : 256, opts->flags);
    }
    if (r < 0) {
        close(loop->eng.wakefd);
        free(loop);
        return r;
    }
    reg_add(loop);
    *out = loop;
    return 0;
}

/* initial-exec: every blocking call reads it, and the default (global-dynamic) model costs a
 * __tls_get_addr call each time from a shared library */
__thread struct rs_loop *rs__tls_loop __attribute__((tls_model("initial-exec")));
#define tls_loop rs__tls_loop
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

void *rs__loop_res(const struct rs_loop *loop, const void *key)
{
    for (int i = 0; i < RS_LOOP_RES_MAX; i++)
        if (loop->res[i].key == key)
            return loop->res[i].p;
    return NULL;
}

int rs__loop_res_attach(struct rs_loop *loop, const void *key, void *p, void (*fn)(void *p))
{
    for (int i = 0; i < RS_LOOP_RES_MAX; i++) {
        if (!loop->res[i].key) {
            loop->res[i] = (struct rs_loop_res){ .key = key, .p = p, .free = fn };
            return 0;
        }
    }
    return -ENOSPC;
}

static void res_free(struct rs_loop *loop)
{
    for (int i = 0; i < RS_LOOP_RES_MAX; i++) {
        if (loop->res[i].key && loop->res[i].free)
            loop->res[i].free(loop->res[i].p);
        loop->res[i].key = NULL;
    }
}

static void loop_release(struct rs_loop *loop)
{
    reg_remove(loop);
    res_free(loop);
    if (!loop->dead) {
        /* (the kernel objects of a dead loop went at the fork) */
        loop->ops->fini(&loop->eng);
        close(loop->eng.wakefd);
    }
    if (loop == tls_loop)
        tls_loop = NULL;
    free(loop);
}

EXPORT int rs_loop_free(rs_loop *loop)
{
    if (!loop)
        return -EINVAL;
    /* an inherited loop's operations and buffers are the parent's business */
    if (!loop->dead && (loop->pending || loop->kept))
        return -EBUSY;
    loop_release(loop);
    return 0;
}

static void thread_exit(void *p)
{
    struct rs_loop *loop = p;
    if (loop == tls_loop) {
        /* Operations still pending at thread exit belong to callbacks that can never run; the
         * kernel side goes away with the ring. */
        loop_release(loop);
    }
}

/* fork() keeps the registry consistent: no other thread is inside it when the child's copy is
 * taken. (The socket layer does the same for its locks, socket.c.) */
static void before_fork(void) { pthread_mutex_lock(&reg_lock); }

static void after_fork_parent(void) { pthread_mutex_unlock(&reg_lock); }

/* A child must never act on its parent's loops: a SINGLE_ISSUER ring refuses it, and any other
 * ring, epoll set or eventfd is shared with the parent, so an unregister, an epoll_ctl or a
 * wake-up would change the parent's loop. The child closes its copies of their descriptors and
 * mappings (which also stops it keeping the parent's ring, and every file its requests hold,
 * alive). Loops of the parent's threads are unreachable here and freed; loops the caller made
 * stay as husks for rs_loop_free. This thread gets a fresh default loop on first use. */
static void after_fork_child(void)
{
    atomic_fetch_add(&forkgen, 1);
    struct rs_loop *loop = reg_head;
    while (loop) {
        struct rs_loop *next = loop->reg_next;
        loop->ops->abandon(&loop->eng);
        close(loop->eng.wakefd);
        loop->dead = true;
        loop->pending = 0;
        loop->deferred_head = loop->deferred_tail = NULL;
        if (loop->thread_default) {
            /* unlinked here: reg_lock is held until the end of this handler */
            if (loop->reg_prev)
                loop->reg_prev->reg_next = next;
            else
                reg_head = next;
            if (next)
                next->reg_prev = loop->reg_prev;
            res_free(loop);
            free(loop);
        }
        loop = next;
    }
    tls_loop = NULL;
    pthread_mutex_unlock(&reg_lock);
}

static void tls_init(void) { pthread_key_create(&tls_key, thread_exit); }

/* At load, not at first use: a socket's call records carry the fork generation from the start. */
__attribute__((constructor)) static void lib_init(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* The main thread never runs pthread key destructors: free its loop when the library unloads
 * or the process exits, so that every fd is closed (valgrind --track-fds). */
__attribute__((destructor)) static void lib_exit(void)
{
    if (tls_loop)
        loop_release(tls_loop);
}

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
    tls_loop->thread_default = true;
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
    return loop && loop->ops->features ? loop->ops->features((struct rs_engine *)&loop->eng) : 0;
}

EXPORT size_t rs_loop_pending(const rs_loop *loop) { return loop ? loop->pending : 0; }

EXPORT void rs_loop_stop(rs_loop *loop)
{
    if (loop)
        loop->stop = true;
}

/* Operations the kernel runs on this thread inside the backend's wait (io_uring's SPLICE and
 * WRITE_FIXED: no MSG_NOSIGNAL there) and that raise SIGPIPE when the peer has gone: while any is
 * in flight, the wait runs under the SIGPIPE guard (op.c). sendfile(2) and the readiness
 * backends' splice are syscalls of rs__op_try, guarded there, one call at a time. */
static inline bool may_sigpipe(const struct rs_loop *loop, const struct rs_op *op)
{
    /* (a WRITE_FIXED that must not wait is tried as send(2) with MSG_NOSIGNAL) */
    return loop->ops->kernel_io &&
           (op->kind == RS_OP_SPLICE || (op->kind == RS_OP_WRITE_FIXED && op->deadline != RS_DEADLINE_NOW));
}

static int submit(struct rs_loop *loop, struct rs_op *op);

int rs__loop_submit(struct rs_loop *loop, struct rs_op *op)
{
    op->dmode = RS_DMODE_OP;
    return submit(loop, op);
}

static int submit(struct rs_loop *loop, struct rs_op *op)
{
    if (loop->dead)
        return -EBADFD;
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
    int r = loop->ops->submit(&loop->eng, op);
    if (r == 0) {
        if (may_sigpipe(loop, op))
            loop->sigpipe_ops++;
        loop->pending++;
        loop->stats.submitted++;
    }
    return r;
}

void rs__loop_fail(struct rs_loop *loop, struct rs_op *op, int res)
{
    op->done = false;
    op->cancelled = false;
    op->bstate = 0;
    loop->pending++;
    loop->stats.submitted++;
    if (may_sigpipe(loop, op))
        loop->sigpipe_ops++;
    rs__loop_defer(loop, op, res);
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
    loop->ndeferred++;
}

/* The engine's side of struct rs_engine: it is the first member of struct rs_loop. */
static struct rs_loop *loop_of(struct rs_engine *e) { return (struct rs_loop *)(void *)e; }

void rs__eng_defer(struct rs_engine *e, struct rs_op *op, int res) { rs__loop_defer(loop_of(e), op, res); }

void rs__op_complete(struct rs_engine *e, struct rs_op *op, int res)
{
    struct rs_loop *loop = loop_of(e);
    RS_FAULT_OP_DONE(op);
    /* io_uring reports a fired LINK_TIMEOUT as -ECANCELED on the operation itself; an op the
     * engine cancelled at its deadline (RS_DMODE_EXPIRED) timed out too. */
    if (res == -ECANCELED &&
        ((!op->cancelled && op->deadline != RS_DEADLINE_NONE) || op->dmode == RS_DMODE_EXPIRED))
        res = -ETIMEDOUT;
    if (may_sigpipe(loop, op))
        loop->sigpipe_ops--;
    op->res = res;
    op->done = true;
    loop->pending--;
    loop->stats.completed++;
    if (op->cb)
        op->cb(op);
}

void rs__op_deliver(struct rs_engine *e, struct rs_op *op, int res, const void *data)
{
    struct rs_loop *loop = loop_of(e);
    op->res = res;
    op->mdata = data;
    loop->stats.completed++;
    if (op->cb)
        op->cb(op);
}

/* The operations deferred before this turn, one at a time from the shared list: a callback may
 * run the loop again, and the nested run must complete the older ones first, not newer ones
 * behind a detached list. */
static int drain_deferred(struct rs_loop *loop)
{
    int n = 0;
    for (unsigned k = loop->ndeferred; k > 0 && loop->deferred_head; k--) {
        struct rs_op *op = loop->deferred_head;
        loop->deferred_head = op->next;
        if (!loop->deferred_head)
            loop->deferred_tail = NULL;
        loop->ndeferred--;
        op->next = NULL;
        rs__op_complete(&loop->eng, op, op->res);
        n++;
    }
    return n;
}

/* One turn: deferred completions, then the backend. After deferred completions the backend
 * may still block if they did not finish what the caller waits for (`until`: a blocking call's
 * op; NULL for rs_loop_run(DEFAULT), which waits for whatever comes): a send that completed
 * inside its submit must not cost an extra non-blocking epoll_wait per message. */
static int turn(struct rs_loop *loop, bool block, bool drain_may_satisfy, const struct rs_op *until,
                unsigned min)
{
    int n = drain_deferred(loop);
    if (!loop->pending)
        return n; /* nothing in flight: no reason to ask the kernel */
    if (n > 0 && (drain_may_satisfy || (until && until->done) || loop->stop || loop->deferred_head))
        block = false;
    loop->stats.waits++;
    /* a blocking call's deadline rides on the wait (RS_DMODE_WAIT) */
    int64_t deadline = until && until->dmode == RS_DMODE_WAIT ? until->deadline : RS_DEADLINE_NONE;
    int r;
    if (loop->sigpipe_ops) {
        struct rs_sigpipe_guard g;
        rs__sigpipe_block(&g);
        r = loop->ops->wait(&loop->eng, block, min, deadline);
        rs__sigpipe_unblock(&g);
    } else {
        r = loop->ops->wait(&loop->eng, block, min, deadline);
    }
    return r < 0 ? r : n + r;
}

/* Sleep after the backend's wait failed, doubling from 1 ms to 10 ms: an error that persists
 * (ENOMEM, a ring fd closed under us) must not spin a CPU while the op is reaped, and one that
 * clears must not keep the caller waiting long. */
void rs__loop_backoff(unsigned *ms)
{
    *ms = *ms ? (*ms >= 5 ? 10 : *ms * 2) : 1;
    struct timespec ts = { 0, (long)*ms * 1000000L };
    nanosleep(&ts, NULL);
}

int rs__loop_exec(struct rs_loop *loop, struct rs_op *op)
{
    op->cb = NULL;
    /* The deadline on the wait rather than a timeout op per call where the backend can: no
     * LINK_TIMEOUT SQE, and no late timeout CQE that makes the next wait return early. */
    op->dmode = loop->eng.deadline_wait && op->deadline != RS_DEADLINE_NONE &&
                        op->deadline != RS_DEADLINE_NOW && op->kind != RS_OP_TIMER
                    ? RS_DMODE_WAIT
                    : RS_DMODE_OP;
    int r = submit(loop, op);
    if (r < 0)
        return r;
    int err = 0;
    bool asked = false;
    unsigned ms = 0;
    while (!op->done) {
        /* Past its deadline (RS_DMODE_WAIT), asked to end (rs_close on another thread), or the
         * engine failing: cancel, and go on until the op's completion comes — with its data if
         * it completed first. op lives on our caller's stack and the kernel may still write
         * into it: only its completion ends this wait. */
        if (op->dmode == RS_DMODE_WAIT && rs__now() >= op->deadline)
            op->dmode = RS_DMODE_EXPIRED;
        if (!asked && (op->dmode == RS_DMODE_EXPIRED || err || rs__loop_aborted(loop)))
            asked = rs__loop_cancel(loop, op) == 0;
        r = turn(loop, true, false, op, 0);
        if (r < 0) {
            if (!err)
                err = r;
            if (!op->done)
                rs__loop_backoff(&ms);
        }
    }
    return err && op->res == -ECANCELED ? err : op->res;
}

int rs__loop_cancel(struct rs_loop *loop, struct rs_op *op)
{
    if (op->done)
        return -EALREADY;
    if (op->kind == RS_OP_DEFER)
        return 0; /* it completes on the next turn anyway */
    op->cancelled = true;
    return loop->ops->cancel(&loop->eng, op);
}

void rs__loop_wake(struct rs_loop *loop)
{
    uint64_t one = 1;
    /* fails only with the counter at its maximum: a wake-up is pending then anyway */
    ssize_t r = write(loop->eng.wakefd, &one, sizeof one);
    (void)r;
}

void rs__loop_forget_fd(struct rs_loop *loop, int fd)
{
    if (loop && !loop->dead)
        loop->ops->forget_fd(&loop->eng, fd);
}

int rs__loop_buf_keep(struct rs_loop *loop, const void *data)
{
    if (!loop->ops->buf_keep)
        return -EOPNOTSUPP;
    int r = loop->ops->buf_keep(&loop->eng, data);
    if (r == 0)
        loop->kept++;
    return r;
}

void rs__loop_buf_release(struct rs_loop *loop, const void *data)
{
    loop->kept--;
    loop->ops->buf_release(&loop->eng, data);
}

int rs__loop_wait_for(struct rs_loop *loop, unsigned min)
{
    if (loop->dead)
        return -EBADFD;
    return turn(loop, true, true, NULL, min);
}

int rs__loop_buffers_init(struct rs_loop *loop, unsigned nslots)
{
    return loop->dead ? -EBADFD : loop->ops->buffers_init(&loop->eng, nslots);
}

int rs__loop_buffer_update(struct rs_loop *loop, unsigned slot, const struct iovec *iov)
{
    return loop->dead ? -EBADFD : loop->ops->buffer_update(&loop->eng, slot, iov);
}

EXPORT int rs_loop_run(rs_loop *loop, int mode)
{
    if (!loop || mode < RS_RUN_DEFAULT || mode > RS_RUN_NOWAIT)
        return -EINVAL;
    if (loop->dead)
        return -EBADFD;
    loop->stop = false;
    int total = 0;
    do {
        if (mode == RS_RUN_DEFAULT && !loop->pending && !loop->deferred_head)
            break;
        int r = turn(loop, mode != RS_RUN_NOWAIT, mode == RS_RUN_ONCE, NULL, 0);
        if (r < 0)
            return r;
        total += r;
    } while (mode == RS_RUN_DEFAULT && !loop->stop);
    return total;
}
