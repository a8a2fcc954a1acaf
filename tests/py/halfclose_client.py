"""Client that sends N bytes of the seeded stream, shuts down its write side, then reads the
reply to EOF: expects the SHA-256 hex of what it sent followed by M bytes of stream seed+1.

argv: port N M seed. Prints "started", then "ok".
"""
import hashlib
import socket
import sys

import peerlib

peerlib.arm()
port, n, m, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
peerlib.announce("started")
data = peerlib.stream(seed, 0, n)
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = peerlib.recv_to_eof(s)
want = hashlib.sha256(data).hexdigest().encode() + peerlib.stream(seed + 1, 0, m)
if reply != want:
    peerlib.fail("reply of %d bytes differs from the %d expected" % (len(reply), len(want)))
peerlib.announce("ok")
