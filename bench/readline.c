/* bench/readline: read 256 MiB of '\n'-separated lines (mixed lengths) from a loopback TCP peer
 * process, line by line, with
 *   baseline   plain blocking recv() into a 64 KiB heap buffer + memchr, each line copied out
 *              to the caller's buffer (the contract rs_file_readline has)
 *   rs-fixed   rs_file_readline, default buffer, fixed buffers (READ_FIXED) on io_uring
 *   rs-heap    rs_file_readline, RINGSOCK_NO_FIXED=1 (plain RECV into the same kind of buffer)
 *   rs-epoll   rs_file_readline on the epoll backend
 *   python     python3: sock.makefile('rb').readline()
 * and, with --sweep, rs-fixed with 8/16/64/256 KiB buffers (how the default was chosen).
 *
 * Every variant is a separate reader process pinned to CPU 0 (the writer to CPU 1), run under
 * `perf stat -e raw_syscalls:sys_enter`; a run of the same reader on an empty stream is
 * subtracted, so syscalls/MiB excludes process start-up (python's in particular). Repetitions
 * are interleaved; medians with min..max; ratios are per repetition against the same
 * repetition's baseline, then the median. Output: a table, then one key=value line per variant.
 *
 * Usage: readline [--mib N] [--reps N] [--sweep] [--no-python] [--no-perf]
 *        readline --reader VARIANT PORT BUFSIZE   (internal) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#define LINE_CAP 16384
#define MAX_VARIANTS 16
#define MAX_REPS 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)n, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* ---- the readers (each runs in its own process, prints one report line) ------------------- */

struct tally {
    unsigned long long lines, bytes, sum; /* sum: first byte x length, to catch mis-framed lines */
};

static void count(struct tally *t, const char *line, size_t k)
{
    t->lines++;
    t->bytes += k;
    t->sum += (unsigned long long)(unsigned char)line[0] * k;
}

static int connect_plain(unsigned short port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("readline: connect");
        exit(1);
    }
    return fd;
}

