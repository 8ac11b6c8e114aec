#!/usr/bin/python3
"""Holds N idle HTTP/2 connections (h2c with prior knowledge) to a server,
for scripts/bench-grpc's memory-per-connection row: each connection sends
the preface and SETTINGS, makes one GET (so the server has set up all it
keeps for a connection that has served a request), reads the whole
response, then stays open and silent. Prints `HELD n` once all n are idle,
then waits until its stdin closes (or SIGTERM) and closes them.

  h2_idle.py PORT N PATH     (Debian python3-h2)
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events


def open_one(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                       (":authority", "127.0.0.1:%d" % port),
                       (":path", path)], end_stream=True)
    s.sendall(c.data_to_send())
    done = False
    while not done:
        data = s.recv(65536)
        if not data:
            raise SystemExit("connection closed before the response ended")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length,
                                            ev.stream_id)
            if isinstance(ev, h2.events.StreamEnded):
                done = True
            if isinstance(ev, h2.events.StreamReset):
                raise SystemExit("stream reset: %r" % ev)
        out = c.data_to_send()
        if out:
            s.sendall(out)
    return s


def main():
    port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    held = [open_one(port, path) for _ in range(n)]
    print("HELD %d" % len(held), flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
