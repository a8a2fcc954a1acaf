"""Client of a ringsock server: send N bytes of the seeded stream in random-sized pieces with
short sleeps, then their SHA-256 hex; expect back the SHA-256 hex of what the server got, then
bytes up to EOF; print their count and SHA-256 hex ("<count> <hex>") and exit 0 if all matched.

argv: port N seed
"""
import hashlib
import random
import socket
import sys
import time

import peerlib

peerlib.arm()
port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
peerlib.announce("started")
data = peerlib.stream(seed, 0, n)
digest = hashlib.sha256(data).hexdigest().encode()
rnd = random.Random(seed)
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    off = 0
    while off < n:
        piece = rnd.randint(1, 64 * 1024)
        s.sendall(data[off:off + piece])
        off += piece
        if rnd.random() < 0.3:
            time.sleep(rnd.random() * 0.01)
    s.sendall(digest)
    back = peerlib.recv_exact(s, 64)
    if back != digest:
        peerlib.fail("server saw %r, I sent %r" % (back, digest))
    rest = peerlib.recv_to_eof(s)
peerlib.announce(len(rest), hashlib.sha256(rest).hexdigest())
