#!/usr/bin/env python3
"""A portal in front of a real iSCSI target that is "reloading" for its first
connections: the first --close N connections are accepted and closed at once
(what an initiator sees while a target restarts its listener), every later one
is forwarded to --to PORT. Prints the port it listens on, then one line per
connection ("closed" or "forwarded").

With --drop-logout the portal closes a forwarded connection when the
initiator sends a Logout Request (opcode 0x06) instead of passing it on: a
target that drops the session rather than answer the logout. The logout is
recognised at the start of what one recv() returns (an idle session's next
PDU arrives alone); the portal prints "dropped at logout". stdlib only.

  reloading_portal.py --close 2 --to 3260      # listens on a free port
  reloading_portal.py --close 1 --to 3260 --host ::1
"""
import argparse
import socket
import sys
import threading


LOGOUT_REQUEST = 0x06


def pipe(src, dst, drop_logout=False):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if drop_logout and len(data) >= 48 and data[0] & 0x3F == LOGOUT_REQUEST:
                print("dropped at logout", flush=True)
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
    ap.add_argument("--drop-logout", action="store_true", help="close the connection at a Logout Request")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (IPv6: ::1)")
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, 0))
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
        threading.Thread(target=pipe, args=(conn, up, args.drop_logout), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
