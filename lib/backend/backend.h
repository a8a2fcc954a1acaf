/* The engine's contract: an operation (struct rs_op) and the table of functions every backend
 * implements (struct rs_backend_ops). The socket layer builds operations; a backend runs them. */
#ifndef RS_BACKEND_H
#define RS_BACKEND_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ringsock/loop.h"

struct rs_loop_stats;

/* What a backend sees of its loop: the only loop state below the engine. The engine (loop.c)
 * owns it, inside struct rs_loop. */
struct rs_engine {
    void *be;                     /* the backend's own state, set by its init */
    struct rs_loop_stats *stats;  /* counters the backend adds to (ringsock/loop.h) */
    unsigned buf_count, buf_size; /* provided receive buffers for multishot receives */
    int wakefd;                   /* eventfd other threads write to end a wait: keep a read armed */
    /* set by the backend's init: a blocking call's deadline can ride on the wait itself (wait's
     * deadline argument) instead of on the op (io_uring: IORING_ENTER_EXT_ARG, 5.11) */
    bool deadline_wait;
};

enum rs_op_kind {
    RS_OP_CONNECT,
    RS_OP_ACCEPT,
    RS_OP_SEND,
    RS_OP_RECV,
    RS_OP_SENDMSG,
    RS_OP_RECVMSG,
    RS_OP_TIMER,       /* completes with 0 at its deadline, or -ECANCELED */
    RS_OP_READ_FIXED,  /* recv into a registered buffer (u.io + buf_index); io_uring only */
    RS_OP_WRITE_FIXED, /* send from a registered buffer; io_uring only */
    RS_OP_SPLICE,      /* u.splice: fd_in -> fd_out; op->fd is the socket end */
    RS_OP_SENDFILE,    /* u.splice.fd_in/off_in -> op->fd with sendfile(2) */
    RS_OP_READ,        /* read(2) of u.io from a pipe or eventfd (not a socket) */
    RS_OP_DEFER,       /* no I/O: completes (0) on the next loop turn, without the kernel */
    RS_OP_POLL,        /* wait until op->fd is ready for op->flags (POLLIN/POLLOUT): res = revents */
    RS_OP__COUNT
};

/* The kernel's per-call transfer limit (MAX_RW_COUNT): one operation moves at most this many
 * bytes; larger requests are short transfers, reported as such. */
#define RS_MAX_IO ((size_t)0x7ffff000)

enum {
    RS_DMODE_OP,
    RS_DMODE_WAIT,
    RS_DMODE_EXPIRED
};

/* No deadline. Deadlines are absolute CLOCK_MONOTONIC nanoseconds. */
#define RS_DEADLINE_NONE INT64_MAX
/* Do not wait at all: one non-blocking attempt (timeout 0 in socket.py terms). */
#define RS_DEADLINE_NOW 0

struct rs_op;
typedef void (*rs_op_cb)(struct rs_op *op);

/* An operation. The submitter owns the memory and keeps it (and the buffers it points at) alive
 * until completion: for blocking calls it lives on the caller's stack. */
struct rs_op {
    uint8_t kind;   /* enum rs_op_kind */
    bool done;      /* set by the engine just before cb */
    bool cancelled; /* rs__loop_cancel was asked: -ECANCELED is not a timeout */
    uint8_t bstate; /* backend-private state */
    bool link;      /* io_uring: the next submitted op runs only if this one fully succeeds */
    bool zc;        /* SEND / SENDMSG: zero-copy on io_uring where the kernel has it; the op
                       completes only once the kernel let go of the buffer (its notification) */
    /* RS_DMODE_*: how op's deadline is kept. OP: by the backend (io_uring: a LINK_TIMEOUT, the
     * readiness heap). WAIT: by the engine's wait (a blocking call, deadline_wait backends: no
     * timeout of the op's own). EXPIRED: the engine cancelled it at its deadline. */
    uint8_t dmode;
    bool multishot; /* ACCEPT / RECV: one result per connection / chunk until stopped; a RECV
                       with u.io.buf NULL receives into the loop's provided buffers */
    int fd;
    uint64_t fdgen; /* identity of the fd's owner (readiness backends re-register on change) */
    int flags;      /* send/recv flags; accept4 flags */
    int res;        /* result: >= 0 or -errno */
    int64_t deadline;
    size_t xfer; /* readiness backends: bytes already received for MSG_WAITALL */
    union {
        struct {
            void *buf;
            size_t len;
        } io;
        struct {
            const struct sockaddr *sa;
            socklen_t len;
        } connect;
        struct {
            struct sockaddr *sa;
            socklen_t *len;
        } accept;
        struct msghdr *msg;
        struct {
            int fd_in;
            int64_t off_in;
            int fd_out;
            int64_t off_out;
            size_t len;
            unsigned flags;
        } splice;
    } u;
    uint16_t buf_index; /* READ_FIXED / WRITE_FIXED: slot in the loop's registered table */
    const void *mdata;  /* multishot RECV: the bytes of the current delivery (borrowed) */
    int64_t bts[2];     /* backend scratch: io_uring keeps the timeout's timespec here */
    rs_op_cb cb;        /* NULL for blocking calls, which poll op->done */
    void *data;         /* for cb */
    /* backend-private links (readiness wait lists and the timer heap) */
    struct rs_op *next;
    size_t heap_idx;
};

