/* The Python peer launcher and the checksums shared with tests/py (see pypeer.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "pypeer.h"

#ifndef T_SRCDIR
#error "T_SRCDIR (the tests source directory) must be defined by the build"
#endif

extern char **environ;

#define MAX_ARGS 32

double t_py_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void kill_and_reap(struct t_py *py)
{
    if (py->pid > 0) {
        kill(py->pid, SIGKILL);
        while (waitpid(py->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        py->pid = -1;
    }
    if (py->out >= 0) {
        close(py->out);
        py->out = -1;
    }
}

/* One byte at a time: the peer's lines are few and short, and nothing read past a newline can
 * then be lost between calls. */
int t_py_readline(struct t_py *py, char *buf, size_t cap, double timeout)
{
    double deadline = t_py_now() + timeout;
    size_t n = 0;
    for (;;) {
        double left = deadline - t_py_now();
        if (left <= 0)
            return -1;
        struct pollfd pfd = { .fd = py->out, .events = POLLIN };
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        char c;
        ssize_t got = read(py->out, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        if (c == '\n') {
            buf[n] = '\0';
            return (int)n;
        }
        if (n + 1 < cap)
            buf[n++] = c;
    }
}

void t_py_spawn(const char *script, char *const argv[], struct t_py *py)
{
    t_py_spawn_fd(script, argv, -1, py);
}

void t_py_spawn_fd(const char *script, char *const argv[], int fd, struct t_py *py)
{
    char path[4096];
    ck_assert_int_lt(snprintf(path, sizeof path, "%s/py/%s.py", T_SRCDIR, script), (int)sizeof path);
    char *args[MAX_ARGS + 7];
    size_t n = 0;
    args[n++] = (char *)"python3";
    args[n++] = (char *)"-E"; /* no PYTHON* variables from the environment */
    args[n++] = (char *)"-s"; /* no user site directory */
    args[n++] = (char *)"-B"; /* no __pycache__ in the source tree */
    args[n++] = (char *)"-u"; /* unbuffered stdout: the first line must reach us at once */
    args[n++] = path;
    for (size_t i = 0; argv && argv[i]; i++) {
        ck_assert_msg(i < MAX_ARGS, "too many arguments for %s", script);
        args[n++] = argv[i];
    }
    args[n] = NULL;

    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
    ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, p[1], 1), 0);
    int give = -1;
    if (fd >= 0) {
        /* dup2 onto itself would keep close-on-exec: hand over a copy numbered above 3 */
        give = fcntl(fd, F_DUPFD_CLOEXEC, 4);
        ck_assert_int_ge(give, 4);
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, give, T_PY_FD), 0);
    }
    /* The peer's own alarm (peerlib.arm) must work whatever this thread blocks or handles. */
    posix_spawnattr_t at;
    ck_assert_int_eq(posix_spawnattr_init(&at), 0);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGALRM);
    ck_assert_int_eq(posix_spawnattr_setsigmask(&at, &none), 0);
    ck_assert_int_eq(posix_spawnattr_setsigdefault(&at, &dfl), 0);
    ck_assert_int_eq(posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF), 0);
    /* posix_spawn, not fork: no atfork handlers, no copy of the test's loop in the child. All
     * of the test's own fds are close-on-exec. */
    pid_t pid;
    int r = posix_spawnp(&pid, "python3", &fa, &at, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (give >= 0)
        close(give);
    if (r != 0) {
        close(p[0]);
        ck_abort_msg("posix_spawnp python3 %s: %s", path, strerror(r));
    }
    py->pid = pid;
    py->out = p[0];
    py->line[0] = '\0';
    if (t_py_readline(py, py->line, sizeof py->line, 10.0) < 0) {
        int status = t_py_wait(py, 0.5);
        ck_abort_msg("%s printed no first line (exit status %d, -1 = still running)", script, status);
    }
}

int t_py_wait(struct t_py *py, double timeout)
{
    double deadline = t_py_now() + timeout;
    int status = 0;
    int ret = T_PY_OVERSTAYED;
    for (unsigned i = 0; py->pid > 0; i++) {
        pid_t r = waitpid(py->pid, &status, WNOHANG);
        if (r == py->pid) {
            py->pid = -1;
            if (WIFEXITED(status))
                ret = WEXITSTATUS(status);
            else if (WIFSIGNALED(status))
                ret = 128 + WTERMSIG(status);
            break;
        }
        if ((r < 0 && errno != EINTR) || t_py_now() >= deadline) {
            fprintf(stderr, "python peer %d overstayed %.1f s: killed\n", (int)py->pid, timeout);
            break; /* kill_and_reap below */
        }
        sleep_ms(i < 20 ? 1 : 10);
    }
    kill_and_reap(py);
    return ret;
}

unsigned short t_py_port(const struct t_py *py)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(py->line, &end, 10);
    ck_assert_msg(errno == 0 && end != py->line && *end == '\0' && v > 0 && v < 65536,
                  "peer printed \"%s\", not a port", py->line);
    return (unsigned short)v;
}

/* SHA-256 as FIPS 180-4 describes it; tests/py check it against hashlib. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(struct t_py_sha256 *c, const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    uint32_t e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

void t_py_sha256_init(struct t_py_sha256 *c)
{
    static const uint32_t iv[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    };
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->n = 0;
}

void t_py_sha256_update(struct t_py_sha256 *c, const void *data, size_t len)
{
    const unsigned char *p = data;
    c->len += len;
    if (c->n) {
        size_t take = 64 - c->n < len ? 64 - c->n : len;
        memcpy(c->buf + c->n, p, take);
        c->n += take;
        p += take;
        len -= take;
        if (c->n < 64)
            return;
        sha_block(c, c->buf);
        c->n = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha_block(c, p);
    memcpy(c->buf, p, len);
    c->n = len;
}

static void sha_final(struct t_py_sha256 *c, unsigned char out[32])
{
    uint64_t bits = c->len * 8;
    unsigned char pad[72] = { 0x80 };
    size_t padlen = (c->n < 56 ? 56 : 120) - c->n;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
    t_py_sha256_update(c, pad, padlen + 8);
    for (int i = 0; i < 32; i++)
        out[i] = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}

void t_py_sha256_hex(struct t_py_sha256 *c, char hex[65])
{
    unsigned char d[32];
    sha_final(c, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

void t_py_stream(uint64_t seed, uint64_t off, void *buf, size_t len)
{
    unsigned char *out = buf;
    while (len) {
        uint64_t k = off / 32;
        size_t skip = (size_t)(off % 32);
        unsigned char in[16];
        put_be64(in, seed);
        put_be64(in + 8, k);
        struct t_py_sha256 c;
        t_py_sha256_init(&c);
        t_py_sha256_update(&c, in, sizeof in);
        unsigned char block[32];
        sha_final(&c, block);
        size_t take = 32 - skip < len ? 32 - skip : len;
        memcpy(out, block + skip, take);
        out += take;
        off += take;
        len -= take;
    }
}

void t_py_random(uint64_t *state, void *buf, size_t len)
{
    unsigned char *p = buf;
    uint64_t x = *state;
    while (len) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1DULL;
        size_t take = len < 8 ? len : 8;
        memcpy(p, &v, take);
        p += take;
        len -= take;
    }
    *state = x;
}
