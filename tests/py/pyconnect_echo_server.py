"""Echo server made with socket.create_server, for tests/test-connect.c.

argv: mode: 4 (127.0.0.1), 6 (::1) or dual (create_server("", dualstack_ipv6=True)).
Prints the port; after accepting one connection "peer <client port>"; echoes until EOF; then
"ok <bytes echoed>".
"""
import socket
import sys

import peerlib

peerlib.arm()
mode = sys.argv[1]
if mode == "6":
    srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
elif mode == "dual":
    srv = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
else:
    srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(10)
peerlib.announce(srv.getsockname()[1])
conn, peer = srv.accept()
srv.close()
conn.settimeout(10)
peerlib.announce("peer", peer[1])
total = 0
while True:
    data = conn.recv(1 << 16)
    if not data:
        break
    conn.sendall(data)
    total += len(data)
conn.close()
peerlib.announce("ok", total)
