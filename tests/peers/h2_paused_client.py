"""An HTTP/2 (h2c, prior knowledge) client whose header encoder indexes every field,
:path and :authority included (hyper-h2's default), so that requests repeated later on
the same connection refer to header table entries by index alone.

usage: h2_paused_client.py PORT PATH,PATH,... PAUSE_AFTER

Sends the paths one after another on one connection. After PAUSE_AFTER responses it
prints "paused" and waits for a line on stdin (a test starts the agent meanwhile), then
sends the rest. Prints one JSON line: {"results": [[path, status], ...]}.
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def main():
    port = int(sys.argv[1])
    paths = sys.argv[2].split(",")
    pause_after = int(sys.argv[3])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    results = []
    for i, path in enumerate(paths):
        if i == pause_after:
            print("paused", flush=True)
            if not sys.stdin.readline():
                sys.exit("stdin closed while paused")
        results.append([path, request(sock, conn, port, path)])
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps({"results": results}), flush=True)


def request(sock, conn, port, path):
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "GET"),
            (":path", path),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            ("x-tenant", "acme-corporation"),
        ],
        end_stream=True,
    )
    sock.sendall(conn.data_to_send())
    status = None
    while True:
        data = sock.recv(65536)
        if not data:
            sys.exit("connection closed before the response ended")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream:
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream:
                sock.sendall(conn.data_to_send())
                return status
        sock.sendall(conn.data_to_send())


if __name__ == "__main__":
    main()
