/* libFuzzer target for host/port/address parsing: rs_create_server, rs_create_connection and
 * rs_conn_connect with fuzzed host, port, source address, family and options.
 *
 * It must never resolve a name (no DNS) nor send a packet off loopback. The library tries a host
 * as a numeric address first and asks the resolver only when that says EAI_NONAME, so before
 * each call the same numeric lookup (same hints) is made here: an input that would reach the
 * resolver, or whose addresses are not loopback (connect) or loopback/unspecified (bind), is not
 * passed on. The process also moves into a network namespace of its own when it may (root in
 * CI), where only lo exists and no other program listens; without one, connects are made only
 * to ports this target listens on.
 *
 * Oracles: no crash, leak or sanitizer report; 0 with an object or < 0 without one; an error is
 * a -errno or a resolver code; a server listens on the family and port asked for; no fd is left
 * open by any call. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "fuzz-addr: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

static bool isolated, verbose;
static rs_loop *loop;
/* without a namespace: the only ports a connect may go to (ours, on 127.0.0.1 and ::1) */
static int own_fd[2] = { -1, -1 };
static unsigned short own_port[2];

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* A private network namespace with lo up: 127.0.0.0/8 and ::1 exist, nothing else does. */
static bool enter_netns(void)
{
    if (unshare(CLONE_NEWNET) < 0)
        return false;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags |= IFF_UP;
    ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    close(fd);
    return ok;
}

static void own_listener(int i, int family)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        len = sizeof *s6;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (bind(fd, (struct sockaddr *)&a, len) < 0 || listen(fd, 64) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return;
    }
    own_fd[i] = fd;
    own_port[i] = ntohs(family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
                                          : ((struct sockaddr_in6 *)&a)->sin6_port);
}

static void init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    verbose = getenv("FUZZ_ADDR_VERBOSE") != NULL;
    isolated = enter_netns();
    if (!isolated) {
        fprintf(stderr, "fuzz-addr: no network namespace (%s): connects only to this target's own ports\n",
                strerror(errno));
        own_listener(0, AF_INET);
        own_listener(1, AF_INET6);
    }
    CHECK(rs_loop_new(&loop, NULL) == 0);
}

static bool loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

static bool unspecified(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

static unsigned short port_of(const struct sockaddr *sa)
{
    return ntohs(sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                          : ((const struct sockaddr_in6 *)sa)->sin6_port);
}

enum use {
    BIND,
    CONNECT
};

/* What the library's numeric lookup of host/port gives, with its hints: true if passing them on
 * is safe (the lookup fails, and with anything but EAI_NONAME — or with it where the library
 * stops there (nonname_ok) — so the library fails the same way without a resolver; or every
 * address is one we may use). Outside a namespace of our own a bind must take port 0: a fixed
 * port with SO_REUSEPORT could take connections from another program's listener. */
static bool safe(const char *host, const char *port, int family, int flags, enum use use, bool nonname_ok)
{
    struct addrinfo hints = { .ai_family = family,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | flags };
    struct addrinfo *res = NULL;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e == EAI_NONAME && !nonname_ok)
        return false; /* the library would ask the resolver */
    if (e != 0)
        return true;
    bool ok = true;
    for (struct addrinfo *ai = res; ai && ok; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue; /* the library skips these too */
        if (use == BIND)
            ok = (loopback(ai->ai_addr) || unspecified(ai->ai_addr)) &&
                 (isolated || port_of(ai->ai_addr) == 0);
        else if (!loopback(ai->ai_addr))
            ok = false;
        else if (!isolated)
            ok = (own_fd[0] >= 0 && port_of(ai->ai_addr) == own_port[0]) ||
                 (own_fd[1] >= 0 && port_of(ai->ai_addr) == own_port[1]);
    }
    freeaddrinfo(res);
    return ok;
}

static bool sane_error(int r) { return RS_IS_EAI(r) || (r < 0 && r > -4096); }

/* ---- input ----------------------------------------------------------------------------------- */

/* Up to four fields separated by '\n': host, port, source host, source port. A field "-" is
 * NULL; a missing one too. At most 255 bytes each (longer ones are cut). */
struct fields {
    char s[4][256];
    const char *f[4];
};

static void split(const uint8_t *p, size_t n, struct fields *fl)
{
    for (int i = 0; i < 4; i++)
        fl->f[i] = NULL;
    int i = 0;
    size_t len = 0;
    bool any = n > 0;
    for (size_t k = 0; k <= n && i < 4; k++) {
        if (k == n || p[k] == '\n') {
            fl->s[i][len] = '\0';
            if (any)
                fl->f[i] = strcmp(fl->s[i], "-") == 0 ? NULL : fl->s[i];
            i++;
            len = 0;
            continue;
        }
        if (len < sizeof fl->s[i] - 1)
            fl->s[i][len++] = (char)p[k];
    }
}

