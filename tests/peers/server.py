#!/usr/bin/env python3
"""HTTP/1.1 test server: keep-alive GET/HEAD, and POST with a Content-Length or chunked body.

Usage: server.py PORT [BIND_ADDR [CERT KEY]]  (with CERT and KEY it serves HTTPS)
"""
import http.server
import socket
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, head_only=False):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self):
        self._reply(200, ("hello " + self.path + "\n").encode())

    def do_HEAD(self):
        self._reply(200, ("hello " + self.path + "\n").encode(), head_only=True)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                self.rfile.read(size)
                self.rfile.readline()
                total += size
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        return n

    def do_POST(self):
        n = self._read_body()
        self._reply(201, ("got %d bytes\n" % n).encode())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1])
    addr = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    if ":" in addr:
        Server.address_family = socket.AF_INET6
    server = Server((addr, port), Handler)
    if len(sys.argv) > 4:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
