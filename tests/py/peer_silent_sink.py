"""Server that does not read its first connection until a second one arrives (the go signal),
then reads the first to EOF. Lets the other side find out what a send timeout leaves behind.

argv: family (4|6). Prints the port, then "<bytes read> <sha256 hex>".
"""
import hashlib
import sys

import peerlib

peerlib.arm(40)
srv = peerlib.listener(sys.argv[1])
srv.listen(2)
srv.settimeout(25)  # the other side may take a while under load; arm() bounds us anyway
peerlib.announce(srv.getsockname()[1])
data_conn, _ = srv.accept()
go, _ = srv.accept()
go.close()
srv.close()
data_conn.settimeout(10)
got = peerlib.recv_to_eof(data_conn)
data_conn.close()
peerlib.announce(len(got), hashlib.sha256(got).hexdigest())
