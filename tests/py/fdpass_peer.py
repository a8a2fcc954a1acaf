"""socket.send_fds / recv_fds against ringsock over an AF_UNIX stream socket inherited as fd 3.

argv: send N -- make N pipes holding b"py<i>", send their read ends with the data b"fds"
      recv N -- receive a message with room for 2N fds; expect b"fds" and N fds; print the
                contents of the fds, comma-separated
Prints "ready" first, then "ok" or the contents.
"""
import os
import socket
import sys

import peerlib

peerlib.arm()
mode, n = sys.argv[1], int(sys.argv[2])
sock = socket.socket(fileno=3)
sock.settimeout(10)
if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
    peerlib.fail("fd 3 is %r, not an AF_UNIX stream socket" % sock)
peerlib.announce("ready")
if mode == "send":
    pipes = [os.pipe() for _ in range(n)]
    for i, (r, w) in enumerate(pipes):
        os.write(w, b"py%d" % i)
        os.close(w)
    socket.send_fds(sock, [b"fds"], [r for r, _ in pipes])
    for r, _ in pipes:
        os.close(r)
    peerlib.announce("ok")
else:
    msg, fds, flags, _ = socket.recv_fds(sock, 100, 2 * n)
    if msg != b"fds" or len(fds) != n or flags != 0:
        peerlib.fail("got %r with %d fds, flags %#x" % (msg, len(fds), flags))
    contents = []
    for fd in fds:
        contents.append(os.read(fd, 100).decode())
        os.close(fd)
    peerlib.announce(",".join(contents))
sock.close()
