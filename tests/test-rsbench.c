/* rsbench server and client, run as programs (RSBENCH is the binary) over loopback on ephemeral
 * ports, with --backend set from RINGSOCK_BACKEND: every mode reports something > 0 and no error,
 * --threads spreads the connections over SO_REUSEPORT listeners, --json parses, progress lines
 * come once per interval, SIGINT ends a run early with its results, echo data is checked (a
 * corrupting echo server written here is caught), the sockperf mode answers sockperf's framing (and
 * sockperf itself, when installed), and bad command lines exit 2 with one line. No
 * figure is asserted beyond "more than zero": the machine's speed is not under test. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"

#define MAX_ARGS 40

/* ---- running rsbench ---- */

static const char *rsbench_path(void)
{
    const char *p = getenv("RSBENCH");
    ck_assert_msg(p && *p, "RSBENCH (the rsbench binary) is not set");
    return p;
}

static const char *backend_arg(void)
{
    const char *b = getenv("RINGSOCK_BACKEND");
    return b && *b ? b : "auto";
}

struct proc {
    pid_t pid;
    int out, err; /* read ends of the child's stdout and stderr */
};

/* Start rsbench with argv (NULL-terminated, without the program). */
static struct proc spawn(const char *const *args)
{
    const char *argv[MAX_ARGS + 2];
    int n = 0;
    argv[n++] = rsbench_path();
    for (; args[n - 1] && n <= MAX_ARGS; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    int po[2], pe[2];
    ck_assert_int_eq(pipe2(po, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pe, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    return (struct proc){ .pid = pid, .out = po[0], .err = pe[0] };
}

struct output {
    int status; /* as t_wait_child: exit status, 256 + signal, -1 if killed for the timeout */
    char out[65536], err[16384];
    size_t nout, nerr;
};

/* Read a child's stdout and stderr to EOF (at most until the deadline), then reap it. */
static void collect(struct proc *p, double timeout, struct output *o)
{
    double end = t_now() + timeout;
    o->nout = o->nerr = 0;
    struct pollfd pf[2] = { { .fd = p->out, .events = POLLIN }, { .fd = p->err, .events = POLLIN } };
    int open_fds = 2;
    while (open_fds > 0) {
        double left = end - t_now();
        if (left <= 0)
            break;
        int r = poll(pf, 2, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(r, 0);
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            char *buf = i == 0 ? o->out : o->err;
            size_t *len = i == 0 ? &o->nout : &o->nerr;
            size_t cap = i == 0 ? sizeof o->out : sizeof o->err;
            char scratch[4096];
            ssize_t n = read(pf[i].fd, *len + 1 < cap ? buf + *len : scratch,
                             *len + 1 < cap ? cap - 1 - *len : sizeof scratch);
            if (n <= 0) {
                pf[i].fd = -1;
                open_fds--;
            } else if (*len + 1 < cap) {
                *len += (size_t)n;
            }
        }
    }
    o->out[o->nout] = '\0';
    o->err[o->nerr] = '\0';
    close(p->out);
    close(p->err);
    o->status = t_wait_child(p->pid, open_fds ? 0.1 : end - t_now() + 5);
}

/* Run rsbench to its end. */
static void run(struct output *o, double timeout, const char *const *args)
{
    struct proc p = spawn(args);
    collect(&p, timeout, o);
}

/* A server started with args; its port from its first line ("... port N, ..."). */
struct server {
    struct proc p;
    char port[16];
};

static void server_start(struct server *s, const char *const *args)
{
    s->p = spawn(args);
    char line[512];
    size_t n = 0;
    double end = t_now() + 10;
    /* the listening line: on stdout, or on stderr with --json */
    struct pollfd pf[2] = { { .fd = s->p.out, .events = POLLIN }, { .fd = s->p.err, .events = POLLIN } };
    while (n < sizeof line - 1 && !memchr(line, '\n', n)) {
        int r = poll(pf, 2, (int)((end - t_now()) * 1000) + 1);
        ck_assert_msg(r > 0, "rsbench server printed no listening line within 10 s");
        int fd = (pf[0].revents ? pf[0] : pf[1]).fd;
        ssize_t k = read(fd, line + n, 1); /* byte by byte: what follows the line stays in the pipe */
        ck_assert_msg(k == 1, "rsbench server ended before listening: %.*s", (int)n, line);
        n++;
    }
    line[n] = '\0';
    const char *p = strstr(line, " port ");
    ck_assert_msg(p, "no port in '%s'", line);
    ck_assert_int_eq(sscanf(p, " port %15[0-9]", s->port), 1);
}

/* SIGTERM, then its output; it must exit 0. */
static void server_stop(struct server *s, struct output *o)
{
    kill(s->p.pid, SIGTERM);
    collect(&s->p, 20, o);
    ck_assert_msg(o->status == 0, "server exit %d, stderr: %s", o->status, o->err);
}

/* The number after "key": in a JSON text (the first occurrence), or -1 if absent. */
static double json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    return strtod(p + strlen(pat), NULL);
}

/* Does python3's json module accept text as one JSON document? */
static bool python_json_ok(const char *text)
{
    int in[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        execlp("python3", "python3", "-c", "import json,sys; json.load(sys.stdin)", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    size_t len = strlen(text);
    ck_assert_int_eq(write(in[1], text, len), (ssize_t)len);
    close(in[1]);
    int st = t_wait_child(pid, 30);
    ck_assert_msg(st != 127, "python3 not found");
    return st == 0;
}

/* Client args: mode, then the common part (backend, port), then extra, NULL-terminated. */
#define CLIENT(...) ((const char *const[]){ "client", __VA_ARGS__, NULL })

static void assert_clean_client(const struct output *o, const char *what)
{
    ck_assert_msg(o->status == 0, "%s: client exit %d\nstdout: %s\nstderr: %s", what, o->status, o->out,
                  o->err);
    ck_assert_msg(json_num(o->out, "errors") == 0, "%s: errors in %s", what, o->out);
    char want[64];
    snprintf(want, sizeof want, "\"backend\":\"%s\"", backend_arg());
    if (strcmp(backend_arg(), "auto") != 0)
        ck_assert_msg(strstr(o->out, want), "%s: not on backend %s: %s", what, backend_arg(), o->out);
}

/* ---- the modes ---- */

START_TEST(echo_8_conns_1s_reports_messages_and_no_errors)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(
        &s, (const char *const[]){ "server", "echo", "--backend", backend_arg(), "--interval", "0", NULL });
    run(o, 30,
        CLIENT("echo", "127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "8", "--duration", "1",
               "--json"));
    assert_clean_client(o, "echo");
    ck_assert_msg(json_num(o->out, "messages") > 0, "no messages: %s", o->out);
    ck_assert_msg(json_num(o->out, "connected") == 8, "not 8 connections: %s", o->out);
    ck_assert_msg(json_num(o->out, "p99") > 0, "no latency: %s", o->out);
    server_stop(&s, so);
    ck_assert_msg(strstr(so->out, "accepted    8 connections"), "server: %s", so->out);
    ck_assert_msg(strstr(so->out, "errors      0 "), "server: %s", so->out);
    free(o);
    free(so);
}
END_TEST

START_TEST(echo_pipelined_depth_4)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "--backend", backend_arg(), "--interval", "0", NULL });
    run(o, 30,
        CLIENT("echo", "127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "4", "--depth", "4",
               "--size", "1k", "--duration", "1", "--json"));
    assert_clean_client(o, "echo depth 4");
    ck_assert_msg(json_num(o->out, "depth") == 4 && json_num(o->out, "size") == 1024, "%s", o->out);
    ck_assert_msg(json_num(o->out, "messages") > 0, "no messages: %s", o->out);
    server_stop(&s, so);
    free(o);
    free(so);
}
END_TEST