static void read_baseline(unsigned short port, size_t bufsize, struct tally *t, double *t0)
{
    int fd = connect_plain(port);
    char *buf = malloc(bufsize), *line = malloc(LINE_CAP);
    size_t pos = 0, end = 0;
    *t0 = now();
    for (;;) {
        char *nl = memchr(buf + pos, '\n', end - pos);
        if (nl) {
            size_t k = (size_t)(nl + 1 - (buf + pos));
            memcpy(line, buf + pos, k);
            pos += k;
            count(t, line, k);
            continue;
        }
        memmove(buf, buf + pos, end - pos);
        end -= pos;
        pos = 0;
        ssize_t r = recv(fd, buf + end, bufsize - end, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        end += (size_t)r;
    }
    if (end > pos)
        count(t, buf + pos, end - pos);
    free(buf);
    free(line);
    close(fd);
}

static void read_ringsock(unsigned short port, long bufsize, struct tally *t, double *t0)
{
    rs_socket *s;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = rs_socket_open(&s, AF_INET, SOCK_STREAM, 0);
    if (r == 0)
        r = rs_connect(s, (struct sockaddr *)&a, sizeof a);
    rs_file *f = NULL;
    if (r == 0)
        r = rs_makefile(&f, s, "rb", bufsize);
    if (r < 0) {
        fprintf(stderr, "readline: ringsock setup: %s\n", rs_strerror(r));
        exit(1);
    }
    char *line = malloc(LINE_CAP);
    *t0 = now();
    ssize_t k;
    while ((k = rs_file_readline(f, line, LINE_CAP)) > 0)
        count(t, line, (size_t)k);
    if (k < 0) {
        fprintf(stderr, "readline: rs_file_readline: %s\n", rs_strerror((int)k));
        exit(1);
    }
    rs_loop *loop;
    struct rs_loop_stats st;
    rs_loop_default(&loop);
    rs_loop_stats(loop, &st);
    rs_file_close(f);
    rs_close(s);
    free(line);
    printf("fixed_ops=%llu backend=%s ", st.fixed_buf_ops, rs_backend_name(rs_loop_backend(loop)));
}

static const char py_reader[] =
    "import os, resource, socket, sys, time\n"
    "def cpu():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    return r.ru_utime + r.ru_stime\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "f = s.makefile('rb')\n"
    "lines = nbytes = 0\n"
    "c0 = cpu(); t0 = time.monotonic()\n"
    "for line in iter(f.readline, b''):\n"
    "    lines += 1\n"
    "    nbytes += len(line)\n"
    "t1 = time.monotonic(); c1 = cpu()\n"
    "print('lines=%d bytes=%d sum=0 secs=%.6f cpu=%.6f' % (lines, nbytes, t1 - t0, c1 - c0), flush=True)\n";

static int reader_main(const char *variant, unsigned short port, long bufsize)
{
    struct tally t = { 0, 0, 0 };
    double c0 = cpu_self(), t0 = 0;
    if (strcmp(variant, "baseline") == 0)
        read_baseline(port, bufsize > 0 ? (size_t)bufsize : 65536, &t, &t0);
    else
        read_ringsock(port, bufsize, &t, &t0);
    double t1 = now(), c1 = cpu_self();
    printf("lines=%llu bytes=%llu sum=%llu secs=%.6f cpu=%.6f\n", t.lines, t.bytes, t.sum, t1 - t0, c1 - c0);
    fflush(stdout);
    return 0;
}

/* ---- the driver --------------------------------------------------------------------------- */

struct variant {
    const char *name;   /* as printed */
    const char *reader; /* baseline | ringsock | python */
    long bufsize;
    const char *env[3]; /* extra environment for the reader */
};

struct result {
    double secs, cpu, syscalls;
    unsigned long long lines, bytes, sum, fixed_ops;
};

static char *data;
static size_t data_len;
static struct tally want;
static bool use_perf = true;
static char self_exe[4096]; /* our own path (under perf, /proc/self/exe would be perf) */

static void make_data(size_t len)
{
    data = malloc(len);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t off = 0;
    while (off < len) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned p = (unsigned)(x % 100);
        /* mixed lengths: 90 % short (0..119), 9 % medium (120..999), 1 % long (1000..7999) */
        size_t n = p < 90 ? (x >> 20) % 120 : p < 99 ? 120 + (x >> 20) % 880 : 1000 + (x >> 20) % 7000;
        if (off + n + 1 > len)
            n = len - off - 1;
        for (size_t i = 0; i < n; i++)
            data[off + i] = (char)(' ' + ((x >> (i % 48)) + i) % 94); /* printable, never '\n' */
        data[off + n] = '\n';
        count(&want, data + off, n + 1);
        off += n + 1;
    }
    data_len = len;
}

/* The writer: accept one connection on l, send len bytes of data in 256 KiB sends, close. */
static pid_t spawn_writer(int l, size_t len, const int pipefd[2])
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    close(pipefd[0]);
    close(pipefd[1]); /* the report pipe must see EOF when the reader ends */
    pin(1);
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(1);
    size_t off = 0;
    while (off < len) {
        size_t k = len - off < 262144 ? len - off : 262144;
        ssize_t r = send(c, data + off, k, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            _exit(2);
        off += (size_t)r;
    }
    close(c);
    _exit(0);
}

