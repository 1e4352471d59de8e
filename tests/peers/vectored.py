"""Vectored I/O on both sides, as servers that write a head and a body from separate
buffers do. `serve PORT` reads each request with `recvmsg_into` into two small buffers and
answers with one `sendmsg` of several buffers: the status line, the headers, then the body
cut in pieces; the body's size and the number of pieces come from the path,
`/vec/SIZE/PIECES`. `fetch PORT SIZE:PIECES...` sends each request with `sendmsg` of three
buffers and reads each answer with `recvmsg_into`; it prints the status and body length of
each."""

import socket
import sys
import threading


def recv_until_head(sock, data):
    """Reads into two buffers at a time until `data` holds a whole head."""
    while b"\r\n\r\n" not in data:
        a, b = bytearray(7), bytearray(4096)
        n, _, _, _ = sock.recvmsg_into([a, b])
        if n == 0:
            return None
        data += bytes((a + b)[:n])
    return data


def pieces(body, count):
    step = max(1, -(-len(body) // count))
    return [body[i : i + step] for i in range(0, len(body), step)] or [b""]


def answer(conn):
    data = b""
    while True:
        data = recv_until_head(conn, data)
        if data is None:
            return
        head, data = data.split(b"\r\n\r\n", 1)
        path = head.split(b" ")[1].decode()
        _, _, size, count = path.split("/")
        body = b"v" * int(size)
        buffers = [
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body),
        ] + pieces(body, int(count))
        while buffers:
            sent = conn.sendmsg(buffers)
            while sent:
                if sent >= len(buffers[0]):
                    sent -= len(buffers.pop(0))
                else:
                    buffers[0] = buffers[0][sent:]
                    sent = 0


def serve(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def fetch(port, specs):
    s = socket.create_connection(("127.0.0.1", port))
    for spec in specs:
        size, count = spec.split(":")
        s.sendmsg(
            [b"GET /vec/%s/%s HTTP/1.1\r\n" % (size.encode(), count.encode()),
             b"Host: vectored.test\r\n",
             b"\r\n"]
        )
        data = recv_until_head(s, b"")
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(
            [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
            .split(b":")[1]
        )
        while len(body) < length:
            a, b = bytearray(100), bytearray(8192)
            n, _, _, _ = s.recvmsg_into([a, b])
            body += bytes((a + b)[:n])
        print(head.split(b" ")[1].decode(), len(body), flush=True)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        fetch(int(sys.argv[2]), sys.argv[3:])