START_TEST(stream_reports_mb_per_s)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "stream", "--backend", backend_arg(), "--interval", "0",
                                            "--json", NULL });
    run(o, 30,
        CLIENT("stream", "127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "2", "--duration", "1",
               "--json"));
    assert_clean_client(o, "stream");
    ck_assert_msg(json_num(o->out, "mb_per_s") > 0, "no MB/s: %s", o->out);
    server_stop(&s, so);
    ck_assert_msg(json_num(so->out, "bytes_in") > 0 && json_num(so->out, "errors") == 0, "server: %s",
                  so->out);
    free(o);
    free(so);
}
END_TEST

START_TEST(connect_reports_connections_per_s)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "connect", "--backend", backend_arg(), "--interval",
                                            "0", "--json", NULL });
    run(o, 30,
        CLIENT("connect", "127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "4", "--duration", "1",
               "--json"));
    assert_clean_client(o, "connect");
    ck_assert_msg(json_num(o->out, "connections_per_s") > 0, "no connections/s: %s", o->out);
    /* A connection the client counted may still wait in the server's accept queue when it is
     * stopped (the handshake completes in the kernel): give it a moment, and hold the server to
     * having accepted some and never more than were made (+ the 4 of a last round in flight). */
    t_sleep(0.3);
    server_stop(&s, so);
    double acc = json_num(so->out, "accepted"), made = json_num(o->out, "connections");
    ck_assert_msg(acc > 0 && acc <= made + 4, "server accepted %.0f, client made %.0f: %s", acc, made,
                  so->out);
    free(o);
    free(so);
}
END_TEST

