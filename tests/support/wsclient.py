#!/usr/bin/env python3
"""Minimal WebSocket client for the tests (stdlib only).

usage: wsclient.py [--cafile FILE] [--expect N] URL [MESSAGE...]
Connects (ws:// or wss://, verified against --cafile), sends every MESSAGE as a
text message, prints the status line and every message received (one per
line) until N messages arrived (default: as many as were sent) or the server
closes, then closes. Exit 0 when the handshake succeeded, 1 otherwise.
"""
import base64, os, socket, ssl, struct, sys, urllib.parse


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(s):
    b1, b2 = recv_exact(s, 2)
    opcode = b1 & 0x0F
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    if b2 & 0x80:
        mask = recv_exact(s, 4)
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(s, n)))
    else:
        data = recv_exact(s, n)
    return opcode, data


def send_frame(s, opcode, data):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(data)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    s.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))


def main():
    args = sys.argv[1:]
    cafile = None
    expect = None
    while args and args[0].startswith("--"):
        if args[0] == "--cafile":
            cafile = args[1]
        elif args[0] == "--expect":
            expect = int(args[1])
        args = args[2:]
    url = urllib.parse.urlparse(args[0])
    messages = args[1:]
    s = socket.create_connection((url.hostname, url.port), timeout=10)
    if url.scheme == "wss":
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        s = ctx.wrap_socket(s, server_hostname=url.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(s, 1)
    status = head.split(b"\r\n")[0].decode()
    print(status, flush=True)
    if " 101 " not in status + " ":
        return 1
    for m in messages:
        send_frame(s, 1, m.encode())
    expect = len(messages) if expect is None else expect
    got = 0
    while got < expect:
        try:
            opcode, data = read_frame(s)
        except (EOFError, OSError):
            break
        if opcode == 8:
            print("CLOSE", struct.unpack("!H", data[:2])[0] if len(data) >= 2 else "", flush=True)
            break
        if opcode in (1, 2):
            print(data.decode(errors="replace"), flush=True)
            got += 1
    try:
        send_frame(s, 8, struct.pack("!H", 1000))
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
