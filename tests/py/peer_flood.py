"""Client of an echo server that floods it without reading (until its sends make no progress
for 0.5 s), says so, keeps not reading for `pause` seconds, then reads every echo while sending
the rest, shuts its write side and reads to EOF. The echo must be exactly the stream it sent.

argv: port total seed pause. Prints "started", then "stalled <bytes sent so far>", then "ok <total>".
"""
import select
import socket
import sys
import time

import peerlib

peerlib.arm()
port, total, seed, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = peerlib.stream(seed, 0, total)
peerlib.announce("started")
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# small buffers, set before connecting (the window is agreed then): the test is about the
# server's queue, not the kernel's
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.settimeout(10)
s.connect(("127.0.0.1", port))
s.setblocking(False)
sent = 0
last = time.monotonic()
while sent < total and time.monotonic() - last < 0.5:
    try:
        k = s.send(data[sent:sent + 65536])
        sent += k
        last = time.monotonic()
    except BlockingIOError:
        select.select([], [s], [], 0.05)
if sent == total:
    peerlib.fail("sent all %d bytes to a server whose echoes nobody read" % total)
peerlib.announce("stalled", sent)
time.sleep(pause)
echo = bytearray()
shut = False
end = time.monotonic() + 20
while time.monotonic() < end:
    if sent == total and not shut:
        s.shutdown(socket.SHUT_WR)
        shut = True
    r, w, _ = select.select([s], [s] if sent < total else [], [], 0.1)
    if w:
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            pass
    if r:
        try:
            chunk = s.recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        echo += chunk
else:
    peerlib.fail("no EOF: %d sent, %d echoed" % (sent, len(echo)))
if bytes(echo) != data:
    peerlib.fail("echo of %d bytes differs from the %d sent" % (len(echo), total))
s.close()
peerlib.announce("ok", total)
