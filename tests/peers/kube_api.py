#!/usr/bin/env python3
"""Serves recorded Kubernetes API responses over HTTPS, for the Kubernetes naming test
(a real API server cannot run on the test machines). Requires the bearer token, like
the real one, and logs each request's path to stdout.

Usage: kube_api.py PORT CERT KEY TOKEN DIR   (DIR holds pods.json, services.json, slices.json)
"""
import http.server
import os
import socket
import ssl
import sys

PORT, CERT, KEY, TOKEN, DIR = sys.argv[1:6]
ROUTES = {
    "/api/v1/pods": "pods.json",
    "/api/v1/services": "services.json",
    "/apis/discovery.k8s.io/v1/endpointslices": "slices.json",
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        print(self.path, flush=True)
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self._send(401, b'{"kind":"Status","message":"Unauthorized","code":401}')
        name = ROUTES.get(self.path.split("?", 1)[0])
        if name is None:
            return self._send(404, b'{"kind":"Status","message":"not found","code":404}')
        with open(os.path.join(DIR, name), "rb") as f:
            self._send(200, f.read())


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET
    daemon_threads = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(PORT)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
