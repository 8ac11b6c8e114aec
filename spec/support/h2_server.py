"""An HTTP/2 server (h2c, prior knowledge) for specs, on Debian's python3-h2,
that misbehaves on request: by path,

  /rst          RST_STREAM INTERNAL_ERROR instead of an answer
  /goaway-once  on the first connection only: GOAWAY refusing every stream
                (last_stream_id 0), then the connection closes; later
                connections answer as /
  /hang         no answer at all
  /trailers     200, a body, then trailers (grpc-status: 0, x-t: 1)
  anything else 200 with the body "h2 <path> conn <n>"

usage: h2_server.py PORT. Prints "listening" once bound, then one line per
connection ("conn N") and per request ("req N PATH"), flushed.
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

conns = 0
lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def serve(sock, n):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
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
                path = dict(ev.headers).get(b":path", b"").decode()
                say("req %d %s" % (n, path))
                sid = ev.stream_id
                if path == "/rst":
                    conn.reset_stream(sid, error_code=2)
                elif path == "/goaway-once" and n == 1:
                    conn.close_connection(error_code=0, last_stream_id=0)
                    sock.sendall(conn.data_to_send())
                    sock.close()
                    return
                elif path == "/hang":
                    pass
                elif path == "/trailers":
                    conn.send_headers(sid, [(":status", "200"),
                                            ("content-type", "text/plain")])
                    conn.send_data(sid, b"body")
                    conn.send_headers(sid, [("grpc-status", "0"), ("x-t", "1")],
                                      end_stream=True)
                else:
                    body = ("h2 %s conn %d" % (path, n)).encode()
                    conn.send_headers(sid, [(":status", "200"),
                                            ("content-length", str(len(body))),
                                            ("content-type", "text/plain")])
                    conn.send_data(sid, body, end_stream=True)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def main():
    global conns
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    say("listening")
    while True:
        s, _ = srv.accept()
        conns += 1
        say("conn %d" % conns)
        threading.Thread(target=serve, args=(s, conns), daemon=True).start()


if __name__ == "__main__":
    main()
