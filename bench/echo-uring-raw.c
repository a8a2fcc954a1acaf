/* bench/echo-uring-raw: a hand-written raw liburing echo server for bench/run-echo — the ceiling
 * any io_uring library can reach on this machine, with no library between the program and the ring.
 *
 * One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN, a CQ of 4 x the SQ). One multishot ACCEPT
 * on the listener, re-armed when the kernel ends it. Per connection one multishot RECV drawing
 * from a provided-buffer ring (mapped and registered by hand: liburing 2.3 has no
 * io_uring_setup_buf_ring). The received buffer itself is sent back — no copy — and returned to
 * the ring when its send completes. At most one send is in flight per connection (two in flight
 * on one TCP socket may complete out of order, liburing #1001/#1359): buffers that arrive
 * meanwhile queue up and leave together in one SENDMSG; short sends continue from where they
 * stopped. A RECV ended by -ENOBUFS (all buffers held by sends) is re-armed after the batch of
 * completions that returned buffers; one ended for any other reason than EOF/error at once.
 * One io_uring_enter per loop turn submits everything queued and waits for at least one CQE.
 *
 * Usage: echo-uring-raw [--port N] [--port-file PATH] [--host ADDR] [--entries N]
 *                       [--buf-count N] [--buf-size B]
 * Prints "port=N" on stdout once listening; on SIGINT/SIGTERM prints counters on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define BGID 0
/* Defaults (--buf-count, --buf-size; bench/echo-ringsock uses the same): 1024 x 16 KiB. Every
 * buffer ring cycles through all its buffers (FIFO), so a bigger ring is a colder one — the
 * receive copy into a buffer that left the cache costs more than epoll's copy into one hot buffer.
 * 16 KiB takes four pipelined 4 KiB messages per completion. Buffers are held until their send
 * completes, so -ENOBUFS does happen, rarely: 15945 re-arms against 7.7 M sends in a full
 * bench/run-echo (the exit line counts them). */
#define SEND_BATCH 64

/* user_data: a pointer with the operation kind in its low bits */
enum { UD_ACCEPT = 1, UD_RECV = 2, UD_SEND = 3 };
#define UD_MASK 3u

struct pend {
    uint16_t bid;
    uint32_t len, off;
};

struct conn {
    int fd;
    unsigned inflight; /* operations whose final CQE has not come */
    bool closing, recv_on, starved;
    struct conn *next_starved;
    /* buffers waiting to be sent, oldest first; the first nsending are in the SENDMSG in flight */
    struct pend *q;
    unsigned qhead, qlen, qcap, nsending;
    struct iovec iov[SEND_BATCH];
    struct msghdr msg;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned nbufs = 1024, bufsz = 16384;
static int br_added; /* buffers added to the ring since the last advance */
static struct conn *starved_head;
static volatile sig_atomic_t stop_flag;
static unsigned long long n_accepted, n_closed, n_bytes, n_enobufs, n_recv_rearm, n_accept_rearm, n_short, n_sendmsg,
    n_send, n_enter;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "echo-uring-raw: %s: %s\n", what, strerror(err));
    exit(1);
}

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        n_enter++;
        sqe = io_uring_get_sqe(&ring);
        if (!sqe)
            die("io_uring_get_sqe", EBUSY);
    }
    return sqe;
}

static void buf_return(unsigned bid)
{
    io_uring_buf_ring_add(br, bufs + (size_t)bid * bufsz, bufsz, (unsigned short)bid, io_uring_buf_ring_mask(nbufs),
                          br_added++);
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT);
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_RECV);
    c->recv_on = true;
    c->inflight++;
}

static void conn_maybe_free(struct conn *c)
{
    if (c->closing && c->inflight == 0) {
        /* every buffer still queued goes back to the ring */
        for (unsigned i = 0; i < c->qlen; i++)
            buf_return(c->q[(c->qhead + i) % c->qcap].bid);
        close(c->fd);
        free(c->q);
        free(c);
        n_closed++;
    }
}

/* Start closing c; the caller then calls conn_maybe_free(c) and touches c no more. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    /* A pending multishot RECV would keep the socket open after close(2) (liburing #932): cancel
     * it; the fd is closed once every operation of c has completed. */
    if (c->recv_on) {
        struct io_uring_sqe *sqe = sqe_get();
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | UD_RECV, 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
}

/* Send the queued buffers (at most SEND_BATCH) as one operation. */
static void send_kick(struct conn *c)
{
    unsigned n = c->qlen < SEND_BATCH ? c->qlen : SEND_BATCH;
    struct io_uring_sqe *sqe = sqe_get();
    struct pend *p = &c->q[c->qhead];
    if (n == 1) {
        io_uring_prep_send(sqe, c->fd, bufs + (size_t)p->bid * bufsz + p->off, p->len - p->off, MSG_NOSIGNAL);
        n_send++;
    } else {
        for (unsigned i = 0; i < n; i++) {
            p = &c->q[(c->qhead + i) % c->qcap];
            c->iov[i].iov_base = bufs + (size_t)p->bid * bufsz + p->off;
            c->iov[i].iov_len = p->len - p->off;
        }
        memset(&c->msg, 0, sizeof c->msg);
        c->msg.msg_iov = c->iov;
        c->msg.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
        n_sendmsg++;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_SEND);
    c->nsending = n;
    c->inflight++;
}

