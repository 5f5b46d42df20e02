#!/usr/bin/env python3
"""A portal in front of a real iSCSI target that is "reloading" for its first
connections: the first --close N connections are accepted and closed at once
(what an initiator sees while a target restarts its listener), every later one
is forwarded to --to PORT. Prints the port it listens on, then one line per
connection ("closed" or "forwarded"). stdlib only.

  reloading_portal.py --close 2 --to 3260      # listens on a free port
"""
import argparse
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--close", type=int, required=True)
    ap.add_argument("--to", type=int, required=True)
    args = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    print(srv.getsockname()[1], flush=True)
    n = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        if n <= args.close:
            conn.close()
            print("closed", flush=True)
            continue
        up = socket.create_connection(("127.0.0.1", args.to))
        print("forwarded", flush=True)
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
