#!/usr/bin/env python3
"""A plain TCP echo exchange (not HTTP): server and client in one process.

Usage: echo.py PORT ROUNDS. Prints 'ok N' after N round trips.
"""
import socket
import sys
import threading

port, rounds = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)


def serve():
    conn, _ = srv.accept()
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)


t = threading.Thread(target=serve, daemon=True)
t.start()
c = socket.create_connection(("127.0.0.1", port))
for i in range(rounds):
    msg = b"hello echo %d, this is not HTTP\n" % i
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += c.recv(4096)
    assert got == msg, got
c.close()
t.join(5)
print("ok", rounds, flush=True)