/* Run one reader; fill *res from its report and perf's count. */
static int run_reader(const struct variant *v, int l, unsigned short port, size_t len, struct result *res)
{
    char perf_out[] = "/tmp/rs-readline-perf-XXXXXX";
    int pfd = mkstemp(perf_out);
    if (pfd < 0)
        return -1;
    close(pfd);
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return -1;
    pid_t w = spawn_writer(l, len, pipefd);
    pid_t pid = fork();
    if (pid == 0) {
        pin(0);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        close(l);
        for (int i = 0; i < 3 && v->env[i]; i++)
            putenv((char *)v->env[i]);
        char portstr[16], bufstr[32];
        snprintf(portstr, sizeof portstr, "%u", port);
        snprintf(bufstr, sizeof bufstr, "%ld", v->bufsize);
        const char *argv[20];
        int n = 0;
        if (use_perf) {
            argv[n++] = "perf";
            argv[n++] = "stat";
            argv[n++] = "-x,";
            argv[n++] = "-e";
            argv[n++] = "raw_syscalls:sys_enter";
            argv[n++] = "-o";
            argv[n++] = perf_out;
            argv[n++] = "--";
        }
        if (strcmp(v->reader, "python") == 0) {
            argv[n++] = "python3";
            argv[n++] = "-c";
            argv[n++] = py_reader;
            argv[n++] = portstr;
        } else {
            argv[n++] = self_exe;
            argv[n++] = "--reader";
            argv[n++] = v->reader;
            argv[n++] = portstr;
            argv[n++] = bufstr;
        }
        argv[n] = NULL;
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    char buf[512];
    size_t got = 0;
    ssize_t r;
    while ((r = read(pipefd[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(pipefd[0]);
    int st;
    waitpid(pid, &st, 0);
    int wst;
    waitpid(w, &wst, 0);
    memset(res, 0, sizeof *res);
    const char *p = strstr(buf, "fixed_ops=");
    if (p)
        res->fixed_ops = strtoull(p + 10, NULL, 10);
    p = strstr(buf, "lines=");
    if (!p || sscanf(p, "lines=%llu bytes=%llu sum=%llu secs=%lf cpu=%lf", &res->lines, &res->bytes,
                     &res->sum, &res->secs, &res->cpu) != 5) {
        fprintf(stderr, "readline: %s: no report (status %d): %s\n", v->name, st, buf);
        unlink(perf_out);
        return -1;
    }
    res->syscalls = -1;
    FILE *fp = fopen(perf_out, "r");
    if (fp) {
        char ln[256];
        while (fgets(ln, sizeof ln, fp))
            if (strstr(ln, "raw_syscalls:sys_enter"))
                res->syscalls = strtod(ln, NULL);
        fclose(fp);
    }
    unlink(perf_out);
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    double t[MAX_REPS];
    memcpy(t, v, (size_t)n * sizeof *v);
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static double vmin(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double vmax(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--reader") == 0)
        return reader_main(argv[2], (unsigned short)atoi(argv[3]), atol(argv[4]));
    size_t mib = 256;
    int reps = 5;
    bool sweep = false, python = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc)
            mib = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sweep") == 0)
            sweep = true;
        else if (strcmp(argv[i], "--no-python") == 0)
            python = false;
        else if (strcmp(argv[i], "--no-perf") == 0)
            use_perf = false;
        else {
            fprintf(stderr, "usage: readline [--mib N] [--reps N] [--sweep] [--no-python] [--no-perf]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || mib < 1)
        return 2;
    if (use_perf &&
        system("perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true >/dev/null 2>&1") != 0) {
        fprintf(stderr, "readline: perf stat -e raw_syscalls:sys_enter unusable: syscalls not measured\n");
        use_perf = false;
    }
    signal(SIGPIPE, SIG_IGN);
    ssize_t sl = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (sl <= 0)
        return 1;
    self_exe[sl] = 0;
    make_data(mib << 20);

    struct variant vs[MAX_VARIANTS];
    int nv = 0;
    vs[nv++] = (struct variant){ "baseline", "baseline", 65536, { NULL } };
    vs[nv++] = (struct variant){ "rs-fixed", "ringsock", -1, { "RINGSOCK_BACKEND=uring", NULL } };
    vs[nv++] = (struct variant){
        "rs-heap", "ringsock", -1, { "RINGSOCK_BACKEND=uring", "RINGSOCK_NO_FIXED=1", NULL }
    };
    vs[nv++] = (struct variant){ "rs-epoll", "ringsock", -1, { "RINGSOCK_BACKEND=epoll", NULL } };
    if (python)
        vs[nv++] = (struct variant){ "python", "python", -1, { NULL } };
    if (sweep) {
        static const long sizes[] = { 8192, 16384, 65536, 262144 };
        static char names[4][32];
        for (int i = 0; i < 4; i++) {
            snprintf(names[i], sizeof names[i], "rs-fixed-%ldk", sizes[i] / 1024);
            vs[nv++] = (struct variant){ names[i], "ringsock", sizes[i], { "RINGSOCK_BACKEND=uring", NULL } };
        }
    }

    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 8) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0) {
        perror("readline: listen");
        return 1;
    }
    unsigned short port = ntohs(a.sin_port);

    /* start-up cost of each reader: the same process on an empty stream */
    double null_sys[MAX_VARIANTS];
    for (int v = 0; v < nv; v++) {
        struct result r;
        null_sys[v] = run_reader(&vs[v], l, port, 0, &r) == 0 ? r.syscalls : -1;
    }
    static struct result res[MAX_VARIANTS][MAX_REPS];
    for (int rep = 0; rep < reps; rep++) {
        for (int v = 0; v < nv; v++) {
            if (run_reader(&vs[v], l, port, data_len, &res[v][rep]) < 0)
                return 1;
            struct result *r = &res[v][rep];
            if (r->lines != want.lines || r->bytes != want.bytes || (r->sum && r->sum != want.sum)) {
                fprintf(stderr, "readline: %s read %llu lines / %llu bytes, sent %llu / %llu\n", vs[v].name,
                        r->lines, r->bytes, want.lines, want.bytes);
                return 1;
            }
        }
    }

    double mibf = (double)data_len / (1 << 20);
    printf("readline: %.0f MiB, %llu lines (mean %.1f B), %d interleaved reps, reader CPU 0, writer CPU 1\n",
           mibf, want.lines, (double)want.bytes / (double)want.lines, reps);
    printf("%-14s %14s %16s %10s %14s %12s %14s %10s\n", "variant", "Mlines/s", "GB/s (min..max)",
           "x baseline", "CPU us/MiB", "syscalls/MiB", "fixed ops/MiB", "");
    for (int v = 0; v < nv; v++) {
        double gbs[MAX_REPS], mls[MAX_REPS], ratio[MAX_REPS], cpu[MAX_REPS], sys[MAX_REPS];
        for (int rep = 0; rep < reps; rep++) {
            struct result *r = &res[v][rep];
            gbs[rep] = (double)r->bytes / r->secs / 1e9;
            mls[rep] = (double)r->lines / r->secs / 1e6;
            ratio[rep] = res[0][rep].secs / r->secs;
            cpu[rep] = r->cpu * 1e6 / mibf;
            sys[rep] = r->syscalls >= 0 && null_sys[v] >= 0 ? (r->syscalls - null_sys[v]) / mibf : -1;
        }
        char sysbuf[32];
        double ms = median(sys, reps);
        if (ms < 0)
            snprintf(sysbuf, sizeof sysbuf, "n/a");
        else
            snprintf(sysbuf, sizeof sysbuf, "%.1f", ms);
        char span[40];
        snprintf(span, sizeof span, "%.2f (%.2f..%.2f)", median(gbs, reps), vmin(gbs, reps), vmax(gbs, reps));
        printf("%-14s %14.2f %16s %10.2f %14.0f %12s %14.1f\n", vs[v].name, median(mls, reps), span,
               median(ratio, reps), median(cpu, reps), sysbuf, (double)res[v][0].fixed_ops / mibf);
    }
    for (int v = 0; v < nv; v++) {
        double gbs[MAX_REPS], ratio[MAX_REPS], cpu[MAX_REPS], sys[MAX_REPS], mls[MAX_REPS];
        for (int rep = 0; rep < reps; rep++) {
            struct result *r = &res[v][rep];
            gbs[rep] = (double)r->bytes / r->secs / 1e9;
            mls[rep] = (double)r->lines / r->secs / 1e6;
            ratio[rep] = res[0][rep].secs / r->secs;
            cpu[rep] = r->cpu * 1e6 / mibf;
            sys[rep] = r->syscalls >= 0 && null_sys[v] >= 0 ? (r->syscalls - null_sys[v]) / mibf : -1;
        }
        printf(
            "bench=readline variant=%s mib=%.0f reps=%d mlines_s=%.3f gb_s=%.3f gb_s_min=%.3f gb_s_max=%.3f "
            "ratio=%.3f ratio_min=%.3f ratio_max=%.3f cpu_us_mib=%.1f syscalls_mib=%.2f fixed_ops=%llu\n",
            vs[v].name, mibf, reps, median(mls, reps), median(gbs, reps), vmin(gbs, reps), vmax(gbs, reps),
            median(ratio, reps), vmin(ratio, reps), vmax(ratio, reps), median(cpu, reps), median(sys, reps),
            res[v][0].fixed_ops);
    }
    close(l);
    free(data);
    return 0;
}
