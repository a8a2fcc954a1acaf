/* rsbench server/client: the histogram, progress lines, JSON strings, CPU time and signals. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "rsbench_common.h"

void rsb_hist_merge(struct rsb_hist *into, const struct rsb_hist *from)
{
    if (!from->count)
        return;
    for (unsigned i = 0; i < RSB_HBUCKETS; i++)
        into->b[i] += from->b[i];
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
}

static double bucket_mid(unsigned i)
{
    if (i < RSB_HSUB)
        return i;
    unsigned e = i / RSB_HSUB + RSB_HBITS - 1, sub = i % RSB_HSUB;
    double lo = (double)((uint64_t)(RSB_HSUB + sub) << (e - RSB_HBITS));
    return lo + (double)(1ull << (e - RSB_HBITS)) / 2;
}

double rsb_hist_quantile(const struct rsb_hist *h, double q)
{
    if (!h->count)
        return 0;
    /* the smallest value with at least q of the samples at or below it */
    uint64_t want = (uint64_t)ceil(q * (double)h->count);
    if (want < 1)
        want = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < RSB_HBUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want) {
            double v = bucket_mid(i);
            return v < (double)h->min ? (double)h->min : v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

struct rsb_cpu rsb_cpu_now(void)
{
    struct rusage ru;
    struct rsb_cpu c = { 0, 0 };
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        c.user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
        c.sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    }
    return c;
}

const char *rsb_grouped(double v, char buf[32])
{
    char raw[32];
    snprintf(raw, sizeof raw, "%.0f", v);
    size_t len = strlen(raw), o = 0, start = raw[0] == '-';
    for (size_t i = 0; i < len; i++) {
        if (i > start && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

void rsb_progress_init(struct rsb_progress *p)
{
    p->tty = isatty(STDOUT_FILENO) == 1;
    p->showing = false;
}

void rsb_progress_line(struct rsb_progress *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->tty) {
        /* \033[K clears what a longer previous line left on the right */
        printf("\r%s\033[K", line);
        p->showing = true;
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

void rsb_progress_end(struct rsb_progress *p)
{
    if (p->showing)
        printf("\n");
    p->showing = false;
    fflush(stdout);
}

void rsb_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

void rsb_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

int rsb_wait_signal(const sigset_t *set, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timespec ts = { .tv_sec = (time_t)seconds,
                           .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };
    for (;;) {
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0)
            return sig;
        if (errno != EINTR)
            return 0; /* EAGAIN: the time is up */
    }
}

void rsb_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

const char *rsb_loop_new_what(int backend, int err)
{
    static _Thread_local char buf[96];
    if (err == -ENOSYS || err == -EPERM)
        snprintf(buf, sizeof buf, "backend %s not available here (not built in, disabled or blocked)",
                 rsb_backend_str(backend));
    else
        snprintf(buf, sizeof buf, "rs_loop_new (backend %s)", rsb_backend_str(backend));
    return buf;
}

const char *rsb_backend_str(int backend)
{
    const char *n = rs_backend_name(backend);
    return n ? n : "?";
}

bool rsb_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

bool rsb_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}
