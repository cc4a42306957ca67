#!/usr/bin/env python3
"""Target services of the L2TP/IPsec test VM, bound to the target address (reachable only through PPP).

HTTP on port 80: GET /hello.txt, GET /big.bin (deterministic bytes, sha256 in --sha-file),
POST /upload -> "<bytes> <sha256hex>\n", GET /whoami -> client address. UDP echo on port 7.
With --addr6, the same HTTP service on that IPv6 address too.
"""
import argparse
import hashlib
import http.server
import os
import random
import socket
import socketserver
import sys
import threading

HELLO = b"hello from the l2tpproxy interop VM\n"


def make_big(path, size, sha_file):
    # Deterministic content: Python's Mersenne Twister seeded with a fixed string (stable across versions).
    rng = random.Random("l2tpproxy-big-v1")
    h = hashlib.sha256()
    with open(path + ".tmp", "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            chunk = rng.randbytes(n)
            h.update(chunk)
            f.write(chunk)
            left -= n
    os.rename(path + ".tmp", path)
    with open(sha_file + ".tmp", "w") as f:
        f.write("%s %d\n" % (h.hexdigest(), size))
    os.rename(sha_file + ".tmp", sha_file)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    big_file = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("http %s %s\n" % (self.client_address[0], fmt % args))
        sys.stderr.flush()

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello.txt":
            self._send(200, HELLO)
        elif self.path == "/whoami":
            self._send(200, (self.client_address[0] + "\n").encode())
        elif self.path == "/big.bin":
            size = os.path.getsize(self.big_file)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            self.wfile.flush()
            with open(self.big_file, "rb") as f:
                self.connection.sendfile(f)
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def _hash_body(self, h, left):
        """Feed the next `left` body bytes into h; False if the client hung up first."""
        while left > 0:
            b = self.rfile.read(min(left, 1 << 16))
            if not b:
                return False
            h.update(b)
            left -= len(b)
        return True

    def do_POST(self):
        if self.path != "/upload":
            self._send(404, b"not found\n")
            return
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if not self._hash_body(h, size):
                    return
                n += size
                self.rfile.readline(16)
        else:
            n = int(self.headers.get("Content-Length", "0"))
            if not self._hash_body(h, n):
                return
        self._send(200, ("%d %s\n" % (n, h.hexdigest())).encode())


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def udp_echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--addr6", default="")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--udp-port", type=int, default=7)
    ap.add_argument("--big-size", type=int, default=64 << 20)
    ap.add_argument("--big-file", required=True)
    ap.add_argument("--sha-file", required=True)
    a = ap.parse_args()
    Handler.big_file = a.big_file
    httpd = Server((a.addr, a.http_port), Handler)
    threading.Thread(target=udp_echo, args=(a.addr, a.udp_port), daemon=True).start()
    if a.addr6:
        httpd6 = Server6((a.addr6, a.http_port), Handler)
        threading.Thread(target=httpd6.serve_forever, daemon=True).start()
    make_big(a.big_file, a.big_size, a.sha_file)
    sys.stderr.write("target ready on %s (http %d, udp echo %d)\n" % (a.addr, a.http_port, a.udp_port))
    sys.stderr.flush()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
