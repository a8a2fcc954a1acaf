/* bench/sendfile: the processes bench/run-sendfile measures rs_sendfile with.
 *
 *   sendfile-bench sink
 *       Listen on 127.0.0.1 (port 0), print the port, then read every connection to EOF into one
 *       1 MiB buffer and throw the bytes away (one thread, epoll, any number of connections). Per
 *       connection, at EOF: "eof <bytes> <accept_ns> <eof_ns>" (CLOCK_MONOTONIC, comparable
 *       across processes). Runs until killed.
 *   sendfile-bench send PORT FILE
 *       One connection, rs_sendfile(FILE, offset 0, count 0); the path is ringsock's choice under
 *       RINGSOCK_BACKEND / RINGSOCK_SENDFILE. Prints "sent <bytes> <start_ns> <end_ns> <stats>".
 *   sendfile-bench raw PORT FILE
 *       The sendfile(2) baseline without ringsock: a blocking socket and sendfile(2) until EOF
 *       (what iperf3 -Z does, in calls of up to the whole file instead of 128 KiB).
 *   sendfile-bench many PORT FILE THREADS EACH
 *       THREADS threads (256 KiB stacks) each connect and then, all released at once by a
 *       barrier, send FILE with rs_sendfile EACH times, a new connection each time (EACH > 1
 *       connects the next one after the previous transfer). Prints "start <ns>" at the release
 *       and "many <bytes> <errors> <pipes_made> <pipe_misses>" at the end. The sink's eof lines
 *       say when the bytes arrived.
 *
 * Exit status 0 only if every transfer sent the whole file. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* ---- sink --------------------------------------------------------------------------------- */

struct conn {
    int fd;
    long long bytes, t_accept;
};

static int sink(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0) {
        perror("sink: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    static char buf[1 << 20];
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->t_accept = now_ns();
                    struct epoll_event ce = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            for (;;) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r > 0) {
                    c->bytes += r;
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                printf("eof %lld %lld %lld\n", c->bytes, c->t_accept, now_ns());
                fflush(stdout);
                close(c->fd); /* also leaves the epoll set */
                free(c);
                break;
            }
        }
    }
}

/* ---- senders ------------------------------------------------------------------------------- */

static int rs_connect_port(rs_socket **s, int port)
{
    struct sockaddr_in a = loopback(port);
    int r = rs_socket_open(s, AF_INET, SOCK_STREAM, 0);
    if (r == 0)
        r = rs_connect(*s, (struct sockaddr *)&a, sizeof a);
    return r;
}

static int send_one(int port, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        return 1;
    }
    rs_socket *s = NULL;
    int r = rs_connect_port(&s, port);
    if (r < 0) {
        fprintf(stderr, "send: connect: %s\n", rs_strerror(r));
        return 1;
    }
    off_t off = 0;
    long long t0 = now_ns();
    ssize_t n = rs_sendfile(s, fd, &off, 0);
    long long t1 = now_ns();
    struct rs_sendfile_stats fs;
    rs_sendfile_stats(&fs);
    rs_loop *loop;
    struct rs_loop_stats ls = { 0 };
    if (rs_loop_default(&loop) == 0)
        rs_loop_stats(loop, &ls);
    printf("sent %zd %lld %lld splice=%llu sendfile=%llu readsend=%llu ops=%llu waits=%llu\n", n, t0, t1,
           fs.splice_bytes, fs.sendfile_bytes, fs.readsend_bytes, ls.submitted, ls.waits);
    rs_close(s);
    close(fd);
    if (n != st.st_size) {
        fprintf(stderr, "send: %s\n", n < 0 ? rs_strerror((int)n) : "short");
        return 1;
    }
    return 0;
}

static int send_raw(int port, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        return 1;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("raw: connect");
        return 1;
    }
    off_t off = 0;
    long long t0 = now_ns();
    while (off < st.st_size) {
        ssize_t r = sendfile(s, fd, &off, (size_t)(st.st_size - off));
        if (r <= 0 && errno != EINTR) {
            perror("raw: sendfile");
            return 1;
        }
    }
    long long t1 = now_ns();
    printf("sent %lld %lld %lld\n", (long long)off, t0, t1);
    close(s);
    close(fd);
    return 0;
}

/* ---- many ----------------------------------------------------------------------------------- */

struct many {
    int port, fd, each;
    off_t size;
    pthread_barrier_t *go;
    long long bytes;
    int errors;
    struct rs_sendfile_stats st;
};

static void *many_worker(void *p)
{
    struct many *m = p;
    rs_socket *s = NULL;
    int r = rs_connect_port(&s, m->port);
    pthread_barrier_wait(m->go);
    for (int i = 0; i < m->each; i++) {
        if (i > 0) {
            rs_close(s);
            s = NULL;
            r = rs_connect_port(&s, m->port);
        }
        if (r < 0) {
            m->errors++;
            continue;
        }
        off_t off = 0;
        ssize_t n = rs_sendfile(s, m->fd, &off, 0);
        if (n == m->size)
            m->bytes += n;
        else
            m->errors++;
    }
    rs_close(s);
    rs_sendfile_stats(&m->st);
    return NULL;
}

static int many(int port, const char *path, int threads, int each)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        return 1;
    }
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    struct many *m = calloc((size_t)threads, sizeof *m);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    for (int i = 0; i < threads; i++) {
        m[i] = (struct many){ .port = port, .fd = fd, .each = each, .size = st.st_size, .go = &go };
        if (pthread_create(&th[i], &at, many_worker, &m[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_barrier_wait(&go);
    printf("start %lld\n", now_ns());
    fflush(stdout);
    long long bytes = 0;
    unsigned long long pipes = 0, misses = 0;
    int errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        bytes += m[i].bytes;
        errors += m[i].errors;
        pipes += m[i].st.pipes_made;
        misses += m[i].st.pipe_misses;
    }
    printf("many %lld %d %llu %llu\n", bytes, errors, pipes, misses);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "sink") == 0)
        return sink();
    if (argc == 4 && strcmp(argv[1], "send") == 0)
        return send_one(atoi(argv[2]), argv[3]);
    if (argc == 4 && strcmp(argv[1], "raw") == 0)
        return send_raw(atoi(argv[2]), argv[3]);
    if (argc == 6 && strcmp(argv[1], "many") == 0)
        return many(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr,
            "usage: sendfile-bench sink | send PORT FILE | raw PORT FILE | many PORT FILE THREADS EACH\n");
    return 2;
}
