"""Server that accepts, stays silent until the client sends one byte (its own timeout bounds the
wait), then closes. argv: family (4|6). Prints the port, then "ok"."""
import socket
import sys

import peerlib

peerlib.arm()
srv = peerlib.listener(sys.argv[1])
peerlib.announce(srv.getsockname()[1])
conn, _ = srv.accept()
srv.close()
conn.settimeout(10)
try:
    go = conn.recv(1)
except socket.timeout:
    peerlib.fail("the client never sent its byte")
if go != b"x":
    peerlib.fail("expected b'x', got %r" % go)
conn.close()
peerlib.announce("ok")
