/* rscat: netcat on ringsock. Connects with rs_create_connection (Happy Eyeballs) or accepts with
 * rs_create_server, then relays stdin -> socket and socket -> stdout until both directions end. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#define PROG "rscat"

/* Bytes per read(2) of stdin and per rs_recv. 1 GiB over loopback (head -c 1G /dev/zero | rscat,
 * rscat -l > /dev/null), medians of 7 on a shared, loaded 2-vCPU VM, MB/s for 16/64/128/256 KiB:
 * uring 1058/1245/1669/1538, epoll 1132/1268/1186/1041 (runs spread +-40%: 64 and 128 KiB are
 * not told apart, 16 KiB is slower). A pipe hands out at most 64 KiB per read anyway. */
#define CHUNK (128 * 1024)

/* How long a failed relay waits for its two threads to stop before a one-shot rscat exits anyway
 * (a thread blocked writing to a stdout nobody reads cannot be woken). */
#define GRACE_S 2.0

/* "255.255.255.255 port 65535", "ffff:...:ffff%4294967295 port 65535" */
#define ADDR_LEN (INET6_ADDRSTRLEN + 24)

static bool verbose;

/* ---- messages -------------------------------------------------------------------------------- */

static void vsay(const char *fmt, va_list ap)
{
    /* one fprintf per line: the two relay threads and main may report at the same time */
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, PROG ": %s\n", line);
}

/* A line on stderr, always. */
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}

/* A line on stderr with -v only. */
static void note(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}

/* One line on stderr, exit status 2. */
static int usage_error(const char *fmt, ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s (try '" PROG " --help')\n", line);
    return 2;
}

