/* Shared by the bench/ programs: what else used the machine during a run (/proc/stat and every
 * /proc/<pid>/stat), and a per-process syscall counter on the raw_syscalls:sys_enter tracepoint. */
#ifndef RS_BENCH_MACHINE_H
#define RS_BENCH_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Machine-wide CPU time from /proc/stat's "cpu" line, in clock ticks. */
struct cpu_ticks {
    unsigned long long task;  /* user + nice + system: what processes ran */
    unsigned long long irq;   /* irq + softirq (loopback TCP runs much of its receive path here) */
    unsigned long long steal; /* taken by the hypervisor */
    bool ok;
};

struct cpu_ticks cpu_ticks_now(void);

/* CPU time of every other process, to name what else ran during the benchmark. */
struct proc_cpu {
    int pid, ppid;
    char comm[32];
    unsigned long long ticks; /* utime + stime + cutime + cstime (reaped children included) */
    unsigned long long start; /* starttime: tells a reused pid apart */
};

/* All processes but this one, sorted by pid; *n of them. NULL on failure (caller frees). */
struct proc_cpu *proc_snapshot(size_t *n);
/* Print (prefixed with prog) the commands that used the most CPU between two snapshots. */
void print_other_cpu(const char *prog, const struct proc_cpu *a, size_t na, const struct proc_cpu *b, size_t nb);

/* The raw_syscalls:sys_enter tracepoint id (tracefs), or -1. */
long sys_enter_id(void);
/* A disabled counter of pid's syscalls, or -1. */
int syscall_counter(long id, pid_t pid);
/* Its value, or -1. */
int64_t counter_read(int fd);

#endif
