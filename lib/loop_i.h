/* The loop object shared by loop.c, the socket layer and the backends. */
#ifndef RS_LOOP_I_H
#define RS_LOOP_I_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "ringsock/loop.h"
#include "backend/backend.h"

struct rs_bufpool;
struct rs_pipepool;

struct rs_loop {
    const struct rs_backend_ops *ops;
    void *be;          /* backend state */
    int backend;       /* enum rs_backend */
    bool stop;
    size_t pending;    /* submitted, not yet completed */
    /* operations that finished during submit; completed from the loop so that no callback
     * runs inside the call that submitted it */
    struct rs_op *deferred_head, *deferred_tail;
    struct rs_loop_stats stats;
    struct rs_bufpool *bufpool; /* registered buffers, made on first use (bufpool.c) */
    struct rs_pipepool *pipes;  /* rs_sendfile's splice pipes and counters (sendfile.c) */
    uint64_t id;                /* unique per loop ever made: buffers name their loop by it */
    unsigned buf_count, buf_size; /* provided receive buffers for multishot receives */
    unsigned zc_threshold;        /* bytes from which completion-API sends go zero-copy */
    /* io_uring: a blocking wait returns after this many completions (0: one). Set only around a
     * wait by a caller that knows that many will come (sendfile.c, for a linked chain): the
     * kernel then runs the chain's task work without a trip to user space per link. */
    unsigned wait_min;
    /* Other threads end this loop's wait by writing to this eventfd (rs__loop_wake); every
     * backend keeps a read of it armed. */
    int wakefd;
    /* The blocking call running on this loop's thread may be asked to end from another thread
     * (rs_close): it sets *abort, then wakes the loop. NULL outside such a call. */
    const atomic_bool *abort;
    unsigned ndeferred;    /* length of the deferred list */
    unsigned sigpipe_ops;  /* operations in flight that can raise SIGPIPE (no MSG_NOSIGNAL) */
    bool dead;             /* inherited through fork(): only rs_loop_free may touch it */
    bool thread_default;   /* a thread's default loop (freed with the thread) */
    unsigned kept;         /* provided buffers lent past their delivery (rs_conn_read_keep) */
    struct rs_loop *reg_prev, *reg_next; /* every live loop of the process (fork handling) */
};

/* Zero-copy lost to copying at every size from 4 KiB to 1 MiB on loopback (bench/zc-threshold:
 * 0.06-0.41x the throughput, 1.6-3.7x the CPU per MiB; docs/performance.md), so it is opt-in. */
#define RS_ZC_THRESHOLD_DEFAULT RS_ZC_NEVER

/* Submit op on loop (counts it as pending). */
int rs__loop_submit(struct rs_loop *loop, struct rs_op *op);
/* Submit op and run the loop until it completes; returns op->res. The blocking API's one path. */
int rs__loop_exec(struct rs_loop *loop, struct rs_op *op);
/* Ask for op to be cancelled. */
int rs__loop_cancel(struct rs_loop *loop, struct rs_op *op);
/* op could not be submitted (res < 0) but its owner wants the failure through its callback:
 * counted as pending and completed with res on the next turn. */
void rs__loop_fail(struct rs_loop *loop, struct rs_op *op, int res);
/* After a failed wait: sleep 1, 2, 4, 8, then 10 ms per call (*ms starts at 0), so that a
 * persistent engine error never spins a CPU. */
void rs__loop_backoff(unsigned *ms);
/* From any thread: make loop's current or next wait return (the loop must be alive). */
void rs__loop_wake(struct rs_loop *loop);
/* Whether the blocking call running on loop was asked to end (see rs_loop.abort). */
static inline bool rs__loop_aborted(const struct rs_loop *loop)
{
    return loop->abort && atomic_load_explicit(loop->abort, memory_order_acquire);
}
/* The fd is being closed by its owner: the backend forgets any registration of it. */
void rs__loop_forget_fd(struct rs_loop *loop, int fd);
/* Lend / give back a multishot receive's buffer (rs_conn_read_keep): -EOPNOTSUPP where the
 * backend has nothing to lend. */
int rs__loop_buf_keep(struct rs_loop *loop, const void *data);
void rs__loop_buf_release(struct rs_loop *loop, const void *data);
/* Bumped in every child of fork(): state recorded under an older value belongs to the parent. */
extern _Atomic unsigned rs__forkgen_v;
static inline unsigned rs__forkgen(void) { return atomic_load_explicit(&rs__forkgen_v, memory_order_relaxed); }
/* For backends: op finished inside submit; complete it on the next loop turn. */
void rs__loop_defer(struct rs_loop *loop, struct rs_op *op, int res);
void rs__bufpool_free(struct rs_loop *loop);
void rs__pipepool_free(struct rs_loop *loop);

/* The calling thread's default loop if it exists (never creates one). Inline: every blocking
 * call reads it, and a call to the exported rs_loop_default goes through the PLT. */
extern __thread struct rs_loop *rs__tls_loop __attribute__((tls_model("initial-exec")));
static inline struct rs_loop *rs__loop_current(void) { return rs__tls_loop; }

#endif
