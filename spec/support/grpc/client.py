#!/usr/bin/python3
"""A real gRPC client for the specs: calls shadowtest.Users (users.proto)
with Debian's python3-grpcio and the message classes protoc made (--pb-dir).

  client.py --pb-dir DIR --target HOST:PORT CALL [options]
    CALL: get (--id N), list (--count N), fail (--code N --message S),
          slow (--delay-ms N), import (client streaming: --count users,
          each with --pad bytes of bio)
    --timeout S     deadline of each call (grpc-timeout), in seconds
    --gzip          compress the request message (grpc-encoding: gzip; gRPC
                    sends a message gzip does not shrink uncompressed, so
                    give get a --pad)
    --repeat N      N calls on one channel (one JSON line each)
    --metadata k=v  a request header (repeatable)
    --pad N         (get) N bytes of padding in the request

Prints one JSON line per call: {"code": "OK", "status": 0, "details": ...,
"messages": [...], "trailers": {...}}, messages as json_format dicts with
the proto's field names. Exits with the last call's status number (0 OK,
4 DEADLINE_EXCEEDED, 5 NOT_FOUND, 14 UNAVAILABLE...), 100 on bad usage.

  client.py --pb-dir DIR frame (--id N --pad N | --user N --bio N) > FILE
writes one length-prefixed gRPC message (a request, or a User reply) to
stdout, for h2load -d, curl --data-binary and canned backends.
"""
import argparse
import json
import struct
import sys


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--pb-dir", required=True)
    p.add_argument("--target", default="")
    p.add_argument("call", choices=["get", "list", "fail", "slow", "import", "frame"])
    p.add_argument("--id", type=int, default=7)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--code", type=int, default=0)
    p.add_argument("--message", default="")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--user", type=int, default=None)
    p.add_argument("--bio", type=int, default=0)
    try:
        return p.parse_args()
    except SystemExit:
        sys.exit(100)


ARGS = parse_args()
sys.path.insert(0, ARGS.pb_dir)
import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
import users_pb2 as pb  # noqa: E402

PATH = "/shadowtest.Users/"


def frame():
    if ARGS.user is not None:
        msg = pb.User(id=ARGS.user, name="user-%d" % ARGS.user,
                      email="u%d@example.com" % ARGS.user, role=pb.ROLE_USER,
                      address=pb.Address(city="Paris", street="rue"),
                      tags=["a", "b"], bio="b" * ARGS.bio)
        msg.scores["x"] = ARGS.user
    else:
        msg = pb.GetUserRequest(id=ARGS.id, pad="p" * ARGS.pad)
    data = msg.SerializeToString()
    sys.stdout.buffer.write(struct.pack(">BI", 0, len(data)) + data)


def to_dict(m):
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


def one_call(channel):
    md = [tuple(kv.split("=", 1)) for kv in ARGS.metadata]
    kw = {"metadata": md or None, "timeout": ARGS.timeout}
    if ARGS.gzip:
        kw["compression"] = grpc.Compression.Gzip
    out = {"messages": []}
    try:
        if ARGS.call == "list":
            fn = channel.unary_stream(
                PATH + "List", request_serializer=pb.ListRequest.SerializeToString,
                response_deserializer=pb.User.FromString)
            call = fn(pb.ListRequest(count=ARGS.count), **kw)
            for m in call:
                out["messages"].append(to_dict(m))
        elif ARGS.call == "import":
            fn = channel.stream_unary(
                PATH + "Import", request_serializer=pb.User.SerializeToString,
                response_deserializer=pb.ImportSummary.FromString)
            users = (pb.User(id=i + 1, name="user-%d" % (i + 1), bio="p" * ARGS.pad)
                     for i in range(ARGS.count))
            m, call = fn.with_call(users, **kw)
            out["messages"].append(to_dict(m))
        else:
            if ARGS.call == "get":
                name, req, reply = "Get", pb.GetUserRequest(
                    id=ARGS.id, pad="p" * ARGS.pad), pb.User
            elif ARGS.call == "fail":
                name, req, reply = "Fail", pb.FailRequest(
                    code=ARGS.code, message=ARGS.message), pb.User
            else:
                name, req, reply = "Slow", pb.SlowRequest(
                    delay_ms=ARGS.delay_ms), pb.SlowReply
            fn = channel.unary_unary(PATH + name,
                                     request_serializer=type(req).SerializeToString,
                                     response_deserializer=reply.FromString)
            m, call = fn.with_call(req, **kw)
            out["messages"].append(to_dict(m))
        code, details = call.code(), call.details()
        trailers = call.trailing_metadata()
    except grpc.RpcError as e:
        code, details = e.code(), e.details()
        trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    out["code"] = code.name
    out["status"] = code.value[0]
    out["details"] = details or ""
    out["trailers"] = {k: v for k, v in (trailers or ()) if not k.endswith("-bin")}
    print(json.dumps(out), flush=True)
    return out["status"]


def main():
    if ARGS.call == "frame":
        frame()
        return 0
    if not ARGS.target:
        print("--target is required", file=sys.stderr)
        return 100
    status = 0
    # A proxy from the environment would stand between the spec and its peer.
    with grpc.insecure_channel(ARGS.target,
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        for _ in range(ARGS.repeat):
            status = one_call(channel)
    return status


if __name__ == "__main__":
    sys.exit(main())
