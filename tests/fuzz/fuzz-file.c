/* libFuzzer target for the makefile reader: the input picks a buffer size, then a script of
 * peer writes (the data and so the receive boundaries), an EOF, and read / read1 / readline /
 * peek calls on an rs_file over a socketpair. Every result must match a reference model that
 * knows only "the bytes available so far" and whether the peer has closed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "fuzz-file: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* The model: bytes the peer wrote that no call has returned yet (buffered in the file or still
 * in the socket, the model does not care which), and whether the peer closed. */
struct model {
    unsigned char q[1 << 16];
    size_t len;
    int eof;
};

static void consume(struct model *m, size_t n)
{
    memmove(m->q, m->q + n, m->len - n);
    m->len -= n;
}

static const long bufsizes[] = { -1, 0, 1, 2, 3, 5, 8, 16, 64, 100, 4096, 65536 };

struct input {
    const uint8_t *p;
    size_t n;
};

static int next(struct input *in)
{
    if (!in->n)
        return -1;
    in->n--;
    return *in->p++;
}

/* Run one call whose model outcome would block in non-blocking mode, so the wait is never real;
 * calls the model says complete at once run in blocking mode (real io_uring operations). */
static void mode(rs_socket *s, int blocking)
{
    CHECK(rs_settimeout(s, blocking ? RS_TIMEOUT_NONE : 0.0) == 0);
}

static void do_read(rs_file *f, rs_socket *s, struct model *m, size_t n, unsigned char *buf)
{
    int ready = m->len >= n || m->eof;
    mode(s, ready);
    ssize_t r = rs_file_read(f, buf, n);
    size_t want = m->len < n ? m->len : n;
    if (n == 0) {
        CHECK(r == 0);
    } else if (want == 0) {
        CHECK(r == (m->eof ? 0 : -EAGAIN));
    } else {
        CHECK(r == (ssize_t)want);
    }
    if (r > 0) {
        CHECK(memcmp(buf, m->q, (size_t)r) == 0);
        consume(m, (size_t)r);
    }
}

static void do_readline(rs_file *f, rs_socket *s, struct model *m, size_t cap, unsigned char *buf)
{
    size_t lim = m->len < cap ? m->len : cap;
    unsigned char *nl = memchr(m->q, '\n', lim);
    size_t want = nl ? (size_t)(nl - m->q) + 1 : lim;
    int ready = nl || m->len >= cap || m->eof;
    mode(s, ready);
    ssize_t r = rs_file_readline(f, buf, cap);
    if (cap == 0)
        CHECK(r == 0);
    else if (want == 0)
        CHECK(r == (m->eof ? 0 : -EAGAIN));
    else
        CHECK(r == (ssize_t)want);
    if (r > 0) {
        CHECK(memcmp(buf, m->q, (size_t)r) == 0);
        consume(m, (size_t)r);
    }
}

static void do_read1(rs_file *f, rs_socket *s, struct model *m, size_t n, unsigned char *buf)
{
    mode(s, m->len > 0 || m->eof);
    ssize_t r = rs_file_read1(f, buf, n);
    if (n == 0) {
        CHECK(r == 0);
    } else if (m->len == 0) {
        CHECK(r == (m->eof ? 0 : -EAGAIN));
    } else {
        /* one receive (or the buffered bytes): some prefix, never nothing */
        CHECK(r >= 1 && (size_t)r <= n && (size_t)r <= m->len);
        CHECK(memcmp(buf, m->q, (size_t)r) == 0);
        consume(m, (size_t)r);
    }
}

static void do_peek(rs_file *f, rs_socket *s, struct model *m, long bufsize)
{
    mode(s, m->len > 0 || m->eof);
    const void *p;
    ssize_t r = rs_file_peek(f, &p);
    if (m->len == 0) {
        CHECK(r == (m->eof ? 0 : -EAGAIN));
        return;
    }
    /* never more than the buffer (default size for -1 and 1; a page-sized look for 0) */
    size_t most = bufsize == 0 ? 4096 : bufsize < 0 || bufsize == 1 ? (size_t)1 << 20 : (size_t)bufsize;
    CHECK(r >= 1 && (size_t)r <= m->len && (size_t)r <= most);
    CHECK(memcmp(p, m->q, (size_t)r) == 0); /* and nothing consumed: the model stays */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct model m;
    static unsigned char buf[1 << 16];
    struct input in = { data, size };
    int b = next(&in);
    if (b < 0)
        return 0;
    long bufsize = bufsizes[b % (int)(sizeof bufsizes / sizeof bufsizes[0])];
    rs_socket *sp[2];
    CHECK(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0) == 0);
    int peer = rs_socket_fd(sp[0]);
    rs_file *f;
    CHECK(rs_makefile(&f, sp[1], "rb", bufsize) == 0);
    m.len = 0;
    m.eof = 0;
    int c;
    while ((c = next(&in)) >= 0) {
        int arg = next(&in);
        if (arg < 0)
            arg = 0;
        switch (c % 7) {
        case 0:
        case 1: {
            /* the peer writes arg+1 input bytes (fewer at the end of the input): one chunk */
            size_t k = (size_t)arg + 1 < in.n ? (size_t)arg + 1 : in.n;
            if (m.eof || m.len + k > sizeof m.q / 2)
                break;
            /* the peer's fd is non-blocking: a full socket (many small chunks cost more than
             * their bytes) takes part or none, and the model gets what was sent */
            ssize_t sent = k ? send(peer, in.p, k, MSG_NOSIGNAL) : 0;
            CHECK(sent >= 0 || errno == EAGAIN);
            if (sent > 0) {
                memcpy(m.q + m.len, in.p, (size_t)sent);
                m.len += (size_t)sent;
            }
            in.p += k;
            in.n -= k;
            break;
        }
        case 2: do_read(f, sp[1], &m, (size_t)arg, buf); break;
        case 3: do_readline(f, sp[1], &m, (size_t)arg, buf); break;
        case 4: do_read1(f, sp[1], &m, (size_t)arg, buf); break;
        case 5: do_peek(f, sp[1], &m, bufsize); break;
        case 6:
            if (!m.eof)
                CHECK(shutdown(peer, SHUT_WR) == 0);
            m.eof = 1;
            break;
        }
    }
    /* EOF, then everything left comes out line by line, then read_all is empty */
    if (!m.eof)
        CHECK(shutdown(peer, SHUT_WR) == 0);
    m.eof = 1;
    for (int i = 0; i < (1 << 17); i++) {
        size_t before = m.len;
        do_readline(f, sp[1], &m, 64, buf);
        if (before == 0)
            break;
    }
    CHECK(m.len == 0);
    void *all;
    mode(sp[1], 1);
    CHECK(rs_file_read_all(f, &all) == 0);
    free(all);
    CHECK(rs_file_close(f) == 0);
    rs_close(sp[0]);
    rs_close(sp[1]);
    return 0;
}
