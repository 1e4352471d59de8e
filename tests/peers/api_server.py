#!/usr/bin/env python3
"""A small user-directory API for the inventory tests. It serves part of api_spec.yaml,
one endpoint the spec does not declare (/api/v1/admin/debug) and one it declares
deprecated (/api/v1/legacy/report).

Usage: api_server.py PORT
"""
import http.server
import json
import re
import socket
import sys

USERS = {"1": "ada", "2": "grace", "3": "linus"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/v1/users":
            return self._json(200, sorted(USERS.values()))
        m = re.fullmatch(r"/api/v1/users/([^/]+)", path)
        if m:
            name = USERS.get(m.group(1))
            return self._json(200 if name else 404, {"name": name} if name else {"error": "no such user"})
        if path == "/api/v1/admin/debug":
            return self._json(200, {"threads": 1})
        if path == "/api/v1/legacy/report":
            return self._json(200, {"report": "old"})
        self._json(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if self.path.split("?", 1)[0] == "/api/v1/users":
            return self._json(201, {"id": "4"})
        self._json(404, {"error": "not found"})


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
