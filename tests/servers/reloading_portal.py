#!/usr/bin/env python3
"""A portal in front of a real iSCSI target that is "reloading" for its first
connections: the first --close N connections are accepted and closed at once
(what an initiator sees while a target restarts its listener), every later one
is forwarded to --to PORT. Prints the port it listens on, then one line per
connection ("closed" or "forwarded").

With --drop-at logout|command the portal closes a forwarded connection when
the initiator sends a Logout Request (opcode 0x06) or a SCSI Command (0x01)
instead of passing it on: a target that drops the session rather than answer
the logout, or a connection lost in the middle of a session. --drops N does
that to the first N forwarded connections only (default: every one). The PDU
is recognised at the start of what one recv() returns (an idle session's next
PDU arrives alone); the portal prints "dropped at logout" (or "command").
stdlib only.

  reloading_portal.py --close 2 --to 3260      # listens on a free port
  reloading_portal.py --close 1 --to 3260 --host ::1
  reloading_portal.py --close 0 --to 3260 --drop-at command --drops 1
"""
import argparse
import socket
import sys
import threading


OPCODES = {"command": 0x01, "logout": 0x06}


def pipe(src, dst, drop_at=None):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if drop_at and len(data) >= 48 and data[0] & 0x3F == OPCODES[drop_at]:
                print("dropped at " + drop_at, flush=True)
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
    ap.add_argument("--drop-at", choices=sorted(OPCODES), help="close the connection at this initiator PDU")
    ap.add_argument("--drops", type=int, default=-1, help="drop only the first N forwarded connections")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (IPv6: ::1)")
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, 0))
    srv.listen(16)
    print(srv.getsockname()[1], flush=True)
    n = forwarded = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        if n <= args.close:
            conn.close()
            print("closed", flush=True)
            continue
        up = socket.create_connection(("127.0.0.1", args.to))
        forwarded += 1
        print("forwarded", flush=True)
        drop = args.drop_at if args.drops < 0 or forwarded <= args.drops else None
        threading.Thread(target=pipe, args=(conn, up, drop), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
