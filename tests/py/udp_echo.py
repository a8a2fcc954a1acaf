"""UDP echo server with Python's socket module: binds loopback port 0, sends each datagram back
to whoever sent it, with recvfrom/sendto. argv: family (4|6), count of datagrams to echo.
Prints the port, then "ok" after the last echo."""
import socket
import sys

import peerlib

peerlib.arm()
family, count = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
sock = socket.socket(fam, socket.SOCK_DGRAM)
sock.bind(("::1" if family == "6" else "127.0.0.1", 0))
sock.settimeout(10)
peerlib.announce(sock.getsockname()[1])
for _ in range(count):
    try:
        data, addr = sock.recvfrom(65536)
    except socket.timeout:
        peerlib.fail("no datagram within 10 s")
    if sock.sendto(data, addr) != len(data):
        peerlib.fail("short sendto")
sock.close()
peerlib.announce("ok")
