#!/usr/bin/env python3
"""HTTPS client with urllib and an SSL context that trusts the test's self-signed cert.

Usage: tls_client.py CERT URL...  Prints one status per URL.
"""
import ssl
import sys
import urllib.request

ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
for url in sys.argv[2:]:
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        r.read()
        print(r.status, flush=True)