/* What every backend implements. All functions run on the loop's thread. */
struct rs_backend_ops {
    const char *name;
    /* Ops linked with op->link run as one chain inside the kernel, and SPLICE goes to kernel
     * workers (io_uring): what sendfile.c's splice path is built for. */
    bool chains;
    /* The kernel runs SPLICE / WRITE_FIXED on the loop's thread inside wait (io_uring), where
     * they may raise SIGPIPE: the engine guards such waits. */
    bool kernel_io;
    int (*init)(struct rs_engine *loop, unsigned entries, unsigned flags);
    void (*fini)(struct rs_engine *loop);
    /* In a child of fork(): close the kernel objects and unmap the memory the loop inherited,
     * without a single call that would act on the parent's (no unregister, no epoll_ctl). */
    void (*abandon)(struct rs_engine *loop);
    /* Start op. Returns 0 (op->cb / op->done follow exactly once) or -errno (never completes).
     * May complete the op before returning if it finishes at once. */
    int (*submit)(struct rs_engine *loop, struct rs_op *op);
    /* Flush submissions and handle completions; wait for at least one (at least min, when the
     * caller knows that many will come: io_uring then runs a linked chain's task work without a
     * trip to user space per link) unless !block, and not past deadline (absolute, or
     * RS_DEADLINE_NONE; only deadline_wait backends are given one). Returns the number handled
     * or -errno. -EINTR is retried inside. */
    int (*wait)(struct rs_engine *loop, bool block, unsigned min, int64_t deadline);
    /* Ask for op to end with -ECANCELED (or its real result if it raced). */
    int (*cancel)(struct rs_engine *loop, struct rs_op *op);
    /* The fd is being closed by its owner: forget any registration of it. */
    void (*forget_fd)(struct rs_engine *loop, int fd);
    /* Registered buffers: make a table of nslots empty slots, then fill or empty one slot (an
     * iovec with NULL base). -EOPNOTSUPP where the backend has none (readiness backends): the
     * buffer pool then hands out plain memory and the socket layer plain operations. */
    int (*buffers_init)(struct rs_engine *loop, unsigned nslots);
    int (*buffer_update)(struct rs_engine *loop, unsigned slot, const struct iovec *iov);
    /* Multishot receive buffers lent past a delivery (rs_conn_read_keep); NULL where deliveries
     * are not the backend's to lend (readiness backends: the caller copies). buf_keep is called
     * inside the delivery of data: 0, and data is not reused until buf_release; or -errno. */
    int (*buf_keep)(struct rs_engine *loop, const void *data);
    void (*buf_release)(struct rs_engine *loop, const void *data);
    /* RS_FEAT_* the backend was granted (NULL: none) */
    unsigned (*features)(struct rs_engine *loop);
};

extern const struct rs_backend_ops rs__uring_ops;
extern const struct rs_backend_ops rs__epoll_ops;
extern const struct rs_backend_ops rs__poll_ops;

/* io_uring usable here? 0, or why not (-ENOSYS, -EPERM, -EOPNOTSUPP for a missing opcode). */
int rs__uring_probe(void);

/* A fresh fdgen for an operation on an fd that is not an rs_socket's (never repeats). */
uint64_t rs__fdgen_next(void);

/* Monotonic clock in ns. */
int64_t rs__now(void);
/* The longest duration in ns: 2^62 - 1, 146 years. Longer than any uptime, so a clock reading
 * plus it still fits in an int64_t. */
#define RS_NS_MAX (INT64_MAX / 2)
/* seconds -> ns, saturating: NaN and <= 0 give 0, anything at or past RS_NS_MAX (1e300, inf)
 * gives RS_NS_MAX. The one conversion every timeout, delay and deadline goes through. */
int64_t rs__ns_from_seconds(double seconds);
/* t + ns, saturating at RS_DEADLINE_NONE (ns <= 0: t). */
int64_t rs__ns_add(int64_t t, int64_t ns);
/* seconds -> absolute deadline: < 0 (RS_TIMEOUT_NONE) and >= 146 years (RS_NS_MAX) give
 * RS_DEADLINE_NONE, 0 and NaN give RS_DEADLINE_NOW. */
int64_t rs__deadline_from_timeout(double seconds);

/* A getaddrinfo failure as ringsock reports it: RS_EAI(gai), or for EAI_SYSTEM -sys_errno, the
 * errno read right after getaddrinfo on the thread that called it (-EIO if that is no errno). */
int rs__gai_err(int gai, int sys_errno);

/* SIGPIPE blocked in this thread around a call that may raise it (sendfile(2), splice and
 * write(2) into a socket have no MSG_NOSIGNAL), and the one it raised taken back. */
struct rs_sigpipe_guard {
    sigset_t old;
    bool armed;   /* SIGPIPE was blocked here: restore the mask after */
    bool pending; /* it was pending before (asked only when the caller blocks it) */
};
void rs__sigpipe_block(struct rs_sigpipe_guard *g);
void rs__sigpipe_unblock(struct rs_sigpipe_guard *g);

/* Run op as one non-blocking syscall. Returns the result, or -EAGAIN when it must wait; then
 * *events says for what (POLLIN or POLLOUT). Used by the readiness backends for every attempt and
 * by the io_uring backend for RS_DEADLINE_NOW operations. */
int rs__op_try(struct rs_op *op, short *events);
/* What op waits for when it would block (POLLIN or POLLOUT), without trying it. */
void rs__op_try_events(const struct rs_op *op, short *events);

/* For backends: op finished inside submit (or must end without the kernel); complete it on the
 * next loop turn, so that no callback runs inside the call that submitted it. */
void rs__eng_defer(struct rs_engine *loop, struct rs_op *op, int res);
/* Called by a backend when op finishes: records res and runs the callback (or marks it done). */
void rs__op_complete(struct rs_engine *loop, struct rs_op *op, int res);
/* A multishot op's intermediate result (more will follow): runs the callback with op->res = res
 * and op->mdata = data, op stays in flight. */
void rs__op_deliver(struct rs_engine *loop, struct rs_op *op, int res, const void *data);

/* Size of the scratch buffer a readiness backend receives multishot data into. */
#define RS_READY_RECV_BUF 65536

#endif