/* FUZZ_ADDR_VERBOSE=1: one line per call made (for reading what a corpus exercises). */

static void note(const char *call, const struct fields *fl, int r)
{
    if (verbose)
        fprintf(stderr, "fuzz-addr: %s(%s, %s) = %d %s\n", call, fl->f[0] ? fl->f[0] : "NULL",
                fl->f[1] ? fl->f[1] : "NULL", r, r < 0 ? rs_err_name(r) : "");
}

static const int families[] = { AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX };
static const double timeouts[] = { RS_TIMEOUT_DEFAULT, 0.5, 0.0, RS_TIMEOUT_NONE, -7.0, INFINITY };
/* the deadline bounds every connect (only the invalid ones may be unbounded: they fail first) */
static const double deadlines[] = { 1.0, 0.0, -5.0, NAN };
static const double delays[] = { 0.25, 0.0, RS_TIMEOUT_NONE, 0.001, -1.5, NAN };

/* ---- the calls ------------------------------------------------------------------------------- */

/* Returns the listening socket, kept open while the same input's connects run (so that a
 * connect to its port succeeds), or NULL. */
static rs_socket *fuzz_server(const struct fields *fl, uint8_t f0, uint8_t f1)
{
    struct rs_server_opts o = RS_SERVER_OPTS_INIT;
    o.family = families[f0 & 3];
    o.reuse_port = f0 & 4;
    o.dualstack_ipv6 = f0 & 8;
    o.backlog = (int)(f1 % 8) - 1;
    const char *host = fl->f[0], *port = fl->f[1];
    /* the library's own normalisation, so that the check sees what it will */
    const char *h = host && !*host ? NULL : host;
    const char *p = !port || !*port ? "0" : port;
    if ((o.family == AF_INET || o.family == AF_INET6) && !safe(h, p, o.family, AI_PASSIVE, BIND, false))
        return NULL;
    rs_socket *s = (rs_socket *)&o; /* must be set to NULL on failure */
    int r = rs_create_server(&s, host, port, &o);
    note("rs_create_server", fl, r);
    if (r < 0) {
        CHECK(s == NULL);
        CHECK(sane_error(r));
        return NULL;
    }
    CHECK(s != NULL);
    CHECK(rs_socket_family(s) == o.family);
    int listening = 0;
    socklen_t len = sizeof listening;
    CHECK(rs_getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 1);
    struct sockaddr_storage a;
    socklen_t alen = sizeof a;
    CHECK(rs_getsockname(s, &a, &alen) == 0);
    CHECK(a.ss_family == o.family);
    CHECK(loopback((struct sockaddr *)&a) || unspecified((struct sockaddr *)&a));
    /* a numeric port is the port bound (0: any) */
    char *end;
    unsigned long want = strtoul(p, &end, 10);
    if (*p >= '0' && *p <= '9' && !*end && p[0] != '0') {
        if (want <= 65535)
            CHECK(port_of((struct sockaddr *)&a) == want);
        else
            /* glibc's getaddrinfo keeps 16 bits of "99999"; the library refuses such ports
             * (RS_EAI(EAI_SERVICE), as socket.py does), so one must never get this far */
            CHECK(0);
    }
    return s;
}

static struct rs_connect_opts connect_opts(uint8_t f0, uint8_t f1, const struct fields *fl,
                                           struct rs_connect_report *rep)
{
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.family = families[f0 & 3];
    o.timeout = timeouts[f1 % 6];
    o.deadline = deadlines[(f1 / 6) % 4];
    o.happy_eyeballs_delay = delays[(f0 >> 2) % 6];
    o.interleave = (f1 >> 5) == 7 ? -1 : (int)(f1 >> 5); /* 7: the one invalid value */
    o.report = (f0 & 0x20) ? rep : NULL;
    if (f0 & 0x40) {
        o.source_host = fl->f[2];
        o.source_port = fl->f[3];
    }
    return o;
}

/* The source address is looked up numerically only (AI_PASSIVE), so it never reaches a resolver;
 * it must still be one we may bind. */
static bool source_safe(const struct rs_connect_opts *o)
{
    if (!o->source_host && !o->source_port)
        return true;
    int fams[2] = { AF_INET, AF_INET6 };
    for (int i = 0; i < 2; i++)
        if (!safe(o->source_host, o->source_port, fams[i], AI_PASSIVE, BIND, true))
            return false;
    return true;
}