static const char *addr_str(const struct sockaddr_storage *ss, char buf[ADDR_LEN])
{
    char ip[INET6_ADDRSTRLEN + 12] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, INET6_ADDRSTRLEN);
        if (a->sin6_scope_id)
            snprintf(ip + strlen(ip), sizeof ip - strlen(ip), "%%%u", (unsigned)a->sin6_scope_id);
        port = ntohs(a->sin6_port);
    }
    snprintf(buf, ADDR_LEN, "%s port %u", ip, port);
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct timespec abs_ts(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- the relay --------------------------------------------------------------------------------
 * Two threads per connection, each with its own ringsock loop (loops are per thread; an rs_socket
 * may be used from several threads, as in socket.py): UP reads stdin with read(2) and sends with
 * rs_send, DOWN receives with rs_recv and writes stdout with write(2). stdin and stdout are not
 * sockets, so ringsock's calls cannot serve them. main waits for both to finish, or for the first
 * error, or for the -w idle time to pass, and then wakes whatever is still blocked: a byte in the
 * wake pipe for the stdin reader, shutdown(SHUT_RDWR) for the socket calls. */

/* UP: stdin -> socket; DOWN: socket -> stdout */
enum {
    UP,
    DOWN
};

/* Set by the UP thread at stdin's end and read by main after joining it: with -k, later clients
 * get no stdin and their relay starts with SHUT_WR. */
static bool stdin_eof;

struct relay {
    rs_socket *s;
    const char *peer; /* "127.0.0.1 port 80", for messages */
    double idle;      /* -w seconds, or RS_TIMEOUT_NONE */
    int wake[2];      /* a byte in wake[1] makes the stdin reader give up */
    pthread_t th[2];
    bool started[2];

    pthread_mutex_t mu; /* guards the rest */
    pthread_cond_t cv;
    bool done[2];   /* the direction ended and its thread is returning */
    bool cancelled; /* main is tearing the relay down: errors from now on are our own doing */
    int err;        /* the first failure, 0 = none */
    char msg[320];  /* its message, without "rscat: " */
    double last;    /* when a byte last moved, either way (now_s) */
    unsigned long long bytes[2];
};

static void fail(struct relay *r, int err, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    if (!r->cancelled && !r->err) {
        r->err = err;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, sizeof r->msg, fmt, ap);
        va_end(ap);
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

static void moved(struct relay *r, int dir, size_t n)
{
    pthread_mutex_lock(&r->mu);
    r->last = now_s();
    r->bytes[dir] += n;
    pthread_mutex_unlock(&r->mu);
}

static void finish(struct relay *r, int dir)
{
    pthread_mutex_lock(&r->mu);
    r->done[dir] = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* read(2) of stdin that main can interrupt: bytes, 0 at EOF, -ECANCELED when woken, -errno. */
static ssize_t stdin_read(struct relay *r, void *buf, size_t len)
{
    for (;;) {
        struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
                               { .fd = r->wake[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[1].revents)
            return -ECANCELED;
        if (!p[0].revents)
            continue;
        ssize_t n = read(STDIN_FILENO, buf, len);
        if (n >= 0)
            return n;
        /* EAGAIN: stdin's file description is O_NONBLOCK (shared with whoever set it) */
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    }
}

static void *up_main(void *arg)
{
    struct relay *r = arg;
    char *buf = malloc(CHUNK);
    if (!buf) {
        fail(r, -ENOMEM, "%s", rs_strerror(-ENOMEM));
        goto out;
    }
    for (;;) {
        ssize_t n = stdin_read(r, buf, CHUNK);
        if (n == -ECANCELED)
            break;
        if (n < 0) {
            fail(r, (int)n, "stdin: %s", rs_strerror((int)n));
            break;
        }
        if (n == 0) {
            stdin_eof = true;
            int e = rs_shutdown(r->s, SHUT_WR);
            if (e < 0)
                fail(r, e, "%s: shutdown: %s", r->peer, rs_strerror(e));
            break;
        }
        moved(r, UP, 0);
        /* rs_send rather than rs_sendall: every partial send counts as activity for -w */
        for (size_t off = 0; off < (size_t)n;) {
            ssize_t w = rs_send(r->s, buf + off, (size_t)n - off, 0);
            if (w < 0) {
                fail(r, (int)w, "%s: send: %s", r->peer, rs_strerror((int)w));
                goto out;
            }
            off += (size_t)w;
            moved(r, UP, (size_t)w);
        }
    }
out:
    free(buf);
    finish(r, UP);
    return NULL;
}

/* write(2) all of buf to stdout: 0 or -errno. */
static int stdout_write(struct relay *r, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(STDOUT_FILENO, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) { /* an O_NONBLOCK stdout (shared file description) */
                struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };
                poll(&p, 1, -1);
                continue;
            }
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
        moved(r, DOWN, 0);
    }
    return 0;
}

static void *down_main(void *arg)
{
    struct relay *r = arg;
    char *buf = malloc(CHUNK);
    if (!buf) {
        fail(r, -ENOMEM, "%s", rs_strerror(-ENOMEM));
        goto out;
    }
    for (;;) {
        ssize_t n = rs_recv(r->s, buf, CHUNK, 0);
        if (n == 0) /* the peer's EOF (or main's shutdown when cancelling): stdout is done */
            break;
        if (n < 0) {
            fail(r, (int)n, "%s: recv: %s", r->peer, rs_strerror((int)n));
            break;
        }
        moved(r, DOWN, (size_t)n);
        int e = stdout_write(r, buf, (size_t)n);
        if (e < 0) {
            fail(r, e, "stdout: %s", rs_strerror(e));
            break;
        }
    }
out:
    free(buf);
    finish(r, DOWN);
    return NULL;
}

/* Wait until both directions are done, one failed, or nothing moved for r->idle seconds.
 * Returns 0 or the failure (message in r->msg); after a failure r->cancelled is set. */
static int relay_wait(struct relay *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->err && !(r->done[UP] && r->done[DOWN])) {
        if (r->idle == RS_TIMEOUT_NONE) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        double until = r->last + r->idle;
        if (now_s() >= until) {
            r->err = -ETIMEDOUT;
            snprintf(r->msg, sizeof r->msg, "%s: idle for %g s (-w): %s", r->peer, r->idle,
                     rs_strerror(-ETIMEDOUT));
            break;
        }
        struct timespec ts = abs_ts(until);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    int err = r->err;
    if (err)
        r->cancelled = true;
    pthread_mutex_unlock(&r->mu);
    return err;
}

/* Relay over s (owned from here on) until both directions end. Returns 0, or 1 after printing
 * why it failed. keep (-k): always join the threads and close s, even if that takes long; else
 * a relay whose threads do not stop within GRACE_S is left to the process's exit. */
static int relay(rs_socket *s, const char *peer, double idle, bool keep)
{
    struct relay r;
    memset(&r, 0, sizeof r);
    r.s = s;
    r.peer = peer;
    r.idle = idle;
    r.last = now_s();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r.mu, NULL);

    int e = 0;
    if (pipe2(r.wake, O_CLOEXEC) < 0) {
        e = -errno;
        say("pipe: %s", rs_strerror(e));
        r.wake[0] = r.wake[1] = -1;
        goto out;
    }
    if (stdin_eof) {
        /* a previous -k client took stdin to its end: this one gets nothing */
        r.done[UP] = true;
        if ((e = rs_shutdown(s, SHUT_WR)) < 0) {
            say("%s: shutdown: %s", peer, rs_strerror(e));
            goto out;
        }
    }
    void *(*const mains[2])(void *) = { up_main, down_main };
    for (int d = 0; d < 2; d++) {
        if (r.done[d])
            continue;
        int pe = pthread_create(&r.th[d], NULL, mains[d], &r);
        if (pe) {
            fail(&r, -pe, "thread: %s", rs_strerror(-pe));
            finish(&r, d);
        } else {
            r.started[d] = true;
        }
    }

    e = relay_wait(&r);
    if (e) {
        say("%s", r.msg);
        (void)!write(r.wake[1], "x", 1);
        rs_shutdown(s, SHUT_RDWR);
        pthread_mutex_lock(&r.mu);
        struct timespec ts = abs_ts(now_s() + GRACE_S);
        while (!(r.done[UP] && r.done[DOWN])) {
            if (keep)
                pthread_cond_wait(&r.cv, &r.mu);
            else if (pthread_cond_timedwait(&r.cv, &r.mu, &ts) == ETIMEDOUT)
                break;
        }
        bool stopped = r.done[UP] && r.done[DOWN];
        pthread_mutex_unlock(&r.mu);
        if (!stopped) {
            /* a thread is stuck in write(2) to stdout: the caller exits, which ends it */
            note("%s: a relay thread did not stop; exiting without it", peer);
            return 1;
        }
    }
out:
    for (int d = 0; d < 2; d++)
        if (r.started[d])
            pthread_join(r.th[d], NULL);
    note("%s: sent %llu bytes, received %llu bytes", peer, r.bytes[UP], r.bytes[DOWN]);
    if (r.wake[0] >= 0) {
        close(r.wake[0]);
        close(r.wake[1]);
    }
    rs_close(s);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    return e ? 1 : 0;
}

/* ---- connect and listen ---------------------------------------------------------------------- */

struct opts {
    int family; /* AF_UNSPEC, AF_INET, AF_INET6 */
    bool listen, keep;
    double wait; /* -w seconds, or RS_TIMEOUT_NONE */
    const char *backend;
    const char *host; /* NULL: any address (-l only) */
    const char *port;
};

/* Every attempt rs_create_connection made: with -v all of them, otherwise only on failure. */
static void report_attempts(const struct rs_connect_report *rep, int r, const struct opts *o)
{
    size_t n = rep->count < RS_CONNECT_MAX_ATTEMPTS ? rep->count : RS_CONNECT_MAX_ATTEMPTS;
    bool named = false; /* some recorded attempt shows the error r */
    for (size_t i = 0; i < n; i++) {
        const struct rs_connect_attempt *a = &rep->attempt[i];
        char buf[ADDR_LEN];
        addr_str(&a->addr, buf);
        if (a->error == 0)
            note("connected to %s", buf);
        else if (r == 0 && a->error == -ECANCELED)
            note("%s: not used (another address connected first)", buf);
        else if (r == 0)
            note("%s: %s", buf, rs_strerror(a->error));
        else
            say("%s: %s", buf, rs_strerror(a->error));
        named |= r < 0 && a->error == r;
    }
    if (r < 0 && rep->count > n)
        say("%s port %s: %zu more attempts not shown", o->host, o->port, rep->count - n);
    if (r < 0 && !named)
        say("%s port %s: %s", o->host, o->port, rs_strerror(r));
}

static int run_connect(const struct opts *o)
{
    struct rs_connect_report rep;
    memset(&rep, 0, sizeof rep);
    struct rs_connect_opts co = RS_CONNECT_OPTS_INIT;
    co.timeout = o->wait; /* per attempt; RS_TIMEOUT_NONE without -w */
    co.family = o->family;
    co.report = &rep;
    rs_socket *s = NULL;
    int r = rs_create_connection(&s, o->host, o->port, &co);
    report_attempts(&rep, r, o);
    if (r < 0)
        return 1;
    /* the relay blocks; -w is enforced by main's idle clock, not per call */
    rs_settimeout(s, RS_TIMEOUT_NONE);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char peer[ADDR_LEN];
    if (rs_getpeername(s, &ss, &sl) == 0)
        addr_str(&ss, peer);
    else
        snprintf(peer, sizeof peer, "%s port %s", o->host, o->port);
    return relay(s, peer, o->wait, false);
}

/* accept(2) errors that concern one client, not the listener: -k goes on after them. */
static bool accept_error_is_transient(int e)
{
    return e == -ECONNABORTED || e == -EINTR || e == -EPROTO || e == -EPERM || e == -EMFILE || e == -ENFILE ||
           e == -ENOBUFS || e == -ENOMEM;
}

static int run_listen(const struct opts *o)
{
    struct rs_server_opts so = RS_SERVER_OPTS_INIT;
    if (o->family != AF_UNSPEC) {
        so.family = o->family;
    } else if (o->host && strchr(o->host, ':')) {
        so.family = AF_INET6; /* an IPv6 literal */
    } else if (!o->host && rs_has_dualstack_ipv6()) {
        so.family = AF_INET6; /* any address: IPv4 and IPv6 clients alike */
        so.dualstack_ipv6 = true;
    }
    rs_socket *l = NULL;
    int r = rs_create_server(&l, o->host, o->port, &so);
    if (r < 0) {
        const char *any = so.family == AF_INET6 ? "::" : "0.0.0.0";
        say("%s port %s: %s", o->host ? o->host : any, o->port, rs_strerror(r));
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char here[ADDR_LEN];
    if (rs_getsockname(l, &ss, &sl) == 0)
        note("listening on %s", addr_str(&ss, here));
    for (;;) {
        rs_socket *c = NULL;
        sl = sizeof ss;
        r = rs_accept(l, &c, &ss, &sl);
        if (r < 0) {
            say("accept: %s", rs_strerror(r));
            if (o->keep && accept_error_is_transient(r)) {
                if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM)
                    nanosleep(&(struct timespec){ .tv_nsec = 100000000L }, NULL); /* fds may free up */
                continue;
            }
            rs_close(l);
            return 1;
        }
        char peer[ADDR_LEN];
        note("connection from %s", addr_str(&ss, peer));
        if (!o->keep) {
            rs_close(l); /* one client: the port is free again while we relay */
            l = NULL;
        }
        rs_settimeout(c, RS_TIMEOUT_NONE);
        int e = relay(c, peer, o->wait, o->keep);
        if (!o->keep)
            return e;
    }
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void help(FILE *f)
{
    fputs("usage: " PROG " [-v] [-4|-6] [-w SECS] [--backend B] HOST PORT\n"
          "       " PROG " -l [-k] [-v] [-4|-6] [-w SECS] [--backend B] [HOST] PORT\n"
          "       " PROG " --help | --version\n"
          "\n"
          "netcat on ringsock: connect to HOST PORT (or accept a client with -l) and relay stdin to\n"
          "the socket and the socket to stdout until both directions have ended.\n"
          "\n"
          "  -4, -6         IPv4 or IPv6 only\n"
          "  -l             listen on [HOST] PORT (PORT 0: any free port; -v prints it)\n"
          "  -k             with -l: keep accepting, one client at a time\n"
          "  -w SECS        connection attempt timeout, and give up after SECS without data\n"
          "  -v             report each address tried, the listening port, each client, totals\n"
          "  --backend B    uring, epoll or poll (sets RINGSOCK_BACKEND)\n"
          "  -h, --help     this text\n"
          "  -V, --version  the version\n"
          "\n"
          "Exit status: 0 done, 1 connection or I/O error, 2 usage error. See docs/tools.md.\n",
          f);
}

static bool valid_port(const char *s, bool zero_ok)
{
    if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
        return false;
    long v = strtol(s, NULL, 10);
    return v <= 65535 && (v > 0 || zero_ok);
}

/* -1: go on; else the exit status (help, version, usage error). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "backend", required_argument, NULL, 'B' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct opts){ .family = AF_UNSPEC, .wait = RS_TIMEOUT_NONE };
    bool four = false, six = false;
    opterr = 0; /* our own one-line messages */
    int c;
    while ((c = getopt_long(argc, argv, ":46hklvVw:", longs, NULL)) != -1) {
        switch (c) {
        case '4': four = true; break;
        case '6': six = true; break;
        case 'l': o->listen = true; break;
        case 'k': o->keep = true; break;
        case 'v': verbose = true; break;
        case 'w': {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(v) || v <= 0 || v > 1e6)
                return usage_error("-w wants seconds, more than 0 and at most 1e6, not '%s'", optarg);
            o->wait = v;
            break;
        }
        case 'B':
            if (strcmp(optarg, "uring") && strcmp(optarg, "epoll") && strcmp(optarg, "poll"))
                return usage_error("--backend wants uring, epoll or poll, not '%s'", optarg);
            o->backend = optarg;
            break;
        case 'h': help(stdout); return 0;
        case 'V': printf(PROG " (ringsock) %s\n", rs_version_string()); return 0;
        case ':':
            if (strncmp(argv[optind - 1], "--", 2) == 0)
                return usage_error("option '%s' needs a value", argv[optind - 1]);
            return usage_error("option -%c needs a value", optopt);
        default: /* '?'; optopt is the letter of a short option, or a long option's val */
            if (strncmp(argv[optind - 1], "--", 2) == 0)
                return usage_error("unknown option '%s'", argv[optind - 1]);
            return usage_error("unknown option -%c", optopt);
        }
    }
    if (four && six)
        return usage_error("-4 and -6 exclude each other");
    o->family = four ? AF_INET : six ? AF_INET6 : AF_UNSPEC;
    if (o->keep && !o->listen)
        return usage_error("-k needs -l");
    int npos = argc - optind;
    char **pos = argv + optind;
    if (o->listen) {
        if (npos < 1)
            return usage_error("-l needs a PORT");
        if (npos > 2)
            return usage_error("too many arguments after -l: '%s'", pos[2]);
        o->host = npos == 2 ? pos[0] : NULL;
        o->port = pos[npos - 1];
    } else {
        if (npos < 2)
            return usage_error(npos ? "no PORT after HOST" : "no HOST and PORT given");
        if (npos > 2)
            return usage_error("too many arguments: '%s'", pos[2]);
        o->host = pos[0];
        o->port = pos[1];
    }
    if (o->host && !*o->host)
        return usage_error("empty HOST");
    if (!valid_port(o->port, o->listen))
        return usage_error("PORT must be a number from %d to 65535, not '%s'", o->listen ? 0 : 1, o->port);
    return -1;
}

int main(int argc, char **argv)
{
    struct opts o;
    int r = parse_args(argc, argv, &o);
    if (r >= 0)
        return r;

    /* A closed stdin/stdout would hand its number to our socket, and read(0) would then read
     * the socket: park /dev/null there first. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            return 1;

    /* before the first ringsock call, which creates this thread's loop */
    if (o.backend && setenv("RINGSOCK_BACKEND", o.backend, 1) < 0) {
        say("setenv: %s", rs_strerror(-errno));
        return 1;
    }
    rs_loop *loop;
    r = rs_loop_default(&loop);
    if (r < 0) {
        const char *b = getenv("RINGSOCK_BACKEND");
        say("backend %s: %s", b ? b : "auto", rs_strerror(r));
        return 1;
    }
    note("backend %s", rs_backend_name(rs_loop_backend(loop)));
    return o.listen ? run_listen(&o) : run_connect(&o);
}
