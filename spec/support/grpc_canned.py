"""A canned gRPC backend over h2c (prior knowledge), on Debian's python3-h2,
for specs that need exact reply bytes: a call's reply is a file's messages
and its status comes as trailers, as a real gRPC server sends them.

usage: grpc_canned.py PORT DIR SIDE. For a path containing GetUser the body
is DIR/unary_SIDE.body, for ListUsers DIR/stream_SIDE.body (side b of
ListUsers ends with grpc-status 13, grpc-message boom), else no message.
Prints "listening" once bound.
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

DIR, SIDE = sys.argv[2], sys.argv[3]


def body_for(path):
    name = None
    if "GetUser" in path:
        name = "unary_" + SIDE
    elif "ListUsers" in path:
        name = "stream_" + SIDE
    if not name:
        return b""
    with open("%s/%s.body" % (DIR, name), "rb") as f:
        return f.read()


def answer(conn, sid, path):
    trailers = [("grpc-status", "0")]
    if "ListUsers" in path and SIDE == "b":
        trailers = [("grpc-status", "13"), ("grpc-message", "boom")]
    conn.send_headers(sid, [(":status", "200"),
                            ("content-type", "application/grpc")])
    body = body_for(path)
    if body:
        conn.send_data(sid, body)
    conn.send_headers(sid, trailers, end_stream=True)


def serve(sock):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths = {}
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        try:
            events = conn.receive_data(data)
        except Exception:
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                paths[ev.stream_id] = dict(ev.headers).get(b":path", b"").decode()
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
            if isinstance(ev, h2.events.StreamEnded):
                # The reply once the request is whole, as grpcio does.
                answer(conn, ev.stream_id, paths.pop(ev.stream_id, "/"))
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    print("listening", flush=True)
    while True:
        s, _ = srv.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
