"""Peer for tests/test-rscat.c: the other end of an rscat connection, plain socket module.

Each connection is full duplex: a thread sends SEND bytes (random.Random(seed).randbytes, so
binary with every byte value) and then shuts down its write side, while the main thread receives
to EOF. Per connection it prints "recv N SHA256 sent M SHA256".

  rscat_peer.py server FAMILY SEND SEED          listen on loopback port 0, print the port, serve
                                                 one connection
  rscat_peer.py client PORT FAMILY SEND SEED N   print "start", connect N times in turn (seeds
                                                 SEED, SEED+1, ...), then print "all-sent TOTAL
                                                 SHA256" of everything sent, in order
  rscat_peer.py trickle FAMILY COUNT INTERVAL     listen, print the port, send b"x" COUNT times
                                                 INTERVAL seconds apart, close
  rscat_peer.py reply FAMILY                     listen, print the port, receive to EOF, then
                                                 send the SHA256 hex of it and a newline, close
  rscat_peer.py reset FAMILY                     listen, print the port, send b"hi" and reset the
                                                 connection (SO_LINGER 0)
Then "ok". FAMILY is 4 or 6.
"""
import hashlib
import random
import socket
import struct
import sys
import threading
import time

import peerlib

CHUNK = 1 << 16


def exchange(conn, n, seed):
    conn.settimeout(60)
    sent = hashlib.sha256()
    errors = []

    def sender():
        try:
            rng = random.Random(seed)
            left = n
            while left:
                block = rng.randbytes(min(CHUNK, left))
                sent.update(block)
                conn.sendall(block)
                left -= len(block)
            conn.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender)
    t.start()
    got = hashlib.sha256()
    count = 0
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        got.update(chunk)
        count += len(chunk)
    t.join()
    if errors:
        peerlib.fail("send: %r" % errors[0])
    conn.close()
    peerlib.announce("recv", count, got.hexdigest(), "sent", n, sent.hexdigest())
    return sent


def main():
    peerlib.arm(150)
    mode = sys.argv[1]
    if mode == "server":
        family, n, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        srv = peerlib.listener(family)
        peerlib.announce(srv.getsockname()[1])
        srv.settimeout(60)
        conn, _ = srv.accept()
        srv.close()
        exchange(conn, n, seed)
    elif mode in ("trickle", "reset", "reply"):
        srv = peerlib.listener(sys.argv[2])
        peerlib.announce(srv.getsockname()[1])
        srv.settimeout(60)
        conn, _ = srv.accept()
        srv.close()
        if mode == "reply":  # only rscat's half-close (SHUT_WR at stdin EOF) gets it this far
            conn.settimeout(60)
            conn.sendall(hashlib.sha256(peerlib.recv_to_eof(conn)).hexdigest().encode() + b"\n")
        elif mode == "trickle":
            for _ in range(int(sys.argv[3])):
                time.sleep(float(sys.argv[4]))
                conn.sendall(b"x")
        else:
            conn.sendall(b"hi")
            time.sleep(0.2)  # let "hi" arrive before the RST
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    elif mode == "client":
        port, family = int(sys.argv[2]), sys.argv[3]
        n, seed, count = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        host = "::1" if family == "6" else "127.0.0.1"
        peerlib.announce("start")  # t_py_spawn waits for a first line; the test pumps rscat after
        everything = hashlib.sha256()
        for i in range(count):
            conn = socket.create_connection((host, port), timeout=10)
            rng = random.Random(seed + i)
            left = n
            while left:  # the same bytes exchange() sends, for the running total
                block = rng.randbytes(min(CHUNK, left))
                everything.update(block)
                left -= len(block)
            exchange(conn, n, seed + i)
        peerlib.announce("all-sent", n * count, everything.hexdigest())
    else:
        peerlib.fail("unknown mode %r" % mode)
    peerlib.announce("ok")


main()
