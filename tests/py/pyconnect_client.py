"""Client made with socket.create_connection, for tests/test-server.c.

argv: host port N M seed. Connects, prints "local <its port>", sends N bytes of the seeded stream
(peerlib.stream), half-closes, reads to EOF and prints "got <bytes> <sha256 hex>"; the server
sends M bytes.
"""
import hashlib
import socket
import sys

import peerlib

peerlib.arm()
host, port, n, m, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with socket.create_connection((host, port), timeout=10) as s:
    peerlib.announce("local", s.getsockname()[1])
    s.sendall(peerlib.stream(seed, 0, n))
    s.shutdown(socket.SHUT_WR)
    reply = peerlib.recv_to_eof(s, limit=m)
if len(reply) != m:
    peerlib.fail("got %d bytes, want %d" % (len(reply), m))
peerlib.announce("got", len(reply), hashlib.sha256(reply).hexdigest())
