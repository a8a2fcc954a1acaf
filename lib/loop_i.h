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

/* A per-loop resource of a higher layer (the buffer pool, sendfile's pipes), found by its
 * owner's key and freed with the loop by its owner's function: the engine never names them. */
struct rs_loop_res {
    const void *key;
    void *p;
    void (*free)(void *p);
};
#define RS_LOOP_RES_MAX 4

struct rs_loop {
    struct rs_engine eng; /* first: what the backend sees (backend.h); the engine casts back */
    const struct rs_backend_ops *ops;
    int backend; /* enum rs_backend */
    bool stop;
    size_t pending; /* submitted, not yet completed */
    /* operations that finished during submit; completed from the loop so that no callback
     * runs inside the call that submitted it */
    struct rs_op *deferred_head, *deferred_tail;
    struct rs_loop_stats stats;
    struct rs_loop_res res[RS_LOOP_RES_MAX];
    uint64_t id;           /* unique per loop ever made: buffers name their loop by it */
    unsigned zc_threshold; /* bytes from which completion-API sends go zero-copy */
    /* The blocking call running on this loop's thread may be asked to end from another thread
     * (rs_close): it sets *abort, then wakes the loop. NULL outside such a call. */
    const atomic_bool *abort;
    unsigned ndeferred;                  /* length of the deferred list */
    unsigned sigpipe_ops;                /* operations in flight that can raise SIGPIPE (no MSG_NOSIGNAL) */
    bool dead;                           /* inherited through fork(): only rs_loop_free may touch it */
    bool thread_default;                 /* a thread's default loop (freed with the thread) */
    unsigned kept;                       /* provided buffers lent past their delivery (rs_conn_read_keep) */
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
static inline unsigned rs__forkgen(void)
{
    return atomic_load_explicit(&rs__forkgen_v, memory_order_relaxed);
}
/* op finished without the kernel: complete it on the next loop turn. */
void rs__loop_defer(struct rs_loop *loop, struct rs_op *op, int res);
/* One blocking turn that returns after at least min completions (a linked chain of that many
 * ops: sendfile.c); as rs_loop_run(RS_RUN_ONCE) otherwise. */
int rs__loop_wait_for(struct rs_loop *loop, unsigned min);
/* Whether the backend runs linked ops as one kernel chain (backend.h: chains). */
static inline bool rs__loop_chains(const struct rs_loop *loop) { return loop->ops->chains; }
/* Registered buffers (bufpool.c): the backend's table, -EOPNOTSUPP where there is none. */
int rs__loop_buffers_init(struct rs_loop *loop, unsigned nslots);
int rs__loop_buffer_update(struct rs_loop *loop, unsigned slot, const struct iovec *iov);
/* The resource of key on loop, or NULL. */
void *rs__loop_res(const struct rs_loop *loop, const void *key);
/* Attach p under key, freed by free(p) with the loop (also in a fork child, where free must
 * only close the child's descriptors and free memory). 0 or -ENOSPC. */
int rs__loop_res_attach(struct rs_loop *loop, const void *key, void *p, void (*free)(void *p));

/* The calling thread's default loop if it exists (never creates one). Inline: every blocking
 * call reads it, and a call to the exported rs_loop_default goes through the PLT. */
extern __thread struct rs_loop *rs__tls_loop __attribute__((tls_model("initial-exec")));
static inline struct rs_loop *rs__loop_current(void) { return rs__tls_loop; }

#endif