static void enqueue(struct conn *c, unsigned bid, unsigned len)
{
    if (c->qlen == c->qcap) {
        unsigned cap = c->qcap ? c->qcap * 2 : 16;
        struct pend *q = malloc(cap * sizeof *q);
        if (!q)
            die("malloc", ENOMEM);
        for (unsigned i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = (struct pend){ .bid = (uint16_t)bid, .len = len, .off = 0 };
    c->qlen++;
    if (!c->nsending)
        send_kick(c);
}

static void on_recv(struct conn *c, int res, unsigned flags)
{
    bool more = flags & IORING_CQE_F_MORE;
    if (!more) {
        c->recv_on = false;
        c->inflight--;
    }
    if (res > 0) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        n_bytes += (unsigned)res;
        if (c->closing)
            buf_return(bid);
        else
            enqueue(c, bid, (unsigned)res);
        if (!more && !c->closing) {
            n_recv_rearm++;
            arm_recv(c); /* the kernel ended it (e.g. CQ pressure): data may still come */
        }
    } else if (res == -ENOBUFS && !c->closing) {
        /* every buffer is held by a send: try again once this batch has returned some */
        n_enobufs++;
        if (!c->starved) {
            c->starved = true;
            c->next_starved = starved_head;
            starved_head = c;
            c->inflight++; /* keeps c alive while on the list */
        }
    } else if (!more) {
        conn_close(c); /* EOF, error or cancelled */
    }
    conn_maybe_free(c);
}

static void on_send(struct conn *c, int res)
{
    c->inflight--;
    unsigned n = c->nsending;
    c->nsending = 0;
    if (res < 0) {
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    size_t done = (size_t)res;
    for (unsigned i = 0; i < n && c->qlen; i++) {
        struct pend *p = &c->q[c->qhead];
        size_t left = p->len - p->off;
        if (done < left) { /* a short send: the rest goes next */
            p->off += (uint32_t)done;
            n_short++;
            break;
        }
        done -= left;
        buf_return(p->bid);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (c->qlen)
        send_kick(c);
}

static int listen_on(const char *host, int port, const char *port_file)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "echo-uring-raw: bad address %s\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind", errno);
    if (listen(fd, 4096) < 0)
        die("listen", errno);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    if (port_file) {
        FILE *f = fopen(port_file, "we");
        if (!f)
            die(port_file, errno);
        fprintf(f, "%d\n", ntohs(sa.sin_port));
        fclose(f);
    }
    return fd;
}

static void setup_buf_ring(void)
{
    size_t br_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
    void *p = mmap(NULL, br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = mmap(NULL, (size_t)nbufs * bufsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (p == MAP_FAILED || bufs == MAP_FAILED)
        die("mmap", errno);
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)p, .ring_entries = nbufs, .bgid = BGID };
    int r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0)
        die("io_uring_register_buf_ring", -r);
    br = p;
    io_uring_buf_ring_init(br);
    for (unsigned i = 0; i < nbufs; i++)
        buf_return(i);
    io_uring_buf_ring_advance(br, br_added);
    br_added = 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port_file = NULL;
    int port = 0;
    unsigned entries = 1024;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--port") == 0 && v)
            port = atoi(v);
        else if (strcmp(a, "--port-file") == 0 && v)
            port_file = v;
        else if (strcmp(a, "--host") == 0 && v)
            host = v;
        else if (strcmp(a, "--entries") == 0 && v)
            entries = (unsigned)atoi(v);
        else if (strcmp(a, "--buf-count") == 0 && v)
            nbufs = (unsigned)atoi(v);
        else if (strcmp(a, "--buf-size") == 0 && v)
            bufsz = (unsigned)atoi(v);
        else {
            fprintf(stderr, "usage: echo-uring-raw [--port N] [--port-file PATH] [--host ADDR] [--entries N] "
                            "[--buf-count N] [--buf-size B]\n");
            return 2;
        }
    }
    if (!nbufs || (nbufs & (nbufs - 1)) || nbufs > 32768 || !bufsz || !entries) {
        fprintf(stderr, "echo-uring-raw: --buf-count must be a power of two <= 32768\n");
        return 2;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(host, port, port_file);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    int r = io_uring_queue_init_params(entries, &ring, &p);
    if (r < 0)
        die("io_uring_queue_init_params", -r);
    setup_buf_ring();
    arm_accept(lfd);

    while (!stop_flag) {
        r = io_uring_submit_and_wait(&ring, 1);
        n_enter++;
        if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY && r != -EAGAIN)
            die("io_uring_submit_and_wait", -r);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            uint64_t ud = cqe->user_data;
            void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
            switch (ud & UD_MASK) {
            case UD_ACCEPT:
                if (cqe->res >= 0) {
                    struct conn *c = calloc(1, sizeof *c);
                    if (!c) {
                        close(cqe->res);
                    } else {
                        c->fd = cqe->res;
                        n_accepted++;
                        arm_recv(c);
                    }
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    n_accept_rearm++;
                    arm_accept(lfd);
                }
                break;
            case UD_RECV:
                on_recv(ptr, cqe->res, cqe->flags);
                break;
            case UD_SEND:
                on_send(ptr, cqe->res);
                break;
            default: /* cancel requests */
                break;
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (br_added) {
            io_uring_buf_ring_advance(br, br_added);
            br_added = 0;
        }
        /* buffers came back: re-arm the receives that ran out */
        struct conn *s = starved_head;
        starved_head = NULL;
        while (s) {
            struct conn *next = s->next_starved;
            s->starved = false;
            s->inflight--;
            if (!s->closing && !s->recv_on) {
                n_recv_rearm++;
                arm_recv(s);
            }
            conn_maybe_free(s);
            s = next;
        }
    }
    fprintf(stderr,
            "echo-uring-raw: accepted=%llu closed=%llu bytes=%llu enters=%llu sends=%llu sendmsgs=%llu short=%llu "
            "enobufs=%llu recv_rearms=%llu accept_rearms=%llu\n",
            n_accepted, n_closed, n_bytes, n_enter, n_send, n_sendmsg, n_short, n_enobufs, n_recv_rearm,
            n_accept_rearm);
    return 0;
}
