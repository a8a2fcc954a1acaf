"""Drive one program of examples/ against loopback peers and check what it does.

usage: example_check.py NAME BINARY     (NAME: http_get, echo_server, file_server, happy_eyeballs)

Used by examples/meson.build (once per RINGSOCK_BACKEND) and by scripts/check-examples (binaries
built out of tree against an installed ringsock). Exit 0 when every check passed; otherwise the
first failed check, with the example's output, on stderr and exit 1. Everything is bounded: each
example run has a timeout and the whole script dies of SIGALRM after 120 s.
"""
import hashlib
import http.server
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

RUN_TIMEOUT = 20  # seconds for one run of an example
NAME = BIN = None


class CheckFailed(Exception):
    pass


def check(cond, what, proc=None):
    if not cond:
        detail = ""
        if proc is not None:
            detail = "\n--- exit status %s\n--- stdout:\n%s\n--- stderr:\n%s" % (
                proc.returncode, show(proc.stdout), show(proc.stderr))
        raise CheckFailed(what + detail)


def show(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        text = data[:4000].decode("utf-8", "replace")
        return text + ("... (%d bytes)" % len(data) if len(data) > 4000 else "")
    return data


SANITIZER = re.compile(rb"ERROR: (Address|Leak)Sanitizer|runtime error:")


def sane(args, stderr):
    """A sanitizer report fails the check even where the example was expected to fail."""
    m = SANITIZER.search(stderr or b"")
    if m:
        raise CheckFailed("%s %s: sanitizer report:\n%s" % (NAME, " ".join(args), show(stderr[m.start():])))


def run(args, timeout=RUN_TIMEOUT, prefix=()):
    """Run the example to completion; bytes in, bytes out."""
    try:
        p = subprocess.run(list(prefix) + [BIN] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise CheckFailed("%s %s: still running after %s s (stderr: %s)" % (
            NAME, " ".join(args), timeout, show(e.stderr)))
    sane(args, p.stderr)
    return p


def usage_checks(bad_arg_lists):
    p = run(["--help"])
    check(p.returncode == 0 and b"usage:" in p.stdout + p.stderr, "--help: usage and exit 0", p)
    for args in bad_arg_lists:
        p = run(args)
        check(p.returncode == 2, "bad arguments %r: exit status 2" % (args,), p)
        check(b"usage" in p.stderr or NAME.encode() in p.stderr, "bad arguments %r: a message" % (args,), p)


def closed_port():
    """A loopback port nobody listens on (just released: nothing else binds on this host's
    ephemeral range that fast)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Server:
    """A started example server whose first stdout line is 'listening on ADDR:PORT...'."""

    def __init__(self, args):
        self.args = args
        self.proc = subprocess.Popen([BIN] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], RUN_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.match(r"listening on (\S+?):(\d+)\b", line)
        if not m:
            self.kill()
            raise CheckFailed("%s %s: no 'listening on ADDR:PORT' line (got %r, stderr %s)" % (
                NAME, " ".join(args), line, show(self.err)))
        self.port = int(m.group(2))

    def finish(self, timeout=RUN_TIMEOUT):
        """Wait for the exit; returns the status, stdout, stderr."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CheckFailed("%s did not exit within %s s (stderr: %s)" % (NAME, timeout, show(self.err)))
        self.err = err
        sane(self.args, err)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        _, self.err = self.proc.communicate()

    err = b""


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_to_eof(sock, limit=64 << 20):
    out = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk
        check(len(out) <= limit, "more than %d bytes received" % limit)


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        check(chunk, "EOF after %d of %d bytes" % (len(out), n))
        out += chunk
    return bytes(out)


# ---- http_get ----------------------------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def one_shot_server(script, host="127.0.0.1"):
    """A loopback peer that accepts one connection and plays script(conn); returns (port, thread)."""
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(RUN_TIMEOUT)

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        finally:
            srv.close()
        with conn:
            conn.settimeout(RUN_TIMEOUT)
            try:
                script(conn)
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv.getsockname()[1], t


def read_request(conn):
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = conn.recv(4096)
        if not chunk:
            break
        req += chunk
    return req


def check_http_get():
    usage_checks([[], ["127.0.0.1", "80"], ["-t", "abc", "127.0.0.1", "80", "/"], ["-t", "0", "h", "80", "/"],
                  ["-x", "h", "80", "/"], ["127.0.0.1", "80", "no-slash"], ["127.0.0.1", "80", "/a b"],
                  ["127.0.0.1", "80", "/", "extra"]])
    root = tempfile.mkdtemp(prefix="ex-http-")
    try:
        body = os.urandom(300_000) + b"\r\n\r\nHTTP/1.0 200 not a header\n"
        with open(os.path.join(root, "data.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(root, "empty.txt"), "wb"):
            pass
        handler = lambda *a, **kw: QuietHandler(*a, directory=root, **kw)  # noqa: E731
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            p = run(["-t", "10", "127.0.0.1", str(port), "/data.bin"])
            check(p.returncode == 0, "GET /data.bin: exit status 0", p)
            check(p.stdout == body, "GET /data.bin: the body is the file's bytes (%d of %d)" % (
                len(p.stdout), len(body)), p)
            check(re.match(rb"HTTP/1\.[01] 200 ", p.stderr), "GET /data.bin: status line on stderr", p)
            p = run(["127.0.0.1", str(port), "/empty.txt"])
            check(p.returncode == 0 and p.stdout == b"", "GET /empty.txt: exit 0, empty body", p)
            p = run(["127.0.0.1", str(port), "/missing"])
            check(p.returncode == 1 and b" 404 " in p.stderr, "GET /missing: 404 on stderr, exit 1", p)
        finally:
            httpd.shutdown()
            httpd.server_close()
    finally:
        shutil.rmtree(root)

    # A peer that dribbles its answer a few bytes at a time: lines split across receives.
    answer = (b"HTTP/1.0 200 OK\r\nServer: dribble\r\ncontent-length: 11\r\nX-Long: " + b"v" * 5000 +
              b"\r\n\r\nhello world")

    requests = []

    def dribble(conn):
        requests.append(read_request(conn))
        for i in range(0, len(answer), 7):
            conn.sendall(answer[i:i + 7])
            if i < 200:
                time.sleep(0.002)
    port, t = one_shot_server(dribble)
    p = run(["127.0.0.1", str(port), "/x?y=1"])
    t.join(RUN_TIMEOUT)
    check(p.returncode == 0 and p.stdout == b"hello world", "dribbled answer: body and exit 0", p)
    check(requests and requests[0].startswith(b"GET /x?y=1 HTTP/1.0\r\n") and
          (b"\r\nHost: 127.0.0.1:%d\r\n" % port) in requests[0],
          "the request line and Host header (got %r)" % (requests[:1],))

    if have_ipv6_loopback():  # an IPv6 literal goes into the Host header in brackets
        requests.clear()
        port, t = one_shot_server(dribble, "::1")
        p = run(["::1", str(port), "/v6"])
        t.join(RUN_TIMEOUT)
        check(p.returncode == 0 and p.stdout == b"hello world", "GET from [::1]: body and exit 0", p)
        check(requests and (b"\r\nHost: [::1]:%d\r\n" % port) in requests[0],
              "GET from [::1]: Host header in brackets (got %r)" % (requests[:1],))

    cases = [
        ("not HTTP", b"SSH-2.0-OpenSSH\r\n", b"not an HTTP status line"),
        ("short body", b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"Content-Length"),
        ("headers cut", b"HTTP/1.0 200 OK\r\nX-A: 1\r\n", b"closed before the headers ended"),
        ("bad length", b"HTTP/1.0 200 OK\r\nContent-Length: -5\r\n\r\n", b"Content-Length"),
        ("server error", b"HTTP/1.0 503 Busy\r\n\r\nlater", b" 503 "),
    ]
    for what, reply, expect in cases:
        def play(conn, reply=reply):
            read_request(conn)
            conn.sendall(reply)
        port, t = one_shot_server(play)
        p = run(["127.0.0.1", str(port), "/"])
        t.join(RUN_TIMEOUT)
        check(p.returncode == 1 and expect in p.stderr, "%s: exit 1 and %r on stderr" % (what, expect), p)

    # A peer that never answers: -t bounds each receive.
    stop = threading.Event()
    port, t = one_shot_server(lambda conn: stop.wait(RUN_TIMEOUT))
    start = time.monotonic()
    p = run(["-t", "0.5", "127.0.0.1", str(port), "/"])
    took = time.monotonic() - start
    stop.set()
    check(p.returncode == 1 and b"ETIMEDOUT" in p.stderr, "silent peer with -t 0.5: ETIMEDOUT, exit 1", p)
    check(took < 10, "silent peer with -t 0.5: gave up after %.1f s" % took)

    p = run(["127.0.0.1", str(closed_port()), "/"])
    check(p.returncode == 1 and b"ECONNREFUSED" in p.stderr, "closed port: ECONNREFUSED, exit 1", p)


# ---- echo_server -------------------------------------------------------------------------------

def expect_silence(sock, seconds, what):
    sock.settimeout(seconds)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return
    finally:
        sock.settimeout(10)
    raise CheckFailed("%s: expected nothing yet, got %r" % (what, data[:100]))


def check_echo_server():
    usage_checks([["--bogus"], ["--max-conns", "0"], ["--max-conns", "x", "0"], ["70000"], ["12ab"],
                  ["0", "extra"]])

    srv = Server(["--max-conns", "4"])
    try:
        a = connect(srv.port)
        a.sendall(b"hello\n")
        check(recv_exact(a, 6) == b"hello\n", "one line comes back")
        a.sendall(b"split ")
        expect_silence(a, 0.3, "half a line")  # a line-echo holds bytes until the '\n'
        a.sendall(b"across writes\nand a second ")
        check(recv_exact(a, 20) == b"split across writes\n", "a line split across two writes")
        a.sendall(b"one\nthree\nin one write\n")
        want = b"and a second one\nthree\nin one write\n"
        check(recv_exact(a, len(want)) == want, "lines split and joined")

        # Two more clients at once, interleaved; the third sends a lot with a concurrent reader.
        b, c = connect(srv.port), connect(srv.port)
        b.sendall(b"from b\n")
        c.sendall(b"from c\n")
        check(recv_exact(c, 7) == b"from c\n" and recv_exact(b, 7) == b"from b\n", "two clients at once")
        lines = b"".join(b"%d %s\n" % (i, b"x" * (i % 300)) for i in range(4000)) + b"L" * 9000 + b"\n"
        got = []
        reader = threading.Thread(target=lambda: got.append(recv_exact(c, len(lines))), daemon=True)
        reader.start()
        for i in range(0, len(lines), 65521):  # an odd size: writes end mid-line
            c.sendall(lines[i:i + 65521])
        reader.join(RUN_TIMEOUT)
        check(got and got[0] == lines, "%d bytes of lines (and one of 9000 bytes) come back in order" % len(lines))

        # EOF: the complete lines already sent come back, an unfinished last line does not.
        b.sendall(b"last line\nno newline")
        b.shutdown(socket.SHUT_WR)
        check(recv_to_eof(b) == b"last line\n", "EOF: the last complete line, then EOF")
        for s in (a, b, c):
            s.close()

        # EOF while echoes are still queued in the server (a small receive window keeps them
        # there): they must all arrive before the server closes. 900 KiB stays under the server's
        # 1 MiB back-pressure mark, so sending all of it never waits for us to read.
        d = socket.socket()
        d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        d.settimeout(10)
        d.connect(("127.0.0.1", srv.port))
        lines = b"".join(b"%06d %s\n" % (i, b"y" * 80) for i in range(10000))
        d.sendall(lines)
        d.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        got = recv_to_eof(d)
        d.close()
        check(got == lines, "EOF with echoes queued: all %d bytes back before the close (got %d)" % (
            len(lines), len(got)))

        status, out, err = srv.finish()
        check(status == 0, "--max-conns 4: exit 0 after the fourth connection ended (status %s, stderr %s)" % (
            status, show(err)))
    finally:
        srv.kill()

    # Without --max-conns it runs until a signal.
    srv = Server([])
    try:
        a = connect(srv.port)
        a.sendall(b"ping\n")
        check(recv_exact(a, 5) == b"ping\n", "echo before SIGTERM")
        srv.proc.send_signal(signal.SIGTERM)
        status, _, _ = srv.finish(10)
        check(status == -signal.SIGTERM, "SIGTERM ends it (status %s)" % status)
        a.close()
    finally:
        srv.kill()


# ---- file_server -------------------------------------------------------------------------------

def check_file_server():
    root = tempfile.mkdtemp(prefix="ex-file-")
    try:
        path = os.path.join(root, "data.bin")
        data = os.urandom(1 << 20)
        with open(path, "wb") as f:
            f.write(data)
        usage_checks([[], ["-p", "70000", path], ["-p", "x", path], ["-n", "0", path], ["-t", "-1", path],
                      ["-q", path], [path, path]])
        p = run([os.path.join(root, "missing")])
        check(p.returncode == 1 and b"missing" in p.stderr, "a missing file: exit 1 and its name", p)
        p = run([root])
        check(p.returncode == 1 and b"not a regular file" in p.stderr, "a directory: exit 1", p)

        want = hashlib.sha256(data).hexdigest()
        srv = Server(["-n", "3", "-p", "0", path])
        try:
            # two at once (the second waits in the backlog), then one that leaves early
            s1, s2 = connect(srv.port), connect(srv.port)
            for i, s in enumerate((s1, s2)):
                got = recv_to_eof(s)
                s.close()
                check(hashlib.sha256(got).hexdigest() == want,
                      "client %d: %d bytes, SHA-256 of the 1 MiB file" % (i + 1, len(got)))
            s3 = connect(srv.port)
            s3.recv(1000)
            s3.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s3.close()  # a reset mid-transfer: logged, the server goes on (and then exits: -n 3)
            status, out, err = srv.finish()
            check(status == 0, "-n 3: exit 0 after three clients (status %s, stderr %s)" % (status, show(err)))
            check(err.count(b"sent 1048576 bytes") >= 2, "two full transfers logged (stderr %s)" % show(err))
        finally:
            srv.kill()
    finally:
        shutil.rmtree(root)


# ---- happy_eyeballs ----------------------------------------------------------------------------

ATTEMPT = re.compile(r"^attempt (\d+)\s+(IPv[46]) (\S+)\s+start=(\S+)s end=\S+s\s+(\S+)", re.M)


def attempts(text):
    return [(int(n), fam, addr, float(t), res) for n, fam, addr, t, res in ATTEMPT.findall(text)]


def in_private_hosts(hosts_text):
    """A command prefix that runs the example with /etc/hosts reading as hosts_text (a private
    mount namespace), or None when this machine does not allow it."""
    if not shutil.which("unshare"):
        return None, None
    fd, path = tempfile.mkstemp(prefix="ex-hosts-")
    os.write(fd, hosts_text.encode())
    os.close(fd)
    os.chmod(path, 0o644)
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /etc/hosts && shift && exec "$@"', path, "--"]
    probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=RUN_TIMEOUT)
    if probe.returncode != 0:
        os.unlink(path)
        return None, None
    return prefix, path


def check_happy_eyeballs():
    usage_checks([[], ["localhost"], ["h", "80", "0"], ["h", "80", "abc"], ["-d", "-1", "h", "80"],
                  ["h", "80", "5", "extra"]])
    v6 = have_ipv6_loopback()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    try:
        # 127.0.0.1: one attempt, the winner
        p = run(["127.0.0.1", str(port), "5"])
        out = p.stdout.decode()
        at = attempts(out)
        check(p.returncode == 0 and len(at) == 1 and at[0][1:3] == ("IPv4", "127.0.0.1:%d" % port) and
              at[0][4] == "connected" and "winner: attempt 1," in out, "127.0.0.1: one attempt, connected", p)

        # nobody on ::1 at that port: refused, reported, exit 1
        if v6:
            p = run(["::1", str(port), "5"])
            out = p.stdout.decode()
            at = attempts(out)
            check(p.returncode == 1 and len(at) == 1 and at[0][1:3] == ("IPv6", "[::1]:%d" % port) and
                  at[0][4] == "ECONNREFUSED" and "failed after" in out, "::1: one attempt, ECONNREFUSED", p)

        # "localhost" naming ::1 first and 127.0.0.1 second, with the listener on 127.0.0.1 only.
        # -d 3: 127.0.0.1 may only start early because ::1 failed, so ::1 is always seen refused
        # (never cancelled by a faster rival), and a winner well before 3 s shows that the next
        # attempt starts as soon as the previous one fails.
        prefix, hosts = in_private_hosts("::1 localhost\n127.0.0.1 localhost\n") if v6 else (None, None)
        try:
            if not prefix:
                print("note: no private mount namespace or no ::1: 'localhost' as this host resolves it")
            p = run(["-d", "3", "localhost", str(port), "10"], prefix=prefix or ())
        finally:
            if hosts:
                os.unlink(hosts)
        out = p.stdout.decode()
        at = attempts(out)
        check(p.returncode == 0 and at, "localhost: connected, attempts listed", p)
        check(at[-1][1:3] == ("IPv4", "127.0.0.1:%d" % port) and at[-1][4] == "connected",
              "localhost: the last attempt listed is 127.0.0.1, connected", p)
        check(all(a[4] != "connected" for a in at[:-1]), "localhost: every earlier attempt failed", p)
        check(not v6 or all(a[4] == "ECONNREFUSED" for a in at if a[1] == "IPv6"),
              "localhost: every ::1 attempt was refused", p)
        check([a[0] for a in at] == list(range(1, len(at) + 1)), "localhost: attempts numbered 1..n", p)
        check("winner: attempt %d, IPv4 127.0.0.1:%d" % (len(at), port) in out, "localhost: the winner line", p)
        if prefix:
            check(len(at) == 2 and at[0][1:3] == ("IPv6", "[::1]:%d" % port),
                  "localhost (::1 first): ::1 tried and refused, then 127.0.0.1 won", p)
            took = float(re.search(r"after (\S+) s", out).group(1))
            check(took < 2.5, "localhost: 127.0.0.1 started when ::1 failed, not 3 s later (%.3f s)" % took, p)

        # a service name that does not resolve (no DNS query: the host is numeric): EAI_, exit 1
        p = run(["127.0.0.1", "no-such-service", "5"])
        check(p.returncode == 1 and b"EAI_" in p.stdout, "unknown service: an EAI_ error, exit 1", p)
    finally:
        srv.close()


def main():
    global NAME, BIN
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    NAME, BIN = sys.argv[1], os.path.abspath(sys.argv[2])
    checks = {"http_get": check_http_get, "echo_server": check_echo_server,
              "file_server": check_file_server, "happy_eyeballs": check_happy_eyeballs}
    if NAME not in checks:
        print("example_check: unknown example %r (known: %s)" % (NAME, ", ".join(checks)), file=sys.stderr)
        return 2
    signal.alarm(120)
    start = time.monotonic()
    try:
        checks[NAME]()
    except CheckFailed as e:
        print("example_check: %s [RINGSOCK_BACKEND=%s]: FAILED: %s" % (
            NAME, os.environ.get("RINGSOCK_BACKEND", "auto"), e), file=sys.stderr)
        return 1
    print("example_check: %s [RINGSOCK_BACKEND=%s]: ok (%.1f s)" % (
        NAME, os.environ.get("RINGSOCK_BACKEND", "auto"), time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
