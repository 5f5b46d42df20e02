#!/usr/bin/env python3
"""Counts the TLS records a server sends (stdlib only).

usage: tls_records.py TARGET_PORT OUT_FILE
Listens on 127.0.0.1 (a free port, printed on stdout as "port N"), relays one
connection to 127.0.0.1:TARGET_PORT byte for byte, and reads the record
headers of what the server sends (the TLS record layer's 5-byte headers are
not encrypted). When the connection ends it writes "records N bytes M" (the
server's records and their payload bytes) to OUT_FILE and exits.
"""
import socket, sys, threading


def pump(src, dst, on_data=None):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if on_data:
                on_data(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    target, out = int(sys.argv[1]), sys.argv[2]
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    print("port %d" % lsock.getsockname()[1], flush=True)
    client, _ = lsock.accept()
    server = socket.create_connection(("127.0.0.1", target))
    state = {"buf": b"", "records": 0, "bytes": 0}

    def count(data):
        buf = state["buf"] + data
        while len(buf) >= 5:
            n = int.from_bytes(buf[3:5], "big")
            if len(buf) < 5 + n:
                break
            state["records"] += 1
            state["bytes"] += n
            buf = buf[5 + n:]
        state["buf"] = buf

    up = threading.Thread(target=pump, args=(client, server))
    up.start()
    pump(server, client, count)
    up.join()
    with open(out, "w") as f:
        f.write("records %d bytes %d\n" % (state["records"], state["bytes"]))


main()
