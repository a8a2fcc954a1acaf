"""Reader for the makefile suite: accept one connection and read it with Python's own
sock.makefile('rb').readline() until EOF (what rs_file_write sent).

argv: none. Prints the port, then "got <lines> <bytes> <sha256 hex>".
"""
import hashlib

import peerlib

peerlib.arm()
srv = peerlib.listener("4")
peerlib.announce(srv.getsockname()[1])
conn, _ = srv.accept()
srv.close()
conn.settimeout(10)
f = conn.makefile("rb")
h = hashlib.sha256()
lines = total = 0
while True:
    ln = f.readline()
    if not ln:
        break
    lines += 1
    total += len(ln)
    h.update(ln)
f.close()
conn.close()
peerlib.announce("got", lines, total, h.hexdigest())
