/* ringsock event loops: one engine, run-time choice of backend (io_uring, epoll, poll).
 *
 * A loop belongs to the thread that uses it; loops are never shared between threads. Every
 * blocking call (rs_recv, rs_connect, ...) runs the calling thread's default loop until its
 * operation completes, so blocking and completion-style code share one engine. */
#ifndef RINGSOCK_LOOP_H
#define RINGSOCK_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rs_loop rs_loop;

/* Backends. AUTO probes io_uring (setup works, the opcodes ringsock needs are supported,
 * /proc/sys/kernel/io_uring_disabled allows it), then epoll, then poll. The environment variable
 * RINGSOCK_BACKEND=uring|epoll|poll|auto overrides AUTO; an unknown value makes loop creation
 * fail with -EINVAL (and a one-line message on stderr), never a silent default. */
enum rs_backend {
    RS_BACKEND_AUTO = 0,
    RS_BACKEND_URING = 1,
    RS_BACKEND_EPOLL = 2,
    RS_BACKEND_POLL = 3,
};

/* Loop flags (rs_loop_opts.flags). */
#define RS_LOOP_SQPOLL 0x1u /* io_uring: kernel submission thread (opt-in, costs a CPU) */

struct rs_loop_opts {
    int backend;        /* enum rs_backend; RS_BACKEND_AUTO honours RINGSOCK_BACKEND */
    unsigned entries;   /* io_uring submission queue size, 1..32768 (rounded up to a power of
                           two; larger is -EINVAL on every backend); 0 = default (256) */
    unsigned flags;     /* RS_LOOP_* */
    unsigned buf_count; /* provided receive buffers (a power of two); 0 = default (1024) */
    unsigned buf_size;  /* bytes each; 0 = default (4096) */
    unsigned zc_threshold; /* completion-API sends of at least this many bytes go zero-copy on
                              io_uring (SEND_ZC); 0 = the default: never, since on loopback zero-copy
                              lost at every size measured (docs/performance.md);
                              RS_ZC_NEVER = never */
};
#define RS_ZC_NEVER 0xffffffffu
#define RS_LOOP_OPTS_INIT { .backend = RS_BACKEND_AUTO, .entries = 0, .flags = 0, .buf_count = 0, .buf_size = 0, \
                            .zc_threshold = 0 }

/* Create a loop. opts NULL = RS_LOOP_OPTS_INIT. Returns 0 and *out, or -EINVAL (bad option or
 * RINGSOCK_BACKEND value), -ENOSYS/-EPERM (the backend asked for is unavailable: io_uring
 * disabled, blocked by seccomp, or not built in), -ENOMEM, -EMFILE. */
int rs_loop_new(rs_loop **out, const struct rs_loop_opts *opts);

/* Free a loop that has no operation in flight. Returns 0, -EBUSY if operations are still pending
 * (the loop is not freed), -EINVAL for NULL. */
int rs_loop_free(rs_loop *loop);

/* Run modes for rs_loop_run. */
enum rs_run_mode {
    RS_RUN_DEFAULT = 0, /* until no operation is pending or rs_loop_stop() */
    RS_RUN_ONCE = 1,    /* wait for at least one completion, handle what is ready, return */
    RS_RUN_NOWAIT = 2,  /* handle what is ready without waiting */
};

/* Run the loop on the calling thread. Returns the number of completions handled (>= 0) or a
 * negative errno. Calling callbacks is the only side effect. */
int rs_loop_run(rs_loop *loop, int mode);

/* Make a running rs_loop_run(RS_RUN_DEFAULT) return after the current batch. Same thread only. */
void rs_loop_stop(rs_loop *loop);

/* The backend in use (enum rs_backend, never AUTO), or -EINVAL for NULL. */
int rs_loop_backend(const rs_loop *loop);

/* Number of operations in flight on the loop. */
size_t rs_loop_pending(const rs_loop *loop);

/* Counters of a loop's work, for tests and benchmarks. */
struct rs_loop_stats {
    unsigned long long submitted;     /* operations started */
    unsigned long long completed;     /* operations finished (callbacks / blocking returns) */
    unsigned long long waits;         /* times the loop asked the kernel for completions/readiness */
    unsigned long long fixed_buf_ops; /* io_uring READ_FIXED / WRITE_FIXED operations issued */
    unsigned long long recv_bufs;     /* io_uring provided receive buffers now registered (0 until
                                         the first multishot receive; grows under pressure up to
                                         8x buf_count) */
};

/* Copy the loop's counters into *st. 0, or -EINVAL for NULL. */
int rs_loop_stats(const rs_loop *loop, struct rs_loop_stats *st);

/* What the kernel granted a loop (rs_loop_features): io_uring setup flags and capabilities that
 * change how operations run. Readiness backends have none of them. The two MULTISHOT bits have
 * no kernel probe: they are set until a multishot operation of that kind is refused (-EINVAL,
 * kernels before 5.19 / 6.0), after which the loop runs that kind single-shot. */
#define RS_FEAT_DEFER_TASKRUN    (1u << 0) /* completion work runs only when the loop waits */
#define RS_FEAT_COOP_TASKRUN     (1u << 1) /* the fallback where DEFER_TASKRUN is refused (< 6.1) */
#define RS_FEAT_SQPOLL           (1u << 2) /* a kernel thread polls the SQ (RS_LOOP_SQPOLL) */
#define RS_FEAT_CQ_NODROP        (1u << 3) /* a full CQ never loses a completion */
#define RS_FEAT_SEND_ZC          (1u << 4) /* zero-copy sends (rs_loop_opts.zc_threshold) */
#define RS_FEAT_MULTISHOT_ACCEPT (1u << 5) /* one ACCEPT for many connections (else re-armed) */
#define RS_FEAT_MULTISHOT_RECV   (1u << 6) /* one RECV on provided buffer rings (else re-armed
                                              single receives into a buffer per connection) */
#define RS_FEAT_FIXED_BUFFERS    (1u << 7) /* registered buffers (rs_makefile's READ/WRITE_FIXED) */
#define RS_FEAT_LINK_TIMEOUT     (1u << 8) /* timeouts ride on the op or the wait: one syscall a call */

/* The RS_FEAT_* bits of loop (0 for epoll/poll or NULL). */
unsigned rs_loop_features(const rs_loop *loop);

/* "uring", "epoll", "poll", "auto", or NULL for an unknown value. */
const char *rs_backend_name(int backend);

/* The calling thread's default loop, created on first use with RS_LOOP_OPTS_INIT (so
 * RINGSOCK_BACKEND applies) and freed when the thread exits. Returns 0 and *out, or the error of
 * rs_loop_new. The blocking socket calls use it. */
int rs_loop_default(rs_loop **out);

/* Free the calling thread's default loop now (it is made again on next use): for programs that
 * want every fd closed before they exit, and for fd-accounting tests. Returns 0, or -EBUSY if
 * operations are still in flight on it. */
int rs_loop_default_release(void);

#ifdef __cplusplus
}
#endif
#endif
