#!/usr/bin/env python3
"""An HTTP/2 server reached through the cleartext upgrade (`Upgrade: h2c`, RFC 7540 3.2).

The end-to-end tests use it to watch `curl --http2 http://...` switch from HTTP/1.1 to
HTTP/2 on one connection; nginx and nghttpd do not offer the upgrade. Built on hyper-h2,
which `cargo xtask setup --peers` installs into target/pyenv.

Usage: target/pyenv/bin/python tests/peers/h2c_upgrade.py PORT
Prints 'ready' once listening on 127.0.0.1:PORT, then serves until killed.

Every request, HTTP/1.1 or HTTP/2, gets `ok {path}\\n` as text/plain; the status is NNN
for a path `/status/NNN` (200..599) and 200 otherwise. A request without the upgrade is
answered in HTTP/1.1 and the connection closed.
"""
import re
import socket
import sys
import threading
from http.client import responses

import h2.config
import h2.connection
import h2.events
import h2.exceptions

MAX_HEAD = 64 * 1024


def respond(path):
    """(status, body) for a request path."""
    m = re.fullmatch(r"/status/(\d{3})", path.split("?", 1)[0])
    status = int(m.group(1)) if m and 200 <= int(m.group(1)) <= 599 else 200
    return status, f"ok {path}\n".encode()


def read_head(conn):
    """The request head (request line, lowercased headers) and the bytes read past it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


def send_h2_response(h2conn, stream_id, path):
    status, body = respond(path)
    h2conn.send_headers(stream_id, [
        (":status", str(status)),
        ("content-type", "text/plain"),
        ("content-length", str(len(body))),
    ])
    h2conn.send_data(stream_id, body, end_stream=True)


def serve_h2(conn, target, settings, rest):
    """Switch to HTTP/2, answer the upgraded request as stream 1, then serve new streams."""
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    h2conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    padded = settings + "=" * (-len(settings) % 4)  # base64url without padding on the wire
    h2conn.initiate_upgrade_connection(settings_header=padded.encode())
    send_h2_response(h2conn, 1, target)
    conn.sendall(h2conn.data_to_send())
    data = rest  # the client preface, if it came with the request head
    while True:
        if not data:
            data = conn.recv(65536)
            if not data:
                return
        events = h2conn.receive_data(data)
        data = b""
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                send_h2_response(h2conn, event.stream_id, dict(event.headers).get(":path", "/"))
            elif isinstance(event, h2.events.DataReceived):
                h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                conn.sendall(h2conn.data_to_send())
                return
            # StreamEnded: the request is complete; it was answered on RequestReceived.
        conn.sendall(h2conn.data_to_send())


def handle(conn):
    with conn:
        try:
            conn.settimeout(10)
            parsed = read_head(conn)
            if parsed is None:
                return
            request_line, headers, rest = parsed
            parts = request_line.split(" ")
            target = parts[1] if len(parts) == 3 else "/"
            # A request body (rare with an upgrade) precedes the switch: skip it.
            length = int(headers.get("content-length", "0") or 0)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            rest = rest[length:]
            upgrade = [t.strip().lower() for t in headers.get("upgrade", "").split(",")]
            if "h2c" in upgrade and "http2-settings" in headers:
                serve_h2(conn, target, headers["http2-settings"], rest)
                return
            status, body = respond(target)
            conn.sendall(
                f"HTTP/1.1 {status} {responses.get(status, 'Unknown')}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except (OSError, ValueError, h2.exceptions.ProtocolError):
            pass


def main():
    port = int(sys.argv[1])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