START_TEST(sendfile_reports_mb_per_s)
{
    char path[] = "/tmp/rsbench-sendfile-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static char block[65536];
    t_fill_pattern(block, sizeof block, 7);
    for (int i = 0; i < 16; i++) /* 1 MiB */
        ck_assert_int_eq(write(fd, block, sizeof block), (ssize_t)sizeof block);
    close(fd);
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "sendfile", "--file", path, "--backend", backend_arg(),
                                            "--interval", "0", "--json", NULL });
    run(o, 30,
        CLIENT("sendfile", "127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "2", "--duration", "1",
               "--json"));
    assert_clean_client(o, "sendfile");
    ck_assert_msg(json_num(o->out, "mb_per_s") > 0, "no MB/s: %s", o->out);
    server_stop(&s, so);
    ck_assert_msg(json_num(so->out, "bytes_out") > 0 && json_num(so->out, "errors") == 0, "server: %s",
                  so->out);
    unlink(path);
    free(o);
    free(so);
}
END_TEST

START_TEST(threads_spread_connections_over_reuseport_listeners)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "--threads", "2", "--backend", backend_arg(),
                                            "--interval", "0", "--json", NULL });
    run(o, 30,
        CLIENT("127.0.0.1", s.port, "--threads", "2", "--conns", "16", "--backend", backend_arg(),
               "--duration", "1", "--json"));
    assert_clean_client(o, "threads");
    ck_assert_msg(json_num(o->out, "messages") > 0 && json_num(o->out, "connected") == 16, "%s", o->out);
    server_stop(&s, so);
    ck_assert_msg(json_num(so->out, "accepted") == 16, "server: %s", so->out);
    ck_assert_msg(strstr(so->out, "\"accepted_per_thread\":["), "server: %s", so->out);
    free(o);
    free(so);
}
END_TEST

START_TEST(json_output_parses)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "--backend", backend_arg(), "--json", NULL });
    run(o, 30,
        CLIENT("127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "2", "--duration", "1.2",
               "--json"));
    assert_clean_client(o, "json");
    ck_assert_msg(python_json_ok(o->out), "client JSON does not parse: %s", o->out);
    ck_assert_msg(strstr(o->out, "\"intervals\":[{"), "no intervals: %s", o->out);
    server_stop(&s, so);
    ck_assert_msg(python_json_ok(so->out), "server JSON does not parse: %s", so->out);
    free(o);
    free(so);
}
END_TEST

/* Text mode: a progress line per interval (a pipe is not a terminal: plain lines), then the
 * summary. */
START_TEST(text_output_has_progress_lines_and_summary)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "--backend", backend_arg(), NULL });
    run(o, 30,
        CLIENT("127.0.0.1", s.port, "--backend", backend_arg(), "--conns", "2", "--duration", "2.5",
               "--interval", "1"));
    ck_assert_msg(o->status == 0, "exit %d: %s %s", o->status, o->out, o->err);
    int lines = 0;
    for (const char *p = o->out; (p = strstr(p, "\n[")); p++)
        lines++;
    ck_assert_msg(lines == 3, "want 3 progress lines (1 s, 1 s, 0.5 s), got %d:\n%s", lines, o->out);
    ck_assert_msg(!strchr(o->out, '\r'), "a \\r line on a pipe: %s", o->out);
    ck_assert_msg(strstr(o->out, "\nmessages    ") && strstr(o->out, "\nlatency     p50 ") &&
                      strstr(o->out, "\nerrors      0\n"),
                  "summary: %s", o->out);
    server_stop(&s, so);
    /* the server printed progress lines too while the client was connected */
    ck_assert_msg(strstr(so->out, "\n[") && strstr(so->out, "conns 2"), "server: %s", so->out);
    free(o);
    free(so);
}
END_TEST

