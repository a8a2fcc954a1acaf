/* Shared by the bench/ programs: machine-load accounting and syscall counters (see machine.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "machine.h"

struct cpu_ticks cpu_ticks_now(void)
{
    struct cpu_ticks t = { 0, 0, 0, false };
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return t;
    unsigned long long us, ni, sy, id, wa, hi, si, st;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &us, &ni, &sy, &id, &wa, &hi, &si, &st) == 8) {
        t.task = us + ni + sy;
        t.irq = hi + si;
        t.steal = st;
        t.ok = true;
    }
    fclose(f);
    return t;
}


static int cmp_pid(const void *a, const void *b)
{
    const struct proc_cpu *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* All processes but this one, sorted by pid; *n of them. NULL on failure. */
struct proc_cpu *proc_snapshot(size_t *n)
{
    *n = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return NULL;
    size_t cap = 256;
    struct proc_cpu *v = malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid())
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        char *open_p = strchr(buf, '('), *close_p = strrchr(buf, ')');
        if (!open_p || !close_p || close_p < open_p)
            continue;
        struct proc_cpu pc = { .pid = (int)pid, .ticks = 0 };
        size_t cl = (size_t)(close_p - open_p - 1);
        if (cl >= sizeof pc.comm)
            cl = sizeof pc.comm - 1;
        memcpy(pc.comm, open_p + 1, cl);
        pc.comm[cl] = '\0';
        /* after ')': token 0 is field 3, ppid (4) token 1; utime, stime, cutime, cstime are
         * tokens 11-14 and starttime (field 22) is token 19 */
        char *save = NULL;
        int i = 0;
        for (char *t = strtok_r(close_p + 1, " ", &save); t && i <= 19; t = strtok_r(NULL, " ", &save), i++) {
            if (i == 1)
                pc.ppid = atoi(t);
            if (i >= 11 && i <= 14)
                pc.ticks += strtoull(t, NULL, 10);
            if (i == 19)
                pc.start = strtoull(t, NULL, 10);
        }
        if (*n == cap) {
            struct proc_cpu *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap *= 2;
        }
        v[(*n)++] = pc;
    }
    closedir(d);
    if (v)
        qsort(v, *n, sizeof *v, cmp_pid);
    return v;
}

static const struct proc_cpu *proc_find(const struct proc_cpu *v, size_t n, int pid)
{
    struct proc_cpu key = { .pid = pid };
    return v ? bsearch(&key, v, n, sizeof *v, cmp_pid) : NULL;
}

/* Print the commands that used the most CPU between the two snapshots (by command name). A
 * process that existed at the start and was reaped during the run brings all its CPU time into
 * its parent's cutime/cstime: what it had used before the start is taken off again. */
void print_other_cpu(const char *prog, const struct proc_cpu *a, size_t na, const struct proc_cpu *b, size_t nb)
{
    long hz = sysconf(_SC_CLK_TCK);
    struct proc_cpu *agg = calloc(nb ? nb : 1, sizeof *agg);
    unsigned long long *carried = calloc(nb ? nb : 1, sizeof *carried);
    if (!agg || !carried || hz <= 0) {
        free(agg);
        free(carried);
        return;
    }
    for (size_t i = 0; i < na; i++) {
        const struct proc_cpu *now = proc_find(b, nb, a[i].pid);
        if (now && now->start == a[i].start)
            continue; /* still there */
        const struct proc_cpu *parent = proc_find(b, nb, a[i].ppid);
        if (parent)
            carried[parent - b] += a[i].ticks;
    }
    size_t nagg = 0;
    unsigned long long total = 0;
    for (size_t i = 0; i < nb; i++) {
        const struct proc_cpu *old = proc_find(a, na, b[i].pid);
        unsigned long long before = (old && old->start == b[i].start ? old->ticks : 0) + carried[i];
        if (b[i].ticks <= before)
            continue;
        unsigned long long dt = b[i].ticks - before;
        total += dt;
        size_t k = 0;
        while (k < nagg && strcmp(agg[k].comm, b[i].comm) != 0)
            k++;
        if (k == nagg) {
            memcpy(agg[k].comm, b[i].comm, sizeof agg[k].comm);
            nagg++;
        }
        agg[k].ticks += dt;
    }
    printf("%s: other processes' CPU during the run (/proc/<pid>/stat, reaped children included): %.1f s", prog,
           (double)total / (double)hz);
    for (int shown = 0; shown < 6; shown++) {
        size_t best = nagg;
        for (size_t k = 0; k < nagg; k++)
            if (agg[k].ticks && (best == nagg || agg[k].ticks > agg[best].ticks))
                best = k;
        if (best == nagg || (double)agg[best].ticks / (double)hz < 0.05)
            break;
        printf("%s %s %.1f s", shown ? "," : ":", agg[best].comm, (double)agg[best].ticks / (double)hz);
        agg[best].ticks = 0;
    }
    printf("\n");
    free(agg);
    free(carried);
}

/* The raw_syscalls:sys_enter tracepoint id (tracefs), or -1. */
long sys_enter_id(void)
{
    static const char *paths[] = {
        "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        FILE *f = fopen(paths[i], "re");
        if (!f)
            continue;
        long id = -1;
        if (fscanf(f, "%ld", &id) != 1)
            id = -1;
        fclose(f);
        if (id >= 0)
            return id;
    }
    return -1;
}

/* A disabled counter of pid's syscalls, or -1. */
int syscall_counter(long id, pid_t pid)
{
    if (id < 0)
        return -1;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_TRACEPOINT;
    a.size = sizeof a;
    a.config = (uint64_t)id;
    a.disabled = 1;
    a.inherit = 0;
    return (int)syscall(SYS_perf_event_open, &a, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

int64_t counter_read(int fd)
{
    uint64_t v;
    if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        return -1;
    return (int64_t)v;
}
