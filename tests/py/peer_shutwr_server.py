"""Server that reads its one connection to EOF (the other side's SHUT_WR), then, on the same
half-open connection, sends the SHA-256 hex of what it read and M bytes of stream seed+1.

argv: family (4|6) M seed. Prints the port, then "eof <bytes read>" after its reply is out.
"""
import hashlib
import sys

import peerlib

peerlib.arm()
m, seed = int(sys.argv[2]), int(sys.argv[3])
srv = peerlib.listener(sys.argv[1])
peerlib.announce(srv.getsockname()[1])
conn, _ = srv.accept()
srv.close()
conn.settimeout(10)
got = peerlib.recv_to_eof(conn)
conn.sendall(hashlib.sha256(got).hexdigest().encode() + peerlib.stream(seed + 1, 0, m))
conn.close()
peerlib.announce("eof", len(got))