START_TEST(sigint_ends_the_client_early_with_results)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "--backend", backend_arg(), "--interval", "0", NULL });
    double t0 = t_now();
    struct proc c =
        spawn(CLIENT("127.0.0.1", s.port, "--backend", backend_arg(), "--duration", "60", "--json"));
    t_sleep(1.0);
    kill(c.pid, SIGINT);
    collect(&c, 20, o);
    ck_assert_msg(t_now() - t0 < 10, "SIGINT did not end the run: %.1f s", t_now() - t0);
    assert_clean_client(o, "sigint");
    double secs = json_num(o->out, "duration_s");
    ck_assert_msg(secs > 0.5 && secs < 5 && json_num(o->out, "messages") > 0, "%s", o->out);
    server_stop(&s, so);
    free(o);
    free(so);
}
END_TEST

/* ---- sockperf mode ---- */

/* A sockperf message: 14-byte big-endian header (seq, flags, total length), then payload. */
static size_t sp_message(unsigned char *m, uint64_t seq, unsigned flags, uint32_t len)
{
    for (int i = 0; i < 8; i++)
        m[i] = (unsigned char)(seq >> (56 - 8 * i));
    m[8] = (unsigned char)(flags >> 8);
    m[9] = (unsigned char)flags;
    for (int i = 0; i < 4; i++)
        m[10 + i] = (unsigned char)(len >> (24 - 8 * i));
    for (uint32_t i = 14; i < len; i++)
        m[i] = (unsigned char)(seq + i);
    return len;
}

/* The framing as sockperf's own server treats it: warm-up and non-pong messages get no answer, a
 * pong request comes back whole with the CLIENT flag (1) cleared, even when sent a byte at a time
 * or several in one send. */
START_TEST(sockperf_mode_answers_pong_requests_only)
{
    struct server s;
    struct output *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "sockperf", "--backend", backend_arg(), "--interval",
                                            "0", NULL });
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)atoi(s.port)) };
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static unsigned char out[8192], want[8192], got[8192];
    size_t n = 0, nwant = 0;
    n += sp_message(out + n, 1, 1 | 4, 14); /* warm-up: no answer */
    n += sp_message(out + n, 2, 1, 100);    /* no pong request: no answer */
    size_t m = sp_message(out + n, 3, 1 | 2, 14);
    memcpy(want + nwant, out + n, m);
    want[nwant + 9] &= (unsigned char)~1;
    n += m, nwant += m;
    m = sp_message(out + n, 4, 1 | 2, 3000);
    memcpy(want + nwant, out + n, m);
    want[nwant + 9] &= (unsigned char)~1;
    n += m, nwant += m;
    for (size_t i = 0; i < 200; i++) /* the first 200 bytes one at a time */
        ck_assert_int_eq(send(fd, out + i, 1, MSG_NOSIGNAL), 1);
    ck_assert_int_eq(send(fd, out + 200, n - 200, MSG_NOSIGNAL), (ssize_t)(n - 200));
    size_t have = 0;
    while (have < nwant) {
        ssize_t r = recv(fd, got + have, sizeof got - have, 0);
        ck_assert_msg(r > 0, "after %zu of %zu bytes: %zd", have, nwant, r);
        have += (size_t)r;
    }
    ck_assert_msg(memcmp(got, want, nwant) == 0, "the answers differ from the pong requests");
    shutdown(fd, SHUT_WR);
    ck_assert_int_eq(recv(fd, got, sizeof got, 0), 0); /* nothing more, then the server's EOF */
    close(fd);
    server_stop(&s, so);
    ck_assert_msg(strstr(so->out, "errors      0 "), "server: %s", so->out);
    free(so);
}
END_TEST

