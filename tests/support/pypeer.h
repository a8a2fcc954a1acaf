/* A Python peer for tests: runs tests/py/<script>.py under python3 and talks to it over its
 * stdout, plus the checksums both sides agree on (SHA-256, a SHA-256 counter stream). */
#ifndef RS_TEST_PYPEER_H
#define RS_TEST_PYPEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A running peer. out is the read end of its stdout (close-on-exec, owned here); line is the
 * first line it printed, without the newline (usually the port it listens on). */
struct t_py {
    pid_t pid;
    int out;
    char line[256];
};

/* Start `python3 -E -s -B -u T_SRCDIR/py/<script>.py argv...` (argv NULL-terminated, may be NULL) with
 * stdin /dev/null, stdout a pipe to us and stderr shared with the test (tracebacks land in the
 * test log). Waits up to 10 s for its first line into py->line. Aborts the test on any failure,
 * after killing the child. Every peer script also arms its own alarm, so a test that dies
 * mid-way leaves no peer behind for long. */
void t_py_spawn(const char *script, char *const argv[], struct t_py *py);

/* The same, also handing the child a copy of fd as its descriptor T_PY_FD (the caller keeps fd). */
#define T_PY_FD 3
void t_py_spawn_fd(const char *script, char *const argv[], int fd, struct t_py *py);

/* Read the peer's next stdout line into buf (newline stripped), waiting up to timeout seconds.
 * Returns its length, or -1 on EOF or timeout. */
int t_py_readline(struct t_py *py, char *buf, size_t cap, double timeout);

/* Wait up to timeout seconds for the peer to exit, SIGKILL it if it overstays, close py->out.
 * Returns its exit code (0..255), 128 + signal if a signal ended it, or T_PY_OVERSTAYED. */
#define T_PY_OVERSTAYED (-1)
int t_py_wait(struct t_py *py, double timeout);

/* The port number in a line the peer printed (aborts the test if it is not one). */
unsigned short t_py_port(const struct t_py *py);

/* SHA-256 (FIPS 180-4). */
struct t_py_sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
};
void t_py_sha256_init(struct t_py_sha256 *c);
void t_py_sha256_update(struct t_py_sha256 *c, const void *data, size_t len);
/* The digest as 64 lowercase hex characters and a NUL. */
void t_py_sha256_hex(struct t_py_sha256 *c, char hex[65]);

/* The deterministic stream the peers send (py/peerlib.py stream()): block k (32 bytes) is
 * SHA-256(seed as 8 big-endian bytes || k as 8 big-endian bytes); fills buf with bytes
 * [off, off + len) of it. */
void t_py_stream(uint64_t seed, uint64_t off, void *buf, size_t len);

/* Pseudo-random bytes (xorshift64*), for data only ringsock generates. *state must be nonzero. */
void t_py_random(uint64_t *state, void *buf, size_t len);

/* Seconds on CLOCK_MONOTONIC. */
double t_py_now(void);

#endif
