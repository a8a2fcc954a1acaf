/* rscat (tools/rscat.c) run as a child the way a user runs it: Python peers on the other end
 * (tests/py/rscat_peer.py) with every byte checksummed both ways, and the CLI contract (exit
 * statuses, one-line usage errors, -w). RINGSOCK_BACKEND passes through to the child, and each
 * relay test checks with -v that the child really ran the backend asked for. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

extern char **environ;

#define MB (1024u * 1024u)
#define PEER_WAIT 20.0 /* seconds a peer gets to report once rscat is done */
#define RUN_WAIT 30.0  /* seconds an rscat run that should end may take */

/* ---- running rscat -------------------------------------------------------------------------- */

/* RSCAT from the build (tools/meson.build), else the rscat beside this test binary. */
static const char *rscat_path(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("RSCAT");
    if (env && *env)
        return env;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 8);
    ck_assert_int_gt(n, 0);
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    ck_assert_ptr_nonnull(slash);
    strcpy(slash + 1, "rscat");
    return path;
}

/* A running rscat and our ends of its stdin, stdout and stderr. Its stdin gets in_len bytes of
 * t_py_random from a seed, then EOF unless in_keep; stdout is checksummed as it arrives; stderr
 * is kept as text. */
struct rc {
    pid_t pid;
    int in, out, err; /* -1 once closed (out, err: at EOF) */
    size_t in_len, in_off;
    bool in_keep;
    uint64_t rng;
    unsigned char chunk[64 * 1024]; /* stdin bytes made but not yet written */
    size_t chunk_len, chunk_off;
    struct t_py_sha256 in_sha, out_sha;
    size_t out_n;
    char out_head[128]; /* the first bytes of stdout, for small replies */
    char errtxt[8192];
    size_t err_n;
    int status; /* t_wait_child's, once reaped */
};

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* Start rscat with args (NULL-terminated, without argv[0]) and env (NULL: ours). */
static void rc_start(struct rc *c, const char *const args[], char *const env[], size_t in_len, uint64_t seed,
                     bool in_keep)
{
    memset(c, 0, sizeof *c);
    c->in_len = in_len;
    c->in_keep = in_keep;
    c->rng = seed ? seed : 1;
    t_py_sha256_init(&c->in_sha);
    t_py_sha256_init(&c->out_sha);

    char *argv[32];
    size_t n = 0;
    argv[n++] = (char *)"rscat";
    for (size_t i = 0; args[i]; i++) {
        ck_assert_uint_lt(n, 30);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;

    int pin[2], pout[2], perr[2];
    ck_assert_int_eq(pipe2(pin, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pout, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(perr, O_CLOEXEC), 0);
    const char *exe = rscat_path();
    pid_t parent = getpid();
    c->pid = fork();
    ck_assert_int_ge(c->pid, 0);
    if (c->pid == 0) {
        /* rscat dies with this test process (a Check timeout kills it): no run outlives the
         * test. getppid: the parent may have died before prctl. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
            _exit(127);
        execve(exe, argv, env ? env : environ);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    c->in = pin[1];
    c->out = pout[0];
    c->err = perr[0];
    set_nonblock(c->in);
    set_nonblock(c->out);
    set_nonblock(c->err);
    if (in_len == 0 && !in_keep) {
        close(c->in);
        c->in = -1;
    }
}

static void close_in(struct rc *c)
{
    if (c->in >= 0) {
        close(c->in);
        c->in = -1;
    }
}

/* Feed stdin, drain stdout and stderr until until(c) holds (NULL: until stdout and stderr are
 * at EOF), for at most timeout seconds. Returns whether the condition was reached. */
static bool rc_pump(struct rc *c, double timeout, bool (*until)(const struct rc *))
{
    double end = t_now() + timeout;
    for (;;) {
        if (until ? until(c) : c->out < 0 && c->err < 0)
            return true;
        if (c->out < 0 && c->err < 0)
            return false; /* rscat has closed everything: nothing more will come */
        double left = end - t_now();
        if (left <= 0)
            return false;
        bool feeding = c->in >= 0 && c->in_off < c->in_len;
        struct pollfd p[3] = {
            { .fd = feeding ? c->in : -1, .events = POLLOUT },
            { .fd = c->out, .events = POLLIN },
            { .fd = c->err, .events = POLLIN },
        };
        int k = poll(p, 3, (int)(left * 1000) + 1);
        if (k < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(k, 0);
        if (feeding && p[0].revents) {
            if (c->chunk_off == c->chunk_len) {
                size_t want = c->in_len - c->in_off;
                c->chunk_len = want < sizeof c->chunk ? want : sizeof c->chunk;
                c->chunk_off = 0;
                t_py_random(&c->rng, c->chunk, c->chunk_len);
            }
            ssize_t w = write(c->in, c->chunk + c->chunk_off, c->chunk_len - c->chunk_off);
            if (w > 0) {
                t_py_sha256_update(&c->in_sha, c->chunk + c->chunk_off, (size_t)w);
                c->chunk_off += (size_t)w;
                c->in_off += (size_t)w;
            } else if (w < 0 && errno == EPIPE) {
                close_in(c); /* rscat stopped reading stdin; what it got is what the checks see */
            } else {
                ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EINTR), "write to rscat: %s",
                              strerror(errno));
            }
            if (c->in >= 0 && c->in_off == c->in_len && !c->in_keep)
                close_in(c);
        }
        if (c->out >= 0 && p[1].revents) {
            unsigned char buf[64 * 1024];
            ssize_t n = read(c->out, buf, sizeof buf);
            if (n > 0) {
                if (c->out_n < sizeof c->out_head - 1) {
                    size_t k2 = sizeof c->out_head - 1 - c->out_n;
                    memcpy(c->out_head + c->out_n, buf, (size_t)n < k2 ? (size_t)n : k2);
                }
                t_py_sha256_update(&c->out_sha, buf, (size_t)n);
                c->out_n += (size_t)n;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(c->out);
                c->out = -1;
            }
        }
        if (c->err >= 0 && p[2].revents) {
            char buf[4096];
            ssize_t n = read(c->err, buf, sizeof buf);
            if (n > 0) {
                size_t room = sizeof c->errtxt - 1 - c->err_n;
                memcpy(c->errtxt + c->err_n, buf, (size_t)n < room ? (size_t)n : room);
                c->err_n += (size_t)n < room ? (size_t)n : room;
                c->errtxt[c->err_n] = '\0';
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(c->err);
                c->err = -1;
            }
        }
    }
}

static void rc_close_all(struct rc *c)
{
    close_in(c);
    if (c->out >= 0)
        close(c->out);
    if (c->err >= 0)
        close(c->err);
    c->out = c->err = -1;
}

/* Run rscat to its end (at most timeout seconds, then SIGKILL): its status as t_wait_child's. */
static int rc_wait(struct rc *c, double timeout)
{
    double t0 = t_now();
    bool ended = rc_pump(c, timeout, NULL);
    rc_close_all(c);
    double left = timeout - (t_now() - t0);
    c->status = t_wait_child(c->pid, ended && left > 0.5 ? left : 0.5);
    ck_assert_msg(ended && c->status != -1, "rscat did not end within %.0f s; stderr: %s", timeout,
                  c->errtxt);
    return c->status;
}

/* Stop an rscat that would run on (-k): it must still be running; SIGTERM, reap. */
static void rc_terminate(struct rc *c)
{
    int st;
    ck_assert_msg(waitpid(c->pid, &st, WNOHANG) == 0, "rscat -k exited by itself; stderr: %s", c->errtxt);
    ck_assert_int_eq(kill(c->pid, SIGTERM), 0);
    rc_pump(c, 5, NULL);
    rc_close_all(c);
    c->status = t_wait_child(c->pid, 5);
    ck_assert_int_eq(c->status, 256 + SIGTERM);
}

/* One whole run with no stdin: status, stdout (small) and stderr in c. */
static int rc_run(struct rc *c, const char *const args[], char *const env[])
{
    rc_start(c, args, env, 0, 1, false);
    return rc_wait(c, RUN_WAIT);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void in_hex(struct rc *c, char hex[65]) { t_py_sha256_hex(&c->in_sha, hex); }
static void out_hex(struct rc *c, char hex[65]) { t_py_sha256_hex(&c->out_sha, hex); }

/* The "-v" line naming the backend the child's loop uses. */
static void assert_backend_line(const struct rc *c)
{
    int want = t_wanted_backend();
    if (want == RS_BACKEND_AUTO)
        return;
    char line[64];
    snprintf(line, sizeof line, "rscat: backend %s\n", rs_backend_name(want));
    ck_assert_msg(strstr(c->errtxt, line), "expected '%s' in stderr: %s", line, c->errtxt);
}

static const char *port_str(const struct sockaddr_storage *ss, char buf[8])
{
    unsigned port = ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                              : ntohs(((const struct sockaddr_in *)ss)->sin_port);
    snprintf(buf, 8, "%u", port);
    return buf;
}

/* ---- the peer's report ----------------------------------------------------------------------- */

struct report {
    size_t recv_n, sent_n;
    char recv_sha[65], sent_sha[65];
};

static void read_report(struct t_py *py, struct report *rp)
{
    char line[256];
    ck_assert_msg(t_py_readline(py, line, sizeof line, PEER_WAIT) >= 0, "the peer reported nothing");
    ck_assert_msg(sscanf(line, "recv %zu %64s sent %zu %64s", &rp->recv_n, rp->recv_sha, &rp->sent_n,
                         rp->sent_sha) == 4,
                  "peer said '%s'", line);
}

static void peer_done(struct t_py *py)
{
    char line[256];
    ck_assert_msg(t_py_readline(py, line, sizeof line, PEER_WAIT) >= 0, "the peer said nothing more");
    ck_assert_str_eq(line, "ok");
    ck_assert_int_eq(t_py_wait(py, PEER_WAIT), 0);
}

/* What the peer received is exactly rscat's stdin, and rscat's stdout exactly what it sent. */
static void assert_both_ways(struct rc *c, const struct report *rp)
{
    char hex[65];
    ck_assert_uint_eq(rp->recv_n, c->in_len);
    in_hex(c, hex);
    ck_assert_str_eq(rp->recv_sha, hex);
    ck_assert_uint_eq(c->out_n, rp->sent_n);
    out_hex(c, hex);
    ck_assert_str_eq(hex, rp->sent_sha);
}

/* ---- connecting ------------------------------------------------------------------------------ */

/* rscat HOST PORT against a Python server: in_len bytes up, out_len bytes down, at once. */
static void client_exchange(int family, size_t in_len, size_t out_len, double timeout)
{
    char n[24];
    snprintf(n, sizeof n, "%zu", out_len);
    char *const argv[] = { "server", family == AF_INET6 ? "6" : "4", n, "7", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    const char *args[] = { "-v", family == AF_INET6 ? "::1" : "127.0.0.1", py.line, NULL };
    struct rc c;
    rc_start(&c, args, NULL, in_len, 11, false);
    int st = rc_wait(&c, timeout);
    ck_assert_msg(st == 0, "rscat exited %d; stderr: %s", st, c.errtxt);
    assert_backend_line(&c);
    char want[384];
    snprintf(want, sizeof want, "rscat: connected to %s port %s\n", family == AF_INET6 ? "::1" : "127.0.0.1",
             py.line);
    ck_assert_msg(strstr(c.errtxt, want), "no '%s' in: %s", want, c.errtxt);
    struct report rp;
    read_report(&py, &rp);
    assert_both_ways(&c, &rp);
    peer_done(&py);
}

START_TEST(client_relays_5mb_both_ways) { client_exchange(AF_INET, 5 * MB, 5 * MB, RUN_WAIT); }
END_TEST

START_TEST(client_ipv6_relays_both_ways)
{
    client_exchange(AF_INET6, 300 * 1024 + 7, 200 * 1024 + 3, RUN_WAIT);
}
END_TEST

/* Nothing to send, nothing to receive: both directions end at once, status 0. */
START_TEST(client_empty_both_ways) { client_exchange(AF_INET, 0, 0, RUN_WAIT); }
END_TEST

/* stdin's EOF half-closes the socket (SHUT_WR) and rscat goes on reading: a server that answers
 * only at EOF gets its request whole, and its answer still reaches stdout. */
START_TEST(client_half_closes_at_stdin_eof)
{
    char *const argv[] = { "reply", "4", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    struct rc c;
    rc_start(&c, (const char *[]){ "127.0.0.1", py.line, NULL }, NULL, MB + 5, 3, false);
    int st = rc_wait(&c, RUN_WAIT);
    ck_assert_msg(st == 0, "status %d; stderr: %s", st, c.errtxt);
    char hex[65], want[80];
    in_hex(&c, hex);
    snprintf(want, sizeof want, "%s\n", hex);
    ck_assert_str_eq(c.out_head, want);
    ck_assert_str_eq(c.errtxt, "");
    peer_done(&py);
}
END_TEST

START_TEST(client_relays_100mb_both_ways) { client_exchange(AF_INET, 100 * MB, 100 * MB, 150); }
END_TEST

/* A refused port: status 1 and exactly one line naming the address and the error. */
START_TEST(refused_port_names_the_address)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    rs_socket *hold = t_refusing_port(AF_INET, &ss, &sl);
    char port[8];
    port_str(&ss, port);
    struct rc c;
    int st = rc_run(&c, (const char *[]){ "127.0.0.1", port, NULL }, NULL);
    ck_assert_int_eq(st, 1);
    char want[384];
    snprintf(want, sizeof want, "rscat: 127.0.0.1 port %s: %s\n", port, rs_strerror(-ECONNREFUSED));
    ck_assert_str_eq(c.errtxt, want);
    ck_assert_uint_eq(c.out_n, 0);

    /* -v: the backend, then the same attempt line */
    st = rc_run(&c, (const char *[]){ "-v", "127.0.0.1", port, NULL }, NULL);
    ck_assert_int_eq(st, 1);
    assert_backend_line(&c);
    ck_assert_msg(strstr(c.errtxt, want), "no '%s' in: %s", want, c.errtxt);
    ck_assert_int_eq(rs_close(hold), 0);
}
END_TEST

/* A listener with backlog 0 whose queue is full drops our SYN: -w bounds the attempt. */
START_TEST(connect_timeout_with_w)
{
    rs_socket *l, *fill[3];
    struct sockaddr_storage ss;
    socklen_t sl;
    t_loopback(AF_INET, 0, &ss, &sl);
    ck_assert_int_eq(rs_socket_open(&l, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_bind(l, (struct sockaddr *)&ss, sl), 0);
    ck_assert_int_eq(rs_listen(l, 0), 0);
    sl = sizeof ss;
    ck_assert_int_eq(rs_getsockname(l, &ss, &sl), 0);
    for (int i = 0; i < 3; i++) {
        /* the first completes and fills the queue; the rest make sure of it */
        ck_assert_int_eq(rs_socket_open(&fill[i], AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), 0);
        int r = rs_connect(fill[i], (struct sockaddr *)&ss, sl);
        ck_assert_msg(r == 0 || r == -EINPROGRESS, "filler: %s", rs_err_name(r));
        if (i == 0) {
            struct pollfd p = { .fd = rs_socket_fd(fill[0]), .events = POLLOUT };
            ck_assert_int_eq(poll(&p, 1, 2000), 1);
        }
    }
    char port[8];
    port_str(&ss, port);
    struct rc c;
    double t0 = t_now();
    int st = rc_run(&c, (const char *[]){ "-w", "0.5", "127.0.0.1", port, NULL }, NULL);
    double took = t_now() - t0;
    ck_assert_msg(st == 1, "status %d; stderr: %s", st, c.errtxt);
    char want[384];
    snprintf(want, sizeof want, "rscat: 127.0.0.1 port %s: %s\n", port, rs_strerror(-ETIMEDOUT));
    ck_assert_str_eq(c.errtxt, want);
    /* 1 s on top of the slack: starting a process (and, on a sanitizer build, its runtime) */
    ck_assert_msg(took >= 0.5 - T_EARLY && took <= 0.5 + t_slack() + 1.0, "took %.3f s", took);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rs_close(fill[i]), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* Connected to a listener that never accepts, stdin open and silent: nothing moves, and -w 1
 * ends the run after 1 s with status 1 — even though both threads are blocked (stdin in poll,
 * the socket in rs_recv). */
START_TEST(idle_timeout_silent_listener)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    rs_socket *l = t_server_ephemeral(AF_INET, &ss, &sl);
    char port[8];
    port_str(&ss, port);
    struct rc c;
    double t0 = t_now();
    rc_start(&c, (const char *[]){ "-v", "-w", "1", "127.0.0.1", port, NULL }, NULL, 0, 1, true);
    int st = rc_wait(&c, RUN_WAIT);
    double took = t_now() - t0;
    ck_assert_msg(st == 1, "status %d; stderr: %s", st, c.errtxt);
    char want[384];
    snprintf(want, sizeof want, "rscat: 127.0.0.1 port %s: idle for 1 s (-w): %s\n", port,
             rs_strerror(-ETIMEDOUT));
    ck_assert_msg(strstr(c.errtxt, want), "no '%s' in: %s", want, c.errtxt);
    ck_assert_msg(took >= 1.0 - T_EARLY && took <= 1.0 + t_slack() + 1.0, "took %.3f s", took);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* -w is idle time, not a total: a byte every 0.3 s for 1.5 s keeps a -w 1 run alive, which then
 * ends normally at the server's EOF. */
START_TEST(idle_timeout_reset_by_traffic)
{
    char *const argv[] = { "trickle", "4", "5", "0.3", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    struct rc c;
    rc_start(&c, (const char *[]){ "-w", "1", "127.0.0.1", py.line, NULL }, NULL, 0, 1, false);
    int st = rc_wait(&c, RUN_WAIT);
    ck_assert_msg(st == 0, "status %d; stderr: %s", st, c.errtxt);
    ck_assert_str_eq(c.out_head, "xxxxx");
    ck_assert_str_eq(c.errtxt, "");
    peer_done(&py);
}
END_TEST

/* The server resets the connection while stdin stays open: status 1, the reset is named, and the
 * blocked stdin reader does not keep rscat alive. */
START_TEST(peer_reset_is_an_error)
{
    char *const argv[] = { "reset", "4", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    struct rc c;
    rc_start(&c, (const char *[]){ "127.0.0.1", py.line, NULL }, NULL, 0, 1, true);
    int st = rc_wait(&c, 10);
    ck_assert_msg(st == 1, "status %d; stderr: %s", st, c.errtxt);
    char want[384];
    snprintf(want, sizeof want, ": %s\n", rs_strerror(-ECONNRESET));
    ck_assert_msg(strstr(c.errtxt, want) && count_lines(c.errtxt) == 1, "stderr: %s", c.errtxt);
    ck_assert_str_eq(c.out_head, "hi");
    peer_done(&py);
}
END_TEST

/* ---- listening ------------------------------------------------------------------------------- */

static bool has_listening_line(const struct rc *c)
{
    return strstr(c->errtxt, "rscat: listening on ") != NULL;
}

/* The port from rscat -v's "listening on ADDR port N" line. */
static void listening_port(struct rc *c, char port[8])
{
    ck_assert_msg(rc_pump(c, 10, has_listening_line), "no 'listening on' line: %s", c->errtxt);
    const char *p = strstr(strstr(c->errtxt, "rscat: listening on "), " port ");
    unsigned v = 0;
    ck_assert_msg(p && sscanf(p, " port %u", &v) == 1 && v > 0 && v < 65536, "stderr: %s", c->errtxt);
    snprintf(port, 8, "%u", v);
}

static void listen_exchange(int family, size_t in_len, size_t out_len)
{
    const char *host = family == AF_INET6 ? "::1" : "127.0.0.1";
    struct rc c;
    rc_start(&c, (const char *[]){ "-l", "-v", host, "0", NULL }, NULL, in_len, 5, false);
    char port[8];
    listening_port(&c, port);
    char n[24];
    snprintf(n, sizeof n, "%zu", out_len);
    char *const argv[] = { "client", port, family == AF_INET6 ? "6" : "4", n, "3", "1", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    ck_assert_str_eq(py.line, "start");
    int st = rc_wait(&c, RUN_WAIT);
    ck_assert_msg(st == 0, "rscat -l exited %d; stderr: %s", st, c.errtxt);
    assert_backend_line(&c);
    char want[64];
    snprintf(want, sizeof want, "rscat: connection from %s port ", host);
    ck_assert_msg(strstr(c.errtxt, want), "no '%s' in: %s", want, c.errtxt);
    struct report rp;
    read_report(&py, &rp);
    assert_both_ways(&c, &rp);
    char line[256];
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0); /* all-sent */
    peer_done(&py);
}

START_TEST(listen_relays_5mb_both_ways) { listen_exchange(AF_INET, 5 * MB, 5 * MB); }
END_TEST

START_TEST(listen_ipv6_relays_both_ways) { listen_exchange(AF_INET6, 100 * 1024 + 1, 150 * 1024 + 9); }
END_TEST

static bool got_200000(const struct rc *c) { return c->out_n >= 200000; }

/* -l -k: two clients in turn. The first takes stdin to its end; the second gets none (its
 * relay starts half-closed); stdout has both clients' bytes in order; rscat keeps listening. */
START_TEST(listen_keep_serves_clients_in_turn)
{
    struct rc c;
    rc_start(&c, (const char *[]){ "-l", "-k", "-v", "127.0.0.1", "0", NULL }, NULL, 1000, 9, false);
    char port[8];
    listening_port(&c, port);
    char *const argv[] = { "client", port, "4", "100000", "20", "2", NULL };
    struct t_py py;
    t_py_spawn("rscat_peer", argv, &py);
    ck_assert_str_eq(py.line, "start");
    ck_assert_msg(rc_pump(&c, RUN_WAIT, got_200000), "stdout has %zu bytes; stderr: %s", c.out_n, c.errtxt);

    struct report first, second;
    read_report(&py, &first);
    read_report(&py, &second);
    char hex[65], line[256], total[65];
    in_hex(&c, hex);
    ck_assert_uint_eq(first.recv_n, 1000);
    ck_assert_str_eq(first.recv_sha, hex);
    ck_assert_uint_eq(second.recv_n, 0);
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0);
    size_t all = 0;
    ck_assert_msg(sscanf(line, "all-sent %zu %64s", &all, total) == 2, "peer said '%s'", line);
    ck_assert_uint_eq(all, 200000);
    ck_assert_uint_eq(c.out_n, 200000);
    out_hex(&c, hex);
    ck_assert_str_eq(hex, total);
    peer_done(&py);
    rc_terminate(&c);
    ck_assert_msg(!strstr(c.errtxt, "rscat: accept") && count_lines(c.errtxt) >= 4, "stderr: %s", c.errtxt);
}
END_TEST

/* ---- the command line ------------------------------------------------------------------------ */

START_TEST(help_and_version_exit_0)
{
    static const char *const helps[] = { "--help", "-h" };
    for (int i = 0; i < 2; i++) {
        struct rc c;
        int st = rc_run(&c, (const char *[]){ helps[i], NULL }, NULL);
        ck_assert_int_eq(st, 0);
        ck_assert_str_eq(c.errtxt, "");
        ck_assert_msg(strncmp(c.out_head, "usage: rscat ", 13) == 0, "stdout: %s", c.out_head);
    }
    static const char *const versions[] = { "--version", "-V" };
    for (int i = 0; i < 2; i++) {
        struct rc c;
        int st = rc_run(&c, (const char *[]){ versions[i], NULL }, NULL);
        ck_assert_int_eq(st, 0);
        ck_assert_str_eq(c.errtxt, "");
        char want[64];
        snprintf(want, sizeof want, "rscat (ringsock) %s\n", rs_version_string());
        ck_assert_str_eq(c.out_head, want);
    }
}
END_TEST

/* Every mistake: status 2, nothing on stdout, exactly one line on stderr pointing to --help. */
START_TEST(bad_arguments_exit_2_with_one_line)
{
    static const char *const cases[][8] = {
        { NULL },
        { "127.0.0.1", NULL },
        { "127.0.0.1", "80", "extra", NULL },
        { "-x", "127.0.0.1", "80", NULL },
        { "--no-such-option", NULL },
        { "-w", NULL },
        { "-w", "0", "127.0.0.1", "80", NULL },
        { "-w", "-1", "127.0.0.1", "80", NULL },
        { "-w", "soon", "127.0.0.1", "80", NULL },
        { "-w", "nan", "127.0.0.1", "80", NULL },
        { "-4", "-6", "127.0.0.1", "80", NULL },
        { "-k", "127.0.0.1", "80", NULL },
        { "127.0.0.1", "0", NULL },
        { "127.0.0.1", "65536", NULL },
        { "127.0.0.1", "http", NULL },
        { "", "80", NULL },
        { "-l", NULL },
        { "-l", "127.0.0.1", "80", "extra", NULL },
        { "-l", "-1", NULL },
        { "--backend", NULL },
        { "--backend", "kqueue", "127.0.0.1", "80", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rc c;
        int st = rc_run(&c, cases[i], NULL);
        ck_assert_msg(st == 2, "case %zu (%s ...): status %d", i, cases[i][0] ? cases[i][0] : "", st);
        ck_assert_msg(count_lines(c.errtxt) == 1 && strncmp(c.errtxt, "rscat: ", 7) == 0 &&
                          strstr(c.errtxt, "--help"),
                      "case %zu: stderr '%s'", i, c.errtxt);
        ck_assert_uint_eq(c.out_n, 0);
    }
}
END_TEST

/* An environment with RINGSOCK_BACKEND set to value (NULL: removed). */
static char **env_with_backend(const char *value)
{
    static char *env[512];
    static char own[64];
    size_t n = 0;
    for (char **e = environ; *e && n < 510; e++)
        if (strncmp(*e, "RINGSOCK_BACKEND=", 17) != 0)
            env[n++] = *e;
    if (value) {
        snprintf(own, sizeof own, "RINGSOCK_BACKEND=%s", value);
        env[n++] = own;
    }
    env[n] = NULL;
    return env;
}

/* --backend beats the environment; an unusable RINGSOCK_BACKEND is an error, not a default. */
START_TEST(backend_option_sets_the_backend)
{
    int want = t_wanted_backend();
    const char *name = rs_backend_name(want == RS_BACKEND_AUTO ? RS_BACKEND_POLL : want);
    struct sockaddr_storage ss;
    socklen_t sl;
    rs_socket *hold = t_refusing_port(AF_INET, &ss, &sl);
    char port[8];
    port_str(&ss, port);
    struct rc c;
    int st = rc_run(&c, (const char *[]){ "-v", "--backend", name, "127.0.0.1", port, NULL },
                    env_with_backend("bogus"));
    ck_assert_int_eq(st, 1);
    char line[64];
    snprintf(line, sizeof line, "rscat: backend %s\n", name);
    ck_assert_msg(strncmp(c.errtxt, line, strlen(line)) == 0, "stderr: %s", c.errtxt);
    ck_assert_msg(strstr(c.errtxt, "connection refused") || strstr(c.errtxt, rs_strerror(-ECONNREFUSED)),
                  "stderr: %s", c.errtxt);

    st = rc_run(&c, (const char *[]){ "127.0.0.1", port, NULL }, env_with_backend("bogus"));
    ck_assert_int_eq(st, 1);
    char want2[96];
    snprintf(want2, sizeof want2, "rscat: backend bogus: %s\n", rs_strerror(-EINVAL));
    ck_assert_msg(strstr(c.errtxt, want2), "stderr: %s", c.errtxt);
    ck_assert_int_eq(rs_close(hold), 0);
}
END_TEST

static Suite *make_suite(void)
{
    /* a write to an rscat that died must be an error here, not the end of the test process */
    signal(SIGPIPE, SIG_IGN);
    const char *exe = rscat_path();
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "test-rscat: no rscat at %s (-Dtools=false?)\n", exe);
        exit(77);
    }
    Suite *s = suite_create("rscat");
    TCase *tc = t_tcase(s, "relay", 60);
    tcase_add_test(tc, client_relays_5mb_both_ways);
    tcase_add_test(tc, client_ipv6_relays_both_ways);
    tcase_add_test(tc, client_empty_both_ways);
    tcase_add_test(tc, client_half_closes_at_stdin_eof);
    tcase_add_test(tc, listen_relays_5mb_both_ways);
    tcase_add_test(tc, listen_ipv6_relays_both_ways);
    tcase_add_test(tc, listen_keep_serves_clients_in_turn);

    tc = t_tcase(s, "large", 160);
    tcase_add_test(tc, client_relays_100mb_both_ways);

    tc = t_tcase(s, "errors", 30);
    tcase_add_test(tc, refused_port_names_the_address);
    tcase_add_test(tc, connect_timeout_with_w);
    tcase_add_test(tc, idle_timeout_silent_listener);
    tcase_add_test(tc, idle_timeout_reset_by_traffic);
    tcase_add_test(tc, peer_reset_is_an_error);

    tc = t_tcase(s, "cli", 60);
    tcase_add_test(tc, help_and_version_exit_0);
    tcase_add_test(tc, bad_arguments_exit_2_with_one_line);
    tcase_add_test(tc, backend_option_sets_the_backend);
    return s;
}

int main(void) { return t_run(make_suite()); }
