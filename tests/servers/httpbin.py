#!/usr/bin/env python3
"""Loopback HTTP(S) server for the sbot.http tests and bench (stdlib only).

Routes (any method unless noted):
  /echo                 JSON: method, path, query, headers, body (text), body_sha256
  /status/<code>        answers <code> with a short text body
  /flaky/<id>?fail=N&status=S&after=A
                        answers S (default 503) N times for <id>, then 200; the first failure
                        carries Retry-After: A (default 1; "date:N": an HTTP date N seconds
                        ahead; "none": no header); every attempt's arrival time is recorded,
                        see /attempts/<id>
  /attempts/<id>        JSON list of arrival times (seconds, time.monotonic) for /flaky/<id>
  /never                reads the request and never answers
  /upload               streams the request body, answers {"bytes": n, "sha256": hex}
  /download/<n>?id=X    streams n random bytes; their SHA-256 is kept under X, see /hash/<X>
  /hash/<id>            the hex SHA-256 of what /download sent for <id>
  /drip/<n>?chunks=K&ms=M  n bytes ('d') announced by Content-Length, sent in K chunks with
                        M ms between them (a transfer that takes (K-1)*M ms, whatever the machine)
  /slow?ms=M            waits M ms, answers "ok" (bench latency)
  /conc?ms=M            waits M ms, answers "ok"; open connections and in-flight requests are
                        counted per local address (127.0.0.1 vs 127.0.0.2 = two hosts)
  /stats                JSON {local_ip: {"max_connections": n, "max_inflight": n, "requests": n}}
                        (key "all": in-flight /conc requests over every address)
  /cookies              answers with two Set-Cookie headers
  /break/<how>          a broken answer: "close" closes the connection without answering,
                        "truncate" sends 10 of 100 announced body bytes then closes, "reset"
                        resets the connection (RST), "garbage" answers a line that is not HTTP
Options: --port P, --bind ADDR (repeatable), --tls CERT KEY.
"""
import argparse
import email.utils
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
flaky_counts = {}
flaky_times = {}
hashes = {}
stats = {}


def stat_for(ip):
    return stats.setdefault(ip, {"connections": 0, "inflight": 0, "max_connections": 0,
                                 "max_inflight": 0, "requests": 0})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        try:  # answer without waiting for Nagle/delayed ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.local_ip = self.connection.getsockname()[0]
        with lock:
            s = stat_for(self.local_ip)
            s["connections"] += 1
            s["max_connections"] = max(s["max_connections"], s["connections"])

    def finish(self):
        try:
            super().finish()
        finally:
            with lock:
                stat_for(self.local_ip)["connections"] -= 1

    def send(self, code, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        no_body = code in (204, 304) or code < 200  # these never carry a body
        if no_body:
            body = b""
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self, sink=None):
        """Read the request body in chunks; returns (bytes read, kept data)."""
        n = int(self.headers.get("Content-Length") or 0)
        kept = []
        total = 0
        while total < n:
            chunk = self.rfile.read(min(1 << 20, n - total))
            if not chunk:
                break
            total += len(chunk)
            if sink:
                sink(chunk)
            elif total <= (1 << 20):
                kept.append(chunk)
        return total, b"".join(kept)

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = u.path.strip("/").split("/")
        name = parts[0]
        if name == "echo":
            n, data = self.read_body()
            body = {"method": self.command, "path": u.path, "query": q,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": data.decode("latin-1"), "bytes": n,
                    "body_sha256": hashlib.sha256(data).hexdigest(),
                    "peer_port": self.client_address[1]}
            return self.send(200, json.dumps(body), "application/json")
        self.read_body(sink=lambda c: None)
        if name == "status":
            code = int(parts[1])
            return self.send(code, "status %d" % code)
        if name == "flaky":
            key = parts[1]
            fail = int(q.get("fail", "2"))
            with lock:
                k = flaky_counts.get(key, 0)
                flaky_counts[key] = k + 1
                flaky_times.setdefault(key, []).append(time.monotonic())
            if k < fail:
                after = q.get("after", "1")
                if after.startswith("date:"):
                    after = email.utils.formatdate(time.time() + float(after[5:]), usegmt=True)
                hdrs = [("Retry-After", after)] if k == 0 and after != "none" else []
                return self.send(int(q.get("status", "503")), "busy", headers=hdrs)
            return self.send(200, "ok after %d" % (k + 1))
        if name == "attempts":
            with lock:
                return self.send(200, json.dumps(flaky_times.get(parts[1], [])), "application/json")
        if name == "never":
            time.sleep(3600)
            return
        if name == "slow":
            time.sleep(int(q.get("ms", "50")) / 1000)
            return self.send(200, "ok")
        if name == "conc":
            with lock:
                for key in (self.local_ip, "all"):
                    s = stat_for(key)
                    s["inflight"] += 1
                    s["requests"] += 1
                    s["max_inflight"] = max(s["max_inflight"], s["inflight"])
            try:
                time.sleep(int(q.get("ms", "20")) / 1000)
            finally:
                with lock:
                    stat_for(self.local_ip)["inflight"] -= 1
                    stat_for("all")["inflight"] -= 1
            return self.send(200, "ok " + q.get("i", ""))
        if name == "stats":
            with lock:
                return self.send(200, json.dumps(stats), "application/json")
        if name == "drip":
            return self.drip(int(parts[1]), int(q.get("chunks", "10")), int(q.get("ms", "100")))
        if name == "break":
            return self.broken(parts[1])
        if name == "cookies":
            return self.send(200, "cookies", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        if name == "hash":
            with lock:
                h = hashes.get(parts[1])
            return self.send(200 if h else 404, h or "no such id")
        return self.send(404, "no route " + u.path)

    def drip(self, n, chunks, ms):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        sizes = [n // chunks + (1 if i < n % chunks else 0) for i in range(chunks)]
        for i, size in enumerate(sizes):
            if i:
                time.sleep(ms / 1000)
            self.wfile.write(b"d" * size)
            self.wfile.flush()

    def broken(self, how):
        self.close_connection = True
        if how == "close":
            return
        if how == "truncate":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self.wfile.flush()
            return
        if how == "reset":  # closed here, before the server's shutdown() could send a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if how == "garbage":
            self.wfile.write(b"SPDY/9 banana\r\n\r\n")
            self.wfile.flush()
            return

    def upload(self):
        h = hashlib.sha256()
        n, _ = self.read_body(sink=h.update)
        self.send(200, json.dumps({"bytes": n, "sha256": h.hexdigest()}), "application/json")

    def download(self, size, key):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        h = hashlib.sha256()
        left = size
        block = os.urandom(1 << 20)
        i = 0
        while left > 0:
            # a fresh 1 MiB block every time: cheap and never repeating
            chunk = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:min(len(block), left)]
            chunk = chunk[:left]
            h.update(chunk)
            self.wfile.write(chunk)
            left -= len(chunk)
            i += 1
        with lock:
            hashes[key] = h.hexdigest()

    def dispatch(self):
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        if parts[0] == "upload":
            return self.upload()
        if parts[0] == "download" and self.command == "GET":
            q = dict(urllib.parse.parse_qsl(u.query))
            return self.download(int(parts[1]), q.get("id", "last"))
        return self.route()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", action="append")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = ap.parse_args()
    servers = []
    for addr in a.bind or ["127.0.0.1"]:
        srv = Server((addr, a.port), Handler)
        if a.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(a.tls[0], a.tls[1])
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        servers.append(srv)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("listening on", a.port, flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    sys.exit(main())
