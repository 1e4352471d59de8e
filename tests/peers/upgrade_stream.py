"""A connection that leaves HTTP: `serve PORT` answers an upgrade request with
`101 Switching Protocols` and then echoes whatever comes; `stream PORT N` upgrades, waits a
moment, then sends N messages of 200 bytes and reads each echo. Neither side speaks real
WebSocket framing: after the 101, the bytes are simply not HTTP."""

import socket
import sys
import time

RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n"
)


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def serve(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        if read_head(conn) is None:
            conn.close()
            continue
        conn.sendall(RESPONSE)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            conn.sendall(chunk)
        conn.close()


def stream(port, n):
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    s.sendall(
        b"GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = read_head(s)
    print(head.split(b"\r\n")[0].decode(), flush=True)
    time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 1.0)
    message = b"m" * 200
    for _ in range(n):
        s.sendall(message)
        got = 0
        while got < len(message):
            got += len(s.recv(len(message) - got))
    s.close()
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        stream(int(sys.argv[2]), int(sys.argv[3]))
