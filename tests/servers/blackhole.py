#!/usr/bin/env python3
"""Two kinds of unresponsive peers on loopback, for timeout tests (stdlib only).

  --mode silent    accepts connections and reads, never answers (total timeout);
                   prints "accepted" for every connection
  --mode nosyn     a listening socket whose accept queue is kept full and never
                   accepted, so the kernel drops further SYNs: connecting hangs
                   (connect timeout) although the port is open
"""
import argparse
import socket
import sys
import threading
import time


def silent(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    print("listening", port, flush=True)
    conns = []

    def drain(c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    while True:
        c, _ = srv.accept()
        print("accepted", flush=True)
        conns.append(c)
        threading.Thread(target=drain, args=(c,), daemon=True).start()


def nosyn(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(0)
    fillers = []
    # fill the accept queue (backlog 0 holds one connection) with our own
    # connections that are never accepted; later SYNs are dropped
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
        time.sleep(0.05)
    print("listening", port, flush=True)
    while True:
        time.sleep(3600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["silent", "nosyn"], required=True)
    a = ap.parse_args()
    (silent if a.mode == "silent" else nosyn)(a.port)


if __name__ == "__main__":
    sys.exit(main())
