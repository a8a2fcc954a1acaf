"""Helpers shared by the Python peers of tests/test-pypeer.c (plain socket module, no ringsock)."""
import hashlib
import signal
import socket
import sys


def arm(seconds=30):
    """Die (SIGALRM's default action) if the test that started us is gone or stuck."""
    signal.alarm(seconds)


def announce(*words):
    """One line on stdout for the C side (t_py_readline)."""
    print(*words, flush=True)


def fail(msg):
    print("peer %s: %s" % (sys.argv[0], msg), file=sys.stderr, flush=True)
    sys.exit(1)


def stream(seed, off, n):
    """Bytes [off, off + n) of the stream of pypeer.h's t_py_stream: block k is
    sha256(seed as 8 big-endian bytes + k as 8 big-endian bytes)."""
    out = bytearray()
    k = off // 32
    skip = off % 32
    s = seed.to_bytes(8, "big")
    while len(out) < n + skip:
        out += hashlib.sha256(s + k.to_bytes(8, "big")).digest()
        k += 1
    return bytes(out[skip:skip + n])


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            fail("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_to_eof(sock, limit=1 << 30):
    buf = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            fail("more than %d bytes" % limit)


def listener(family):
    host = "::1" if family == "6" else "127.0.0.1"
    fam = socket.AF_INET6 if family == "6" else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(10)
    return srv
