#!/usr/bin/env python3
"""Serves recorded Kubernetes API responses over HTTPS, for the fast Kubernetes naming
test (the real-cluster tests run a real API server). Requires the bearer token, like the
real one, and logs each request's path to stdout. A watch (`watch=true`) gets response
headers and then no events until its `timeoutSeconds` pass or the client goes, as a
quiet cluster's watch does.

Usage: kube_api.py PORT CERT KEY TOKEN DIR   (DIR holds pods.json, services.json, slices.json)
"""
import http.server
import os
import socket
import ssl
import sys
import time
import urllib.parse

PORT, CERT, KEY, TOKEN, DIR = sys.argv[1:6]
GROUPS = b'{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"discovery.k8s.io",' \
    b'"versions":[{"groupVersion":"discovery.k8s.io/v1","version":"v1"}],' \
    b'"preferredVersion":{"groupVersion":"discovery.k8s.io/v1","version":"v1"}}]}'
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
        path, _, query = self.path.partition("?")
        params = urllib.parse.parse_qs(query)
        if path == "/apis":
            return self._send(200, GROUPS)
        name = ROUTES.get(path)
        if name is None:
            return self._send(404, b'{"kind":"Status","message":"not found","code":404}')
        if params.get("watch") == ["true"]:
            return self._watch(int(params.get("timeoutSeconds", ["60"])[0]))
        with open(os.path.join(DIR, name), "rb") as f:
            self._send(200, f.read())

    def _watch(self, seconds):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        deadline = time.time() + min(seconds, 300)
        while time.time() < deadline:
            time.sleep(0.5)
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET
    daemon_threads = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(PORT)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
