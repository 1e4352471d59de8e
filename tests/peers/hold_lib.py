#!/usr/bin/env python3
"""Maps a shared library and keeps it mapped, optionally from inside a new root, so that the
agent meets it in /proc/PID/maps the way it meets a container's libraries.

Usage: hold_lib.py LIBRARY [ROOT]
Loads LIBRARY (a path, resolved now, on the host), then chroots into ROOT if given, prints
"ready" and sleeps until killed. Its maps keep naming LIBRARY's path, which the agent must
resolve inside ROOT, the process's root from then on.
"""
import ctypes
import os
import sys
import time

ctypes.CDLL(sys.argv[1])
if len(sys.argv) > 2:
    os.chroot(sys.argv[2])
    os.chdir("/")
print("ready", flush=True)
while True:
    time.sleep(60)
