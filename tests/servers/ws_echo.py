#!/usr/bin/env python3
"""WebSocket echo server for sbot.ws tests (stdlib only).

usage: ws_echo.py PORT [--tls CERT KEY [--tls-bio]] [--bad-accept] [--refuse] [--bad-frame-after-upgrade]

Echoes every text/binary message. Special messages: "silence" gets no reply,
"close" makes the server send a close frame (1000), "ping" makes it send a
ping then "pinged", "big:N" replies with N bytes of 'x', "headers" replies
with the request headers seen, as JSON, "badping" answers a ping frame with
a 200-byte payload (control frames carry at most 125) followed by 4000 more
bytes, "badutf8" a text frame that is not UTF-8, "drop" closes the TCP
connection without a close frame, "reset" resets it (RST), "frag:N:K" sends
N bytes ('a'..'z' repeated) as one text message in K fragments with a ping
between the first two, "file:PATH" sends the content of the file PATH as
one text message.
--tls-bio runs TLS through memory BIOs, so the server decides how the TLS
records it writes are cut into writes on the socket: "slowrecord:N" then
sends a text message of N bytes of 'x' as one TLS record whose first half
goes out at once and the rest a second later (a client that reads ahead
holds a partial record meanwhile).
--bad-frame-after-upgrade sends that bad ping and the 4000 bytes in the same
write as the 101 response (so the client reads them with the response head).
"""
import base64, hashlib, json, socket, ssl, struct, sys, threading, time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# A ping (opcode 9) whose 200-byte payload breaks RFC 6455 5.5 (control
# frames: at most 125 bytes), then 4000 bytes of what follows.
BAD_PING = bytes([0x89, 126]) + struct.pack("!H", 200) + b"p" * 200 + b"j" * 4000


class BioConn:
    """A server-side TLS connection over memory BIOs (the socket API serve()
    uses), which can also split one TLS record across two socket writes."""

    def __init__(self, ctx, sock):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise EOFError
        self._flush()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(16384)
        if data:
            self.incoming.write(data)
        return data

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    def sendall(self, data):
        self.tls.write(data)
        self._flush()

    def send_split(self, data, pause):
        self.tls.write(data)
        record = self.outgoing.read()
        self.sock.sendall(record[:len(record) // 2])
        time.sleep(pause)
        self.sock.sendall(record[len(record) // 2:])

    def shutdown(self, how):
        self.sock.shutdown(how)

    def setsockopt(self, *a):
        self.sock.setsockopt(*a)

    def close(self):
        self.sock.close()


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def frame(opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def send_frame(conn, opcode, payload):
    conn.sendall(frame(opcode, payload))


def serve(conn, args):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "--refuse" in args:
        body = b'{"message": "upgrade refused by test"}'
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return
    key = headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if "--bad-accept" in args:
        accept = base64.b64encode(b"0" * 20).decode()
    response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()
    if "--bad-frame-after-upgrade" in args:
        response += BAD_PING
    conn.sendall(response)
    while True:
        b1, b2 = recv_exact(conn, 2)
        opcode = b1 & 0x0F
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(conn, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(conn, 8))[0]
        if not b2 & 0x80:
            send_frame(conn, 8, struct.pack("!H", 1002) + b"client frames must be masked")
            return
        mask = recv_exact(conn, 4)
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(conn, n)))
        if opcode == 8:
            send_frame(conn, 8, payload[:2])
            return
        if opcode in (9, 10):
            continue
        text = payload.decode(errors="replace")
        if text == "silence":
            continue
        if text == "close":
            send_frame(conn, 8, struct.pack("!H", 1000) + b"bye")
            continue
        if text == "ping":
            send_frame(conn, 9, b"p")
            send_frame(conn, 1, b"pinged")
            continue
        if text.startswith("big:"):
            send_frame(conn, 1, b"x" * int(text[4:]))
            continue
        if text == "badping":
            conn.sendall(BAD_PING)
            continue
        if text.startswith("file:"):
            with open(text[5:], "rb") as f:
                send_frame(conn, 1, f.read())
            continue
        if text.startswith("frag:"):
            _, n, k = text.split(":")
            n, k = int(n), int(k)
            data = bytes(97 + i % 26 for i in range(n))
            size = -(-n // k)
            parts = [data[i:i + size] for i in range(0, n, size)] or [b""]
            for i, part in enumerate(parts):
                opcode = 1 if i == 0 else 0
                fin = 0x80 if i == len(parts) - 1 else 0
                head = bytes([fin | opcode])
                m = len(part)
                if m < 126:
                    head += bytes([m])
                elif m < 65536:
                    head += bytes([126]) + struct.pack("!H", m)
                else:
                    head += bytes([127]) + struct.pack("!Q", m)
                conn.sendall(head + part)
                if i == 0:
                    send_frame(conn, 9, b"mid")
            continue
        if text == "drop":
            conn.shutdown(socket.SHUT_RDWR)
            return
        if text == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        if text.startswith("slowrecord:"):
            n = int(text[11:])
            conn.send_split(frame(1, b"x" * n), 1.0)
            continue
        if text == "badutf8":
            send_frame(conn, 1, b"caf\xc3(")
            continue
        if text == "headers":
            send_frame(conn, 1, json.dumps(headers).encode())
            continue
        send_frame(conn, opcode, payload)


def main():
    args = sys.argv[1:]
    port = int(args[0])
    ctx = None
    if "--tls" in args:
        i = args.index("--tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[i + 1], args[i + 2])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        if ctx:
            try:
                if "--tls-bio" in args:
                    conn = BioConn(ctx, conn)
                else:
                    conn = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError, EOFError):
                conn.close()
                continue

        def run(c=conn):
            try:
                serve(c, args)
            except (EOFError, OSError):
                pass
            finally:
                c.close()
        threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    main()
