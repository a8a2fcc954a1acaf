"""Client that sends N bytes of the seeded stream and then resets the connection (SO_LINGER 0,
close: an RST, not a FIN). mode "ack": the reset follows one byte from the other side (so every
byte was read first); mode "sleep": it follows 0.3 s after the data, whoever is waiting.

argv: port N seed mode. Prints "started", then "reset" once the RST is out.
"""
import socket
import struct
import sys
import time

import peerlib

peerlib.arm()
port, n, seed, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
peerlib.announce("started")
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(peerlib.stream(seed, 0, n))
if mode == "ack":
    if s.recv(1) != b"k":
        peerlib.fail("expected the ack byte")
elif mode == "sleep":
    time.sleep(0.3)
else:
    peerlib.fail("unknown mode %r" % mode)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
peerlib.announce("reset")
