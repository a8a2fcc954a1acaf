/* bench/echo-epoll: the baseline echo server for bench/run-echo — plain epoll, written the way a
 * careful C programmer would, with no library.
 *
 * One thread. Every fd (listener and connections) is registered once, edge-triggered, for
 * IN|OUT|RDHUP; no epoll_ctl is ever issued per message (close(2) removes the fd from the set).
 * On readiness a connection reads until EAGAIN into one 64 KiB buffer and writes each chunk back
 * at once with send(2). Only if a send would block are the unsent bytes kept (per connection) and
 * reading paused; the EPOLLOUT edge that follows flushes them and reading resumes, so a peer that
 * does not read cannot make us buffer without bound. TCP_NODELAY is set on the listener (accepted
 * sockets inherit it).
 *
 * Usage: echo-epoll [--port N] [--port-file PATH] [--host ADDR]
 * Prints "port=N" on stdout once listening (and writes N to --port-file); on SIGINT/SIGTERM
 * prints its counters on stderr and exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF 65536
#define MAX_EVENTS 512

struct conn {
    int fd;
    bool rd_blocked; /* unread data may be waiting: resume reading after the flush */
    char *pend;      /* bytes a send could not take yet */
    size_t plen, poff, pcap;
};

static volatile sig_atomic_t stop_flag;
static unsigned long long n_accepted, n_closed, n_bytes, n_blocked;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "echo-epoll: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listen_on(const char *host, int port, const char *port_file)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "echo-epoll: bad address %s\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    if (port_file) {
        FILE *f = fopen(port_file, "we");
        if (!f)
            die(port_file);
        fprintf(f, "%d\n", ntohs(sa.sin_port));
        fclose(f);
    }
    return fd;
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->pend);
    free(c);
    n_closed++;
}

/* Keep what send did not take; reading pauses until it is flushed. */
static bool keep(struct conn *c, const char *p, size_t n)
{
    if (c->plen + n > c->pcap) {
        size_t cap = c->pcap ? c->pcap : RBUF;
        while (cap < c->plen + n)
            cap *= 2;
        char *np = realloc(c->pend, cap);
        if (!np)
            return false;
        c->pend = np;
        c->pcap = cap;
    }
    memcpy(c->pend + c->plen, p, n);
    c->plen += n;
    n_blocked++;
    return true;
}

/* Flush kept bytes: true when none are left. */
static bool flush(struct conn *c, bool *dead)
{
    while (c->poff < c->plen) {
        ssize_t w = send(c->fd, c->pend + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                return false;
            if (errno == EINTR)
                continue;
            *dead = true;
            return false;
        }
        c->poff += (size_t)w;
    }
    c->plen = c->poff = 0;
    return true;
}

/* Read until EAGAIN, echoing each chunk at once. Returns false if c was closed. */
static bool on_readable(struct conn *c, char *buf)
{
    for (;;) {
        ssize_t n = recv(c->fd, buf, RBUF, 0);
        if (n > 0) {
            n_bytes += (size_t)n;
            size_t off = 0;
            while (off < (size_t)n) {
                ssize_t w = send(c->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno == EINTR)
                        continue;
                    if (errno != EAGAIN) {
                        conn_close(c);
                        return false;
                    }
                    break;
                }
                off += (size_t)w;
            }
            if (off < (size_t)n) {
                /* the peer is not reading: stop reading too until EPOLLOUT */
                if (!keep(c, buf + off, (size_t)n - off)) {
                    conn_close(c);
                    return false;
                }
                c->rd_blocked = true;
                return true;
            }
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        conn_close(c); /* EOF or error */
        return false;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port_file = NULL;
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr, "usage: echo-epoll [--port N] [--port-file PATH] [--host ADDR]\n");
            return 2;
        }
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(host, port, port_file);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event lev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");

    static char buf[RBUF];
    static struct epoll_event evs[MAX_EVENTS];
    while (!stop_flag) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            uint32_t ev = evs[i].events;
            if (!c) { /* the listener: accept until EAGAIN */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                            continue;
                        break; /* EAGAIN; EMFILE etc.: the next connection's edge retries */
                    }
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event cev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = nc };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) {
                        close(fd);
                        free(nc);
                        continue;
                    }
                    n_accepted++;
                }
                continue;
            }
            if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->plen) {
                bool dead = false;
                if (!flush(c, &dead)) {
                    if (dead)
                        conn_close(c);
                    continue;
                }
                if (c->rd_blocked) {
                    c->rd_blocked = false;
                    if (!on_readable(c, buf))
                        continue;
                }
            }
            if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && !c->rd_blocked)
                on_readable(c, buf);
        }
    }
    fprintf(stderr, "echo-epoll: accepted=%llu closed=%llu bytes=%llu blocked_sends=%llu\n", n_accepted, n_closed,
            n_bytes, n_blocked);
    return 0;
}
