#!/usr/bin/env python3
"""Keeps one HTTP/1.1 connection open across the agent's start.

Usage: preopen_client.py PORT. Sends GET /before, prints 'ready', waits for a line on stdin,
sends GET /after on the same connection, prints 'done STATUS'.
"""
import http.client
import sys

port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", "/before")
r = c.getresponse()
r.read()
print("ready", flush=True)
sys.stdin.readline()
c.request("GET", "/after?when=later")
r = c.getresponse()
r.read()
print("done", r.status, flush=True)
c.close()