static void check_report(const struct rs_connect_report *rep)
{
    size_t n = rep->count < RS_CONNECT_MAX_ATTEMPTS ? rep->count : RS_CONNECT_MAX_ATTEMPTS;
    for (size_t i = 0; i < n; i++) {
        CHECK(loopback((const struct sockaddr *)&rep->attempt[i].addr));
        CHECK(rep->attempt[i].error <= 0);
    }
}

static void fuzz_connect(const struct fields *fl, uint8_t f0, uint8_t f1)
{
    struct rs_connect_report rep;
    struct rs_connect_opts o = connect_opts(f0, f1, fl, &rep);
    const char *host = fl->f[0], *port = fl->f[1];
    if (host && *host && port && *port &&
        (o.family == AF_UNSPEC || o.family == AF_INET || o.family == AF_INET6) &&
        !safe(host, port, o.family, 0, CONNECT, false))
        return;
    if (!source_safe(&o))
        return;
    rs_socket *s = (rs_socket *)&o;
    int r = rs_create_connection(&s, host, port, &o);
    note("rs_create_connection", fl, r);
    if (r < 0) {
        CHECK(s == NULL);
        CHECK(sane_error(r));
    } else {
        CHECK(s != NULL);
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        CHECK(rs_getpeername(s, &a, &alen) == 0);
        CHECK(loopback((struct sockaddr *)&a));
        CHECK(rs_close(s) == 0);
    }
    if (o.report && r != -EINVAL && r != -EAFNOSUPPORT && !RS_IS_EAI(r))
        check_report(&rep);
}

struct async_result {
    bool done;
    int status;
    rs_conn *c;
};

static void connected(rs_conn *c, int status, void *user)
{
    struct async_result *ar = user;
    ar->done = true;
    ar->status = status;
    ar->c = c;
}

static void closed(rs_conn *c, void *user)
{
    (void)c;
    *(bool *)user = true;
}

static void fuzz_conn_connect(const struct fields *fl, uint8_t f0, uint8_t f1)
{
    struct rs_connect_report rep;
    struct rs_connect_opts o = connect_opts(f0, f1, fl, &rep);
    const char *host = fl->f[0], *port = fl->f[1];
    if (host && *host && port && *port &&
        (o.family == AF_UNSPEC || o.family == AF_INET || o.family == AF_INET6) &&
        !safe(host, port, o.family, 0, CONNECT, false))
        return;
    if (!source_safe(&o))
        return;
    struct async_result ar = { 0 };
    int r = rs_conn_connect(loop, host, port, &o, connected, &ar);
    if (r < 0) {
        CHECK(sane_error(r));
        CHECK(rs_loop_pending(loop) == 0);
        return;
    }
    /* bounded: the deadline (at most 1 s) ends every valid connect; 2000 turns of 10 ms leave room */
    for (int i = 0; !ar.done && i < 2000; i++)
        CHECK(rs_loop_run(loop, RS_RUN_ONCE) >= 0);
    CHECK(ar.done);
    note("rs_conn_connect", fl, ar.status);
    if (ar.status < 0) {
        CHECK(ar.c == NULL);
        CHECK(sane_error(ar.status));
    } else {
        CHECK(ar.c != NULL);
        bool done = false;
        CHECK(rs_conn_close(ar.c, closed, &done) == 0);
        for (int i = 0; !done && i < 1000; i++)
            CHECK(rs_loop_run(loop, RS_RUN_ONCE) >= 0);
        CHECK(done);
    }
    CHECK(rs_loop_pending(loop) == 0);
}

/* Connections to our own listeners (no namespace) are accepted and closed, so that the backlog
 * never fills and a connect never waits for room in it. */
static void drain_own(void)
{
    for (int i = 0; i < 2; i++) {
        int fd;
        while (own_fd[i] >= 0 && (fd = accept4(own_fd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
}

/* Input: byte 0 picks the calls (bit 0 server, bit 1 connect, bit 2 async connect), bytes 1-2
 * the options, the rest the fields. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 3)
        return 0;
    struct fields fl;
    split(data + 3, size - 3, &fl);
    int before = fd_count();
    rs_socket *srv = data[0] & 1 ? fuzz_server(&fl, data[1], data[2]) : NULL;
    if (data[0] & 2)
        fuzz_connect(&fl, data[1], data[2]);
    if (data[0] & 4)
        fuzz_conn_connect(&fl, data[1], data[2]);
    if (srv)
        CHECK(rs_close(srv) == 0);
    drain_own();
    /* a blocking call may have made the thread's default loop: it is not a leak */
    rs_loop_default_release();
    CHECK(fd_count() == before);
    return 0;
}
