"""Peer of tests/test-sendfile.c: takes what rs_sendfile sends and reports "<bytes> <sha256 hex>".

Usage:
  sendfile_sink.py listen 4|6 [options]   listen on loopback; print the port; per connection read
                                          to EOF (or as an option says) and print "<n> <sha>"
  sendfile_sink.py fd [options]           the same on an inherited connected socket (fd 3),
                                          printing "ready" first
  sendfile_sink.py hash FILE RANGES...    per argument print "<n> <sha>" of FILE's bytes in RANGES,
                                          "OFF:COUNT" joined by "+" (COUNT 0: to EOF), and exit
Options:
  --conns K          connections to take one after the other (listen; default 1)
  --close-after N    read N bytes, print "<n> <sha>" of them, close (TCP: a reset for the sender)
  --shut-after N     read N bytes, shutdown(SHUT_RD) (AF_UNIX: the sender's next write fails with
                     EPIPE), then read what was already queued to EOF; report everything read
  --stall-after N    read N bytes, print "stalled", wait for SIGUSR1, then read to EOF
  --slow B:S         read at most B bytes, then sleep S seconds, and so on (a slow reader)
  --rcvbuf N         SO_RCVBUF for the listening socket (and so the accepted ones)
"""
import hashlib
import os
import signal
import socket
import sys
import time

import peerlib

CHUNK = 1 << 20


def parse(args):
    opts = {"conns": 1, "close": None, "shut": None, "stall": None, "slow": None, "rcvbuf": None}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--conns":
            opts["conns"] = int(args[i + 1])
        elif a == "--close-after":
            opts["close"] = int(args[i + 1])
        elif a == "--shut-after":
            opts["shut"] = int(args[i + 1])
        elif a == "--stall-after":
            opts["stall"] = int(args[i + 1])
        elif a == "--slow":
            b, s = args[i + 1].split(":")
            opts["slow"] = (int(b), float(s))
        elif a == "--rcvbuf":
            opts["rcvbuf"] = int(args[i + 1])
        else:
            peerlib.fail("unknown option %r" % a)
        i += 2
    return opts


def read_into(conn, h, limit, buf, slow=None):
    """Read up to limit bytes (None: to EOF) into h; return the count."""
    view = memoryview(buf)
    n = 0
    while limit is None or n < limit:
        want = len(buf) if limit is None else min(len(buf), limit - n)
        if slow:
            want = min(want, slow[0])
        try:
            got = conn.recv_into(view[:want])
        except ConnectionResetError:
            break
        if got == 0:
            break
        h.update(view[:got])
        n += got
        if slow:
            time.sleep(slow[1])
    return n


def serve(conn, opts):
    buf = bytearray(CHUNK)
    h = hashlib.sha256()
    conn.settimeout(60)
    if opts["close"] is not None:
        n = read_into(conn, h, opts["close"], buf)
        conn.close()
    elif opts["shut"] is not None:
        n = read_into(conn, h, opts["shut"], buf)
        conn.shutdown(socket.SHUT_RD)
        n += read_into(conn, h, None, buf)
        conn.close()
    elif opts["stall"] is not None:
        n = read_into(conn, h, opts["stall"], buf)
        peerlib.announce("stalled")
        signal.sigwait([signal.SIGUSR1])
        n += read_into(conn, h, None, buf)
        conn.close()
    else:
        n = read_into(conn, h, None, buf, opts["slow"])
        conn.close()
    peerlib.announce(n, h.hexdigest())


def hash_ranges(path, ranges):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for r in ranges.split("+"):
            off, count = (int(v) for v in r.split(":"))
            f.seek(off)
            done = 0
            while count == 0 or done < count:
                data = f.read(CHUNK if count == 0 else min(CHUNK, count - done))
                if not data:
                    break
                h.update(data)
                done += len(data)
            n += done
    peerlib.announce(n, h.hexdigest())


def main():
    peerlib.arm(120)
    # SIGUSR1 is waited for with sigwait: block it before the test can send it
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    mode = sys.argv[1]
    if mode == "hash":
        for ranges in sys.argv[3:]:
            hash_ranges(sys.argv[2], ranges)
        return
    if mode == "fd":
        opts = parse(sys.argv[2:])
        conn = socket.socket(fileno=3)
        peerlib.announce("ready")
        serve(conn, opts)
        return
    if mode != "listen":
        peerlib.fail("unknown mode %r" % mode)
    opts = parse(sys.argv[3:])
    fam = sys.argv[2]
    srv = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET, socket.SOCK_STREAM)
    if opts["rcvbuf"]:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts["rcvbuf"])
    srv.bind(("::1" if fam == "6" else "127.0.0.1", 0))
    srv.listen(opts["conns"])
    srv.settimeout(60)
    peerlib.announce(srv.getsockname()[1])
    for _ in range(opts["conns"]):
        conn, _ = srv.accept()
        serve(conn, opts)
    srv.close()
    os._exit(0)


main()
