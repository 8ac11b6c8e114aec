#!/usr/bin/python3
"""Bad HTTP/2 input for a server on 127.0.0.1, one case at a time.

    h2_bad.py PORT CASE [N]

Writes the frames by hand (hpack, from Debian's python3-h2, encodes the
header blocks), reads what the server answers until it closes or goes
quiet, and prints one JSON object: the GOAWAY's error code (or null), the
RST_STREAM codes by stream, the :status of each response, and whether the
connection was closed. The cases:

  bad_preface     a preface that starts like HTTP/2's and is not
  settings_len    a SETTINGS frame 5 bytes long (not a multiple of 6)
  no_path         a request without :path
  upper_name      a header name with an upper-case letter
  conn_header     a connection-specific header (connection: keep-alive)
  big_headers     a header list over the server's 64 KiB default
  reset_flood     N streams (default 5000) opened and reset at once
  past_window     N bytes of DATA (default 70000) sent at once, past the
                  stream's window
  many_streams    N streams (default 200) opened at once, none answered
  slow_stream     GET /big on stream 1 without ever opening its window,
                  then GET /get on stream 3: one stalls, the other is
                  answered (flow control holds back the one stream only)
  ok              one plain GET, to show the server still serves
  silent          the preface and SETTINGS, no request; waits (up to 20 s)
                  for the server to give up on it
  idle            one plain GET, then waits (up to 20 s) for the server to
                  send GOAWAY and close, as on a drain or a reload
"""
import json
import socket
import struct
import sys

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def headers(enc, sid, fields, end_stream=True):
    block = enc.encode(fields)
    flags = END_HEADERS | (END_STREAM if end_stream else 0)
    return frame(HEADERS, flags, sid, block)


def request(path="/ok", extra=()):
    return [(":method", "GET"), (":scheme", "http"), (":path", path),
            (":authority", "localhost")] + list(extra)


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def frames(self, timeout):
        """Yields (type, flags, stream, payload) until the server closes or
        nothing comes for timeout seconds."""
        self.sock.settimeout(timeout)
        while True:
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                t, f = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                yield t, f, sid, payload
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except ConnectionResetError:
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.buf += data


def run(port, case, n):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    enc = hpack.Encoder()
    dec = hpack.Decoder()
    dec.max_allowed_table_size = 1 << 16
    out = [PREFACE, frame(SETTINGS, 0, 0)]
    if case == "bad_preface":
        out = [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", frame(SETTINGS, 0, 0)]
    elif case == "settings_len":
        out.append(frame(SETTINGS, 0, 0, b"\0\3\0\0\0"))
    elif case == "no_path":
        out.append(headers(enc, 1, [(":method", "GET"), (":scheme", "http"),
                                    (":authority", "localhost")]))
    elif case == "upper_name":
        out.append(headers(enc, 1, request(extra=[("X-Upper", "1")])))
    elif case == "conn_header":
        out.append(headers(enc, 1, request(extra=[("connection",
                                                   "keep-alive")])))
    elif case == "big_headers":
        # 10 fields of 8 KiB: 80 KiB, over a 64 KiB list, each field under
        # the 16 KiB a frame holds; sent in CONTINUATION-free pieces is not
        # possible, so the block goes in HEADERS + CONTINUATION frames.
        fields = request(extra=[("x-big-%d" % i, "v" * 8192)
                                for i in range(10)])
        block = enc.encode(fields)
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        for i, c in enumerate(chunks):
            last = i == len(chunks) - 1
            if i == 0:
                out.append(frame(HEADERS, END_STREAM |
                                 (END_HEADERS if last else 0), 1, c))
            else:
                out.append(frame(9, END_HEADERS if last else 0, 1, c))
    elif case == "reset_flood":
        for i in range(n):
            sid = 2 * i + 1
            out.append(headers(enc, sid, request("/flood")))
            out.append(frame(RST, 0, sid, struct.pack(">I", 8)))  # CANCEL
    elif case == "past_window":
        out.append(headers(enc, 1, [(":method", "POST"), (":scheme", "http"),
                                    (":path", "/up"),
                                    (":authority", "localhost")],
                           end_stream=False))
        # 70000 bytes in 16 KiB frames: past the 65535 a stream starts with
        # (and no WINDOW_UPDATE is waited for).
        left = n
        while left > 0:
            k = min(left, 16384)
            left -= k
            out.append(frame(DATA, END_STREAM if left == 0 else 0, 1,
                             b"x" * k))
    elif case == "many_streams":
        for i in range(n):
            out.append(headers(enc, 2 * i + 1, request("/many"),
                               end_stream=False))
    elif case == "silent":
        pass
    elif case in ("ok", "idle"):
        out.append(headers(enc, 1, request()))
    elif case == "slow_stream":
        # The connection's window is opened wide; each stream keeps the
        # 65535 bytes it starts with.
        out.append(frame(WINDOW, 0, 0, struct.pack(">I", 1 << 30)))
        out.append(headers(enc, 1, request("/big")))
        out.append(headers(enc, 3, request("/get")))
    else:
        raise SystemExit("unknown case " + case)
    try:
        sock.sendall(b"".join(out))
    except (BrokenPipeError, ConnectionResetError):
        pass
    res = {"case": case, "goaway": None, "rst": {}, "status": {},
           "closed": False}
    reader = Reader(sock)
    ended = set()
    got = {}
    for t, f, sid, payload in reader.frames(20 if case in ("idle", "silent") else 3):
        if t == DATA:
            got[str(sid)] = got.get(str(sid), 0) + len(payload)
        if t == SETTINGS and not f & ACK:
            try:
                sock.sendall(frame(SETTINGS, ACK, 0))
            except OSError:
                pass
        elif t == GOAWAY:
            res["goaway"] = struct.unpack(">I", payload[4:8])[0]
            res["last_stream"] = struct.unpack(">I", payload[:4])[0]
        elif t == RST:
            res["rst"][str(sid)] = struct.unpack(">I", payload[:4])[0]
            ended.add(sid)
        elif t == HEADERS:
            block = payload
            if f & 0x8:  # PADDED
                block = block[1:len(block) - payload[0]]
            if f & 0x20:  # PRIORITY
                block = block[5:]
            for name, value in dec.decode(block):
                if name == ":status":
                    res["status"][str(sid)] = int(value)
            if f & END_STREAM:
                ended.add(sid)
        elif t == DATA and f & END_STREAM:
            ended.add(sid)
        if case in ("ok", "no_path", "upper_name", "conn_header",
                    "big_headers") and 1 in ended:
            break
    res["closed"] = reader.closed
    res["data"] = got
    res["ended"] = sorted(ended)
    # The refusals, counted rather than listed when there are many.
    codes = {}
    for c in res["rst"].values():
        codes[str(c)] = codes.get(str(c), 0) + 1
    res["rst_codes"] = codes
    if len(res["rst"]) > 20:
        res["rst"] = {}
    sock.close()
    return res


if __name__ == "__main__":
    port, case = int(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else (
        5000 if case == "reset_flood" else
        70000 if case == "past_window" else 200)
    print(json.dumps(run(port, case, n), sort_keys=True))
