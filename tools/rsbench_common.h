/* rsbench server and client: their options and the pieces both use (latency histogram, progress
 * lines, JSON, CPU time, signals). rsbench.c holds main, the command table and the demo. */
#ifndef RSBENCH_COMMON_H
#define RSBENCH_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define RSB_PROG "rsbench"

enum rsb_mode {
    RSB_ECHO,
    RSB_STREAM,
    RSB_CONNECT,
    RSB_SENDFILE,
    RSB_SOCKPERF, /* server only: sockperf's framing (see rsbench_server.c) */
    RSB_MODE_COUNT
};
extern const char *const rsb_mode_name[RSB_MODE_COUNT];

struct rsb_opts {
    bool server;
    enum rsb_mode mode;
    int backend; /* enum rs_backend; RS_BACKEND_AUTO when --backend is not given */
    int threads;
    long conns;      /* client: connections over all threads */
    size_t size;     /* client: echo message / stream send size */
    long depth;      /* client, echo: messages in flight per connection */
    double duration; /* client: measured seconds; server: lifetime, 0 = until a signal */
    double interval; /* seconds between progress lines; 0 = none */
    int family;      /* AF_UNSPEC, AF_INET, AF_INET6 (-4, -6) */
    bool json;
    const char *file; /* server, sendfile: what to send */
    const char *host;
    const char *port;
};

/* Parse `rsbench server|client ...` (argv[0] is "server" or "client"). Returns -1 to go on, or the
 * exit status (0 after --help, 2 after a one-line usage error on stderr). */
int rsb_parse(int argc, char **argv, bool server, struct rsb_opts *o);
void rsb_server_help(FILE *f);
void rsb_client_help(FILE *f);

/* The commands (rsbench.c's table): parse, then run. Exit status 0, 1 (a failure, or errors
 * counted during a client's run) or 2 (usage). */
int rsb_cmd_server(int argc, char **argv);
int rsb_cmd_client(int argc, char **argv);
int rsb_run_server(const struct rsb_opts *o);
int rsb_run_client(const struct rsb_opts *o);

/* ---- latency histogram: log-linear, 64 sub-buckets per power of two of nanoseconds, so any
 * quantile is within 1.6 % of the true value (HdrHistogram's layout, 30 KiB) ---- */
#define RSB_HBITS 6
#define RSB_HSUB (1u << RSB_HBITS)
#define RSB_HBUCKETS ((64u - RSB_HBITS + 1u) * RSB_HSUB)

struct rsb_hist {
    uint64_t count, min, max;
    double sum;
    uint64_t b[RSB_HBUCKETS];
};

static inline unsigned rsb_hist_index(uint64_t v)
{
    if (v < RSB_HSUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= RSB_HBITS */
    return (e - RSB_HBITS + 1u) * RSB_HSUB + (unsigned)((v >> (e - RSB_HBITS)) & (RSB_HSUB - 1u));
}

static inline void rsb_hist_add(struct rsb_hist *h, uint64_t v)
{
    h->b[rsb_hist_index(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += (double)v;
}

void rsb_hist_merge(struct rsb_hist *into, const struct rsb_hist *from);
/* The value at quantile q (0..1): the middle of its bucket, clamped to [min, max]; 0 if empty. */
double rsb_hist_quantile(const struct rsb_hist *h, double q);

/* ---- time, CPU, formatting ---- */
static inline int64_t rsb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct rsb_cpu {
    double user, sys; /* seconds of this process */
};
struct rsb_cpu rsb_cpu_now(void);

/* 1234567 -> "1,234,567" */
const char *rsb_grouped(double v, char buf[32]);

/* Parse all of s as a number within [lo, hi]; false (and *out untouched) otherwise. */
bool rsb_parse_double(const char *s, double lo, double hi, double *out);
bool rsb_parse_long(const char *s, long lo, long hi, long *out);

/* ---- progress lines: on a terminal one line rewritten in place (\r), otherwise one line per
 * interval, flushed at once so that a pipe sees it live ---- */
struct rsb_progress {
    bool tty;
    bool showing; /* a \r line is on screen and needs its newline */
};
void rsb_progress_init(struct rsb_progress *p);
void rsb_progress_line(struct rsb_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rsb_progress_end(struct rsb_progress *p);

/* A JSON string, quoted and escaped. */
void rsb_json_str(FILE *f, const char *s);

/* ---- process setup ---- */
/* Block SIGINT and SIGTERM in the calling thread (and in threads it creates afterwards), so that
 * only rsb_wait_signal sees them; ignore SIGPIPE. */
void rsb_block_signals(sigset_t *set);
/* Wait up to seconds for a blocked signal of set: its number, or 0 when the time is up. */
int rsb_wait_signal(const sigset_t *set, double seconds);
/* Raise the soft RLIMIT_NOFILE to the hard limit (thousands of connections need fds). */
void rsb_raise_nofile(void);

/* What to call a failed rs_loop_new: names the backend and says "not available" for -ENOSYS and
 * -EPERM (not built in, disabled by sysctl, blocked by seccomp). */
const char *rsb_loop_new_what(int backend, int err);

/* "uring" etc. for the backend a loop really uses. */
const char *rsb_backend_str(int backend);

#endif