/* sockperf itself (Debian's package), when installed: a client no one here wrote. */
START_TEST(sockperf_ping_pong_tcp)
{
    if (system("command -v sockperf >/dev/null 2>&1") != 0) {
        fprintf(stderr, "sockperf not installed: sockperf_ping_pong_tcp checks nothing\n");
        return;
    }
    struct server s;
    struct output *so = calloc(1, sizeof *so);
    server_start(&s, (const char *const[]){ "server", "sockperf", "--backend", backend_arg(), "--interval",
                                            "0", NULL });
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sockperf ping-pong --tcp -i 127.0.0.1 -p %s -t 1 2>&1", s.port);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    bool summary = false;
    unsigned long observations = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "Summary: Latency is"))
            summary = true;
        const char *p = strstr(line, "Total ");
        if (p && strstr(p, "observations"))
            observations = strtoul(p + 6, NULL, 10);
    }
    int st = pclose(f);
    ck_assert_msg(st == 0 && summary && observations > 0, "sockperf: status %d, summary %d, %lu observations",
                  st, summary, observations);
    server_stop(&s, so);
    free(so);
}
END_TEST

/* ---- failures are reported ---- */

/* An echo server that changes one byte (stream offset 1000) of what it echoes. */
static void *corrupting_echo(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        if (total <= 1000 && total + (size_t)n > 1000)
            buf[1000 - total] ^= 0x5a;
        total += (size_t)n;
        if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
            break;
    }
    close(fd);
    return NULL;
}

START_TEST(echo_data_is_checked)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(a.sin_port));
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, corrupting_echo, &lfd), 0);
    struct output *o = calloc(1, sizeof *o);
    run(o, 30, CLIENT("127.0.0.1", port, "--backend", backend_arg(), "--duration", "0.5", "--json"));
    pthread_join(th, NULL);
    close(lfd);
    ck_assert_msg(o->status == 1, "a changed echo must fail the run: exit %d: %s", o->status, o->out);
    ck_assert_msg(json_num(o->out, "data") == 1, "want 1 data error: %s", o->out);
    ck_assert_msg(json_num(o->out, "messages") > 0, "the good messages still count: %s", o->out);
    ck_assert_msg(strstr(o->out, "came back changed"), "%s", o->out);
    free(o);
}
END_TEST

START_TEST(mode_mismatch_is_an_error)
{
    struct server s;
    struct output *o = calloc(1, sizeof *o), *so = calloc(1, sizeof *so);
    server_start(
        &s, (const char *const[]){ "server", "echo", "--backend", backend_arg(), "--interval", "0", NULL });
    run(o, 30,
        CLIENT("stream", "127.0.0.1", s.port, "--backend", backend_arg(), "--size", "1k", "--duration", "0.5",
               "--json"));
    ck_assert_msg(o->status == 1 && json_num(o->out, "errors") > 0, "exit %d: %s", o->status, o->out);
    ck_assert_msg(strstr(o->out, "the server sent data in stream mode"), "%s", o->out);
    server_stop(&s, so);
    free(o);
    free(so);
}
END_TEST

START_TEST(refused_connection_exits_1)
{
    /* a port bound but not listening refuses connections while the socket is open */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(a.sin_port));
    struct output *o = calloc(1, sizeof *o);
    run(o, 30, CLIENT("127.0.0.1", port, "--backend", backend_arg(), "--duration", "0.5"));
    close(fd);
    ck_assert_msg(o->status == 1, "exit %d", o->status);
    ck_assert_msg(strstr(o->err, "no connection") && strstr(o->err, "refused"), "stderr: %s", o->err);
    free(o);
}
END_TEST

START_TEST(sendfile_server_without_a_file_exits_1)
{
    struct output *o = calloc(1, sizeof *o);
    run(o, 30,
        (const char *const[]){ "server", "sendfile", "--file", "/nonexistent/rsbench", "--backend",
                               backend_arg(), NULL });
    ck_assert_msg(o->status == 1 && strstr(o->err, "/nonexistent/rsbench"), "exit %d: %s", o->status, o->err);
    free(o);
}
END_TEST

