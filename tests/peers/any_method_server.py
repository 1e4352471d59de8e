#!/usr/bin/env python3
"""HTTP/1.1 server that answers 200 to any method, with up to 300 headers and 64 KiB lines,
so that the hostile tests' requests all reach it and are answered.

Usage: any_method_server.py PORT   (prints "ready" once it listens)
"""
import http.client
import http.server
import sys

# The standard library refuses more than 100 header lines by default.
http.client._MAXHEADERS = 300


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one_request(self):
        # Any token is a method: answer it like GET instead of with 501.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            n = int(self.headers.get("Content-Length", "0") or "0")
            if n:
                self.rfile.read(n)
            body = ("%s %d\n" % (self.command, len(self.path))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()
