"""Server for the makefile suite: send `count` lines of mixed lengths in random-sized
socket.send pieces (1 byte to 64 KiB) with short random pauses, then close. The C side reads
them with rs_file_readline/read and compares the SHA-256 and line count we print.

argv: count seed. Prints the port, then "sent <lines> <bytes> <sha256 hex>" once done.
"""
import hashlib
import random
import sys
import time

import peerlib


def line(rnd):
    """0..300 printable bytes (1 in 20: 2000..9000, longer than small buffers), then '\\n'."""
    n = rnd.randint(2000, 9000) if rnd.random() < 0.05 else rnd.randint(0, 300)
    return bytes(rnd.randrange(32, 127) for _ in range(n)) + b"\n"


peerlib.arm()
count, seed = int(sys.argv[1]), int(sys.argv[2])
srv = peerlib.listener("4")
peerlib.announce(srv.getsockname()[1])
conn, _ = srv.accept()
srv.close()
conn.settimeout(10)
rnd = random.Random(seed)
data = b"".join(line(rnd) for _ in range(count))
split = random.Random(seed + 1)
off = 0
while off < len(data):
    piece = split.choice((1, 2, 3, 7, 100, 1000, 4096, 65536, split.randint(1, 20000)))
    off += conn.send(data[off:off + piece])
    if split.random() < 0.05:
        time.sleep(split.random() * 0.005)
conn.close()
peerlib.announce("sent", count, len(data), hashlib.sha256(data).hexdigest())
