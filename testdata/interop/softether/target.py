#!/usr/bin/env python3
"""Test target behind the SoftEther peer (stdlib only; run inside the server's netns by ./up).

Serves on one address (reachable only through the VPN):
  HTTP  :80   GET /hello.txt, GET /big.bin (deterministic, streamed), GET /whoami, POST /upload
  UDP   :7    echo
  DNS   :53   UDP+TCP, A <name> -> <addr>; other names in the same zone NXDOMAIN, AAAA/other types empty
When every socket is bound it writes KEY=VALUE lines to the ready file (atomically).
"""
import argparse
import hashlib
import http.server
import os
import socket
import socketserver
import struct
import sys
import threading

HELLO = b"l2tpx-softether-target-ok\n"
BIG_SEED = b"l2tpproxy interop big.bin v1"


def log(*a):
    print("target:", *a, file=sys.stderr, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "l2tpx-target/1"

    def log_message(self, fmt, *args):
        log("%s %s" % (self.client_address[0], fmt % args))

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/hello.txt":
            self._send(200, HELLO)
        elif path == "/whoami":
            self._send(200, ("%s:%d\n" % self.client_address[:2]).encode())
        elif path == "/big.bin":
            big = self.server.big
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(big)))
            self.end_headers()
            if self.command == "HEAD":
                return
            view = memoryview(big)
            for off in range(0, len(big), 256 << 10):
                self.wfile.write(view[off:off + (256 << 10)])
        else:
            self._send(404, b"not found\n")

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/upload":
            self._send(404, b"not found\n")
            return
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                n += self._consume(h, size)
                self.rfile.readline()
        else:
            n = self._consume(h, int(self.headers.get("Content-Length", "0")))
        self._send(200, ("%d %s\n" % (n, h.hexdigest())).encode())

    def _consume(self, h, size):
        got = 0
        while got < size:
            chunk = self.rfile.read(min(256 << 10, size - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        return got


def udp_echo(sock):
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def dns_answer(q, name, addr):
    """Build a DNS response for query q (bytes), or None if q is not a query we can parse."""
    if len(q) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    if flags & 0x8000 or qd != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(q):
            return None
        ln = q[i]
        i += 1
        if ln == 0:
            break
        if ln > 63 or i + ln > len(q):
            return None
        labels.append(q[i:i + ln].decode("ascii", "replace").lower())
        i += ln
    if i + 4 > len(q):
        return None
    qtype, qclass = struct.unpack("!HH", q[i:i + 4])
    question = q[12:i + 4]
    qname = ".".join(labels)
    zone = name.split(".", 1)[1] if "." in name else name
    rcode, answers = 0, b""
    if qname == name:
        if qtype in (1, 255) and qclass == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
    elif qname == zone or qname.endswith("." + zone):
        rcode = 3
    else:
        rcode = 5  # REFUSED: we are no recursive resolver
    hdr = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if answers else 0, 0, 0)
    log("dns %s type %d -> rcode %d answers %d" % (qname, qtype, rcode, 1 if answers else 0))
    return hdr + question + answers


def dns_udp(sock, name, addr):
    while True:
        q, peer = sock.recvfrom(4096)
        r = dns_answer(q, name, addr)
        if r:
            sock.sendto(r, peer)


class DNSTCP(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            ln = self.rfile.read(2)
            if len(ln) < 2:
                return
            q = self.rfile.read(struct.unpack("!H", ln)[0])
            r = dns_answer(q, self.server.dnsname, self.server.dnsaddr)
            if not r:
                return
            self.wfile.write(struct.pack("!H", len(r)) + r)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 64


class HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--big-size", type=int, default=64 << 20)
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--udp-port", type=int, default=7)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()

    big = hashlib.shake_128(BIG_SEED).digest(a.big_size)
    httpd = HTTPServer((a.addr, a.http_port), Handler)
    httpd.big = big
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind((a.addr, a.udp_port))
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind((a.addr, 53))
    dnst = TCPServer((a.addr, 53), DNSTCP)
    dnst.dnsname, dnst.dnsaddr = a.name.lower().rstrip("."), a.addr
    for fn, args in ((udp_echo, (echo,)), (dns_udp, (dns, dnst.dnsname, a.addr)), (dnst.serve_forever, ())):
        threading.Thread(target=fn, args=args, daemon=True).start()

    base = "http://%s%s" % (a.addr, "" if a.http_port == 80 else ":%d" % a.http_port)
    kv = {
        "TARGET_IP": a.addr,
        "TARGET_NAME": dnst.dnsname,
        "HELLO_URL": base + "/hello.txt",
        "HELLO_BODY": HELLO.decode().strip(),
        "HELLO_SHA256": hashlib.sha256(HELLO).hexdigest(),
        "BIG_URL": base + "/big.bin",
        "BIG_SIZE": str(len(big)),
        "BIG_SHA256": hashlib.sha256(big).hexdigest(),
        "UPLOAD_URL": base + "/upload",
        "WHOAMI_URL": base + "/whoami",
        "UDP_ECHO": "%s:%d" % (a.addr, a.udp_port),
        "DNS_SERVER_TARGET": "%s:53" % a.addr,
    }
    tmp = a.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join("%s=%s\n" % kv_ for kv_ in kv.items()))
    os.rename(tmp, a.ready)
    log("ready on", a.addr)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
