"""Server: receive N bytes, reply with their SHA-256 hex, then M bytes of the seeded stream, close.

argv: family (4|6) N M seed. Prints the port, then "ok" once done.
"""
import hashlib
import sys

import peerlib

peerlib.arm()
family, n, m, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
srv = peerlib.listener(family)
peerlib.announce(srv.getsockname()[1])
conn, _ = srv.accept()
srv.close()
conn.settimeout(10)
data = peerlib.recv_exact(conn, n)
conn.sendall(hashlib.sha256(data).hexdigest().encode())
conn.sendall(peerlib.stream(seed, 0, m))
conn.close()
peerlib.announce("ok")
