/* bench/zc-threshold: at which send size does zero-copy (SEND_ZC) beat copying for the completion
 * API on this machine? One conn streams S-byte sends (two in flight) to a discarding peer
 * process; each size runs with zc_threshold = RS_ZC_NEVER and = 1, interleaved, 5 rounds.
 * Prints GB/s and sender CPU µs per MiB (getrusage of the sending process), medians and ratios.
 * Sender pinned to CPU 1, peer to CPU 0. Usage: zc-threshold [seconds-per-run, default 0.5] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

struct run {
    char *buf;
    size_t size;
    unsigned long long bytes;
    int inflight;
    bool stop;
};

static void sent(rs_conn *c, ssize_t st, void *u)
{
    struct run *r = u;
    r->inflight--;
    if (st > 0)
        r->bytes += (unsigned long long)st;
    if (!r->stop && st > 0 && rs_conn_send(c, r->buf, r->size, sent, r) == 0)
        r->inflight++;
}

/* One timed run: returns GB/s and CPU µs per MiB. */
static void one(int port, size_t size, unsigned zc, double secs, double *gbs, double *us_mib)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.backend = RS_BACKEND_URING;
    o.zc_threshold = zc;
    rs_loop *loop;
    if (rs_loop_new(&loop, &o) < 0) {
        fprintf(stderr, "zc-threshold: io_uring loop unavailable\n");
        exit(1);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    rs_conn *c;
    rs_conn_open(&c, loop, fd);
    struct run r = { .buf = malloc(size), .size = size };
    memset(r.buf, 'z', size);
    for (int i = 0; i < 2; i++)
        if (rs_conn_send(c, r.buf, size, sent, &r) == 0)
            r.inflight++;
    double t0 = now(), c0 = cpu_self();
    unsigned long long b0 = r.bytes;
    while (now() - t0 < secs)
        rs_loop_run(loop, RS_RUN_ONCE);
    double t1 = now(), c1 = cpu_self();
    unsigned long long b1 = r.bytes;
    r.stop = true;
    while (r.inflight)
        rs_loop_run(loop, RS_RUN_ONCE);
    rs_conn_close(c, NULL, NULL);
    rs_loop_run(loop, RS_RUN_DEFAULT);
    rs_loop_free(loop);
    free(r.buf);
    double mib = (double)(b1 - b0) / (1 << 20);
    *gbs = (double)(b1 - b0) / (t1 - t0) / 1e9;
    *us_mib = mib > 0 ? (c1 - c0) * 1e6 / mib : 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    if (!(secs > 0)) {
        fprintf(stderr, "usage: zc-threshold [seconds-per-run]\n");
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
        perror("listen");
        return 1;
    }
    pid_t peer = fork();
    if (peer == 0) { /* the discarding peer: one connection after another */
        pin(0);
        static char sink[1 << 20];
        for (;;) {
            int s = accept(lfd, NULL, NULL);
            if (s < 0)
                _exit(0);
            while (recv(s, sink, sizeof sink, 0) > 0)
                ;
            close(s);
        }
    }
    pin(1);
    enum { ROUNDS = 5 };
    static const size_t sizes[] = { 4096, 16384, 65536, 262144, 1048576 };
    enum { NS = sizeof sizes / sizeof sizes[0] };
    double g[NS][2][ROUNDS], u[NS][2][ROUNDS];
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < NS; i++)
            for (int k = 0; k < 2; k++) {
                int zc = (k + round) % 2; /* alternate which goes first */
                one(ntohs(a.sin_port), sizes[i], zc ? 1u : RS_ZC_NEVER, secs, &g[i][zc][round], &u[i][zc][round]);
            }
    printf("%10s %12s %12s %8s %14s %14s %8s\n", "size", "copy GB/s", "zc GB/s", "ratio", "copy us/MiB", "zc us/MiB",
           "ratio");
    for (int i = 0; i < NS; i++) {
        double gc = median(g[i][0], ROUNDS), gz = median(g[i][1], ROUNDS);
        double uc = median(u[i][0], ROUNDS), uz = median(u[i][1], ROUNDS);
        printf("%10zu %12.2f %12.2f %7.2fx %14.1f %14.1f %7.2fx\n", sizes[i], gc, gz, gz / gc, uc, uz, uz / uc);
        printf("zc size=%zu copy_gbs=%.3f zc_gbs=%.3f copy_us_mib=%.1f zc_us_mib=%.1f\n", sizes[i], gc, gz, uc, uz);
    }
    kill(peer, SIGKILL);
    waitpid(peer, NULL, 0);
    close(lfd);
    return 0;
}
