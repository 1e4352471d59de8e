"""Partial writes on purpose: `serve PORT` answers every request on a keep-alive
connection with a 2 MiB body through asyncio, whose non-blocking sends into a small send
buffer move only part of what they ask, then send the rest again; `fetch PORT N` makes N
requests on one connection and reads each answer slowly through a small receive buffer.
`fetch` prints the status and body length of each answer."""

import asyncio
import socket
import sys
import time

BODY = 2 * 1024 * 1024


async def handle(reader, writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + b"Content-Length: %d\r\n\r\n" % BODY
                + b"x" * BODY
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def serve(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def fetch(port, n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", port))
    for i in range(n):
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: test\r\n\r\n" % i)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(
            [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
            .split(b":")[1]
        )
        got = len(body)
        while got < length:
            got += len(s.recv(4096))
            time.sleep(0.0002)
        print(head.split(b" ")[1].decode(), got, flush=True)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        fetch(int(sys.argv[2]), int(sys.argv[3]))
