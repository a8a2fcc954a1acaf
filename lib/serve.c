/* rs_serve: N worker threads, each with its own loop and SO_REUSEPORT listener; optionally a
 * classic-BPF reuseport program that hands each connection to the listener of the CPU whose
 * softirq received it (no libbpf needed: SO_ATTACH_REUSEPORT_CBPF). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringsock/async.h"
#include "ringsock/net.h"
#include "socket_i.h"
#include "export_i.h"

struct worker {
    struct rs_serve *sv;
    int index;
    pthread_t thread;
    bool started;
    rs_socket *sock; /* handed to the worker, which turns it into its listener */
    rs_loop *loop;
    rs_conn *listener;
    rs_async *wake; /* rs_serve_stop's signal to the worker */
    bool stopping;
    int error;
};

struct rs_serve {
    struct rs_serve_opts opts;
    int port;
    int n;
    struct worker *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready; /* workers that finished starting (well or not) */
};

static void wake_cb(rs_async *a, void *user)
{
    struct worker *w = user;
    if (w->stopping)
        return;
    w->stopping = true;
    rs_async_close(a, NULL, NULL);
    if (w->listener) {
        rs_conn_close(w->listener, NULL, NULL);
        w->listener = NULL;
    }
    if (w->sv->opts.on_stop)
        w->sv->opts.on_stop(w->loop, w->index, w->sv->opts.user);
    rs_loop_stop(w->loop);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    struct rs_serve *sv = w->sv;
    int r = 0;
    if (sv->opts.steer_by_cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->index, &set);
        r = -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (r == 0)
        r = rs_loop_new(&w->loop, &sv->opts.loop);
    if (r == 0) {
        r = rs_conn_from_socket(&w->listener, w->loop, w->sock);
        if (r == 0)
            w->sock = NULL;
    }
    if (r == 0)
        r = rs_async_new(&w->wake, w->loop, wake_cb, w);
    if (r == 0)
        sv->opts.on_start(w->loop, w->listener, w->index, sv->opts.user);
    pthread_mutex_lock(&sv->mu);
    w->error = r;
    sv->ready++;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    if (r == 0) {
        unsigned ms = 0;
        while (!w->stopping)
            if (rs_loop_run(w->loop, RS_RUN_DEFAULT) < 0)
                rs__loop_backoff(&ms); /* an engine error must not spin the worker */
        /* drain what on_stop closed; bounded, since a conn the user forgot never completes */
        int64_t until = rs__now() + 5000000000LL;
        while (rs_loop_pending(w->loop) && rs__now() < until)
            rs_loop_run(w->loop, RS_RUN_ONCE);
    } else if (w->listener || w->wake) {
        if (w->listener)
            rs_conn_close(w->listener, NULL, NULL);
        w->listener = NULL;
        if (w->wake)
            rs_async_close(w->wake, NULL, NULL);
        w->wake = NULL;
        rs_loop_run(w->loop, RS_RUN_DEFAULT);
    }
    if (w->loop && rs_loop_free(w->loop) == 0)
        w->loop = NULL;
    return NULL;
}

/* cBPF: A = the receiving CPU; A %= n; return A — the index of a socket in the reuseport group,
 * which is the order the listeners were bound in. */
static int attach_cpu_steering(int fd, int n)
{
    struct sock_filter code[] = {
        { BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU) },
        { BPF_ALU | BPF_MOD | BPF_K, 0, 0, (uint32_t)n },
        { BPF_RET | BPF_A, 0, 0, 0 },
    };
    struct sock_fprog prog;
    memset(&prog, 0, sizeof prog); /* the padding after len goes to the kernel too */
    prog.len = sizeof code / sizeof code[0];
    prog.filter = code;
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0 ? -errno : 0;
}

static void serve_free(struct rs_serve *sv)
{
    for (int i = 0; i < sv->n; i++) {
        struct worker *w = &sv->w[i];
        if (w->sock)
            rs_close(w->sock);
    }
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    free(sv->w);
    free(sv);
}

static void stop_and_join(struct rs_serve *sv)
{
    for (int i = 0; i < sv->n; i++) {
        struct worker *w = &sv->w[i];
        if (!w->started)
            continue;
        if (w->error == 0) /* else it has not waited, and has closed its wake-up */
            rs_async_send(w->wake);
        pthread_join(w->thread, NULL);
    }
}

EXPORT int rs_serve_start(rs_serve **out, const struct rs_serve_opts *opts)
{
    if (!out || !opts || !opts->on_start || opts->threads < 0)
        return -EINVAL;
    *out = NULL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = opts->threads ? opts->threads : (int)(cpus > 0 ? cpus : 1);
    if (n > 1024 || (opts->steer_by_cpu && n > cpus))
        return -EINVAL;
    struct rs_serve *sv = calloc(1, sizeof *sv);
    if (!sv)
        return -ENOMEM;
    sv->w = calloc((size_t)n, sizeof *sv->w);
    if (!sv->w) {
        free(sv);
        return -ENOMEM;
    }
    sv->opts = *opts;
    sv->n = n;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);

    /* Every listener is bound here, in index order, before any thread runs: the first fixes the
     * port (port "0"), the order is what the steering program indexes. */
    struct rs_server_opts so = RS_SERVER_OPTS_INIT;
    so.family = opts->family;
    so.backlog = opts->backlog;
    so.reuse_port = true;
    char port[16];
    const char *p = opts->port;
    int r = 0;
    for (int i = 0; i < n && r == 0; i++) {
        struct worker *w = &sv->w[i];
        w->sv = sv;
        w->index = i;
        r = rs_create_server(&w->sock, opts->host, p, &so);
        if (r == 0 && i == 0) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            r = rs_getsockname(w->sock, &ss, &len);
            sv->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
            snprintf(port, sizeof port, "%d", sv->port);
            p = port;
        }
    }
    if (r == 0 && opts->steer_by_cpu)
        r = attach_cpu_steering(rs_socket_fd(sv->w[0].sock), n);
    for (int i = 0; i < n && r == 0; i++) {
        struct worker *w = &sv->w[i];
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e != 0)
            r = -e;
        else
            w->started = true;
    }
    int started = 0;
    for (int i = 0; i < n; i++)
        started += sv->w[i].started;
    pthread_mutex_lock(&sv->mu);
    while (sv->ready < started)
        pthread_cond_wait(&sv->cv, &sv->mu);
    pthread_mutex_unlock(&sv->mu);
    for (int i = 0; i < n && r == 0; i++)
        r = sv->w[i].error;
    if (r < 0) {
        stop_and_join(sv);
        serve_free(sv);
        return r;
    }
    *out = sv;
    return 0;
}

EXPORT int rs_serve_port(const rs_serve *sv) { return sv ? sv->port : -EINVAL; }

EXPORT int rs_serve_stop(rs_serve *sv)
{
    if (!sv)
        return -EINVAL;
    stop_and_join(sv);
    serve_free(sv);
    return 0;
}