/* Each bad command line: exit 2, one line on stderr naming the problem, nothing on stdout. */
static const char *const bad_args[][12] = {
    { "client", NULL },
    { "client", "echo", "127.0.0.1", NULL },
    { "client", "127.0.0.1", "0", NULL },
    { "client", "127.0.0.1", "99999", NULL },
    { "client", "--conns", "0", "127.0.0.1", "1", NULL },
    { "client", "--conns", NULL },
    { "client", "--size", "1x", "127.0.0.1", "1", NULL },
    { "client", "--size", "65m", "127.0.0.1", "1", NULL },
    { "client", "--depth", "4", "stream", "127.0.0.1", "1", NULL },
    { "client", "--size", "64", "connect", "127.0.0.1", "1", NULL },
    { "client", "--backend", "nope", "127.0.0.1", "1", NULL },
    { "client", "-4", "-6", "127.0.0.1", "1", NULL },
    { "client", "--duration", "abc", "127.0.0.1", "1", NULL },
    { "client", "--duration", "0", "127.0.0.1", "1", NULL },
    { "client", "--threads", "4", "--conns", "2", "127.0.0.1", "1", NULL },
    { "client", "--file", "x", "127.0.0.1", "1", NULL },
    { "client", "streem", "127.0.0.1", "1", NULL },
    { "client", "--interval", "0.01", "127.0.0.1", "1", NULL },
    { "client", "sockperf", "127.0.0.1", "1", NULL },
    { "server", "--depth", "2", NULL },
    { "server", "--conns", "2", NULL },
    { "server", "sendfile", NULL },
    { "server", "--file", "/etc/hostname", NULL },
    { "server", "--threads", "0", NULL },
    { "server", "--bogus", NULL },
    { "server", "127.0.0.1", "1", "extra", NULL },
    { "server", "127.0.0.1", "port", NULL },
};

START_TEST(bad_arguments_exit_2_with_one_line)
{
    const char *const *args = bad_args[_i];
    struct output *o = calloc(1, sizeof *o);
    run(o, 10, args);
    char cmd[256] = "";
    for (int i = 0; args[i]; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", args[i]);
    ck_assert_msg(o->status == 2, "rsbench%s: exit %d, want 2; stderr: %s", cmd, o->status, o->err);
    ck_assert_msg(o->nout == 0, "rsbench%s: stdout: %s", cmd, o->out);
    ck_assert_msg(o->nerr > 0 && strchr(o->err, '\n') == o->err + o->nerr - 1,
                  "rsbench%s: want exactly one line on stderr: '%s'", cmd, o->err);
    ck_assert_msg(strncmp(o->err, "rsbench: ", 9) == 0, "rsbench%s: %s", cmd, o->err);
    free(o);
}
END_TEST

START_TEST(help_names_every_mode)
{
    struct output *o = calloc(1, sizeof *o);
    for (int i = 0; i < 2; i++) {
        run(o, 10, (const char *const[]){ i ? "client" : "server", "--help", NULL });
        ck_assert_int_eq(o->status, 0);
        ck_assert_msg(strstr(o->out, "echo") && strstr(o->out, "stream") && strstr(o->out, "connect") &&
                          strstr(o->out, "sendfile") && strstr(o->out, "--backend"),
                      "%s", o->out);
    }
    free(o);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("rsbench");
    TCase *tc = tcase_create("modes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, echo_8_conns_1s_reports_messages_and_no_errors);
    tcase_add_test(tc, echo_pipelined_depth_4);
    tcase_add_test(tc, stream_reports_mb_per_s);
    tcase_add_test(tc, connect_reports_connections_per_s);
    tcase_add_test(tc, sendfile_reports_mb_per_s);
    tcase_add_test(tc, threads_spread_connections_over_reuseport_listeners);
    tcase_add_test(tc, json_output_parses);
    tcase_add_test(tc, text_output_has_progress_lines_and_summary);
    tcase_add_test(tc, sigint_ends_the_client_early_with_results);
    tcase_add_test(tc, sockperf_mode_answers_pong_requests_only);
    tcase_add_test(tc, sockperf_ping_pong_tcp);
    suite_add_tcase(s, tc);
    tc = tcase_create("failures");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, echo_data_is_checked);
    tcase_add_test(tc, mode_mismatch_is_an_error);
    tcase_add_test(tc, refused_connection_exits_1);
    tcase_add_test(tc, sendfile_server_without_a_file_exits_1);
    tcase_add_loop_test(tc, bad_arguments_exit_2_with_one_line, 0,
                        (int)(sizeof bad_args / sizeof bad_args[0]));
    tcase_add_test(tc, help_names_every_mode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return t_run(make_suite()); }
