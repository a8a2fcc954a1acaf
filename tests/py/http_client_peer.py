"""HTTP client for tests/test-rshttpd.c: Python's own http.client, on ONE keep-alive connection.

argv: port, then PATH=SHA256HEX pairs (expected body digests; "-" for a 404 expected).
Does GET of every path, then HEAD of the first, on a single HTTPConnection, and checks each
status, body SHA-256, Content-Length, and that the socket was never replaced (keep-alive held).
Prints "ok N" (N requests) or fails with a message on stderr and exit status 1.
"""
import hashlib
import http.client
import sys

import peerlib

peerlib.arm(30)
port = int(sys.argv[1])
pairs = [a.split("=", 1) for a in sys.argv[2:]]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
conn.connect()
first_sock = conn.sock
n = 0
for path, want in pairs:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    n += 1
    if want == "-":
        if resp.status != 404:
            peerlib.fail("GET %s: status %d, wanted 404" % (path, resp.status))
        continue
    if resp.status != 200:
        peerlib.fail("GET %s: status %d" % (path, resp.status))
    if int(resp.getheader("Content-Length")) != len(body):
        peerlib.fail("GET %s: Content-Length %s, body %d" % (path, resp.getheader("Content-Length"), len(body)))
    got = hashlib.sha256(body).hexdigest()
    if got != want:
        peerlib.fail("GET %s: sha256 %s, wanted %s" % (path, got, want))
    if conn.sock is not first_sock:
        peerlib.fail("GET %s: the connection was not kept alive" % path)

path, want = pairs[0]
conn.request("HEAD", path)
resp = conn.getresponse()
if resp.status != 200 or resp.read() != b"":
    peerlib.fail("HEAD %s: status %d or a body" % (path, resp.status))
n += 1
if conn.sock is not first_sock:
    peerlib.fail("HEAD: the connection was not kept alive")
conn.close()
peerlib.announce("ok", n)
