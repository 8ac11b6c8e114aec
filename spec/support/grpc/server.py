#!/usr/bin/python3
"""A real gRPC server for the specs: shadowtest.Users (users.proto) on
Debian's python3-grpcio, wired with generic handlers so no grpc_tools are
needed, only the message classes `protoc --python_out` makes (--pb-dir).

  server.py --pb-dir DIR [--port N] [--variant FIELD] [--variant-at I]
            [--gzip] [--label NAME]

Binds 127.0.0.1 (port 0: the kernel chooses), prints `READY <port>` once
it serves, then one JSON line per call ({"rpc": path, "metadata": {...},
"time_remaining": seconds or null}),
so a spec can wait for a call instead of sleeping.

--variant makes this server the candidate that differs in one place:
  name, email, role, address.city, tags, scores, bio: that field of every
      User it sends differs (with --variant-at I, only the I-th message of
      a List stream, counting from 0); name also upper-cases the names an
      Import answers with
  status: Get answers NOT_FOUND with a grpc-message instead of a User
  message: Fail answers with another grpc-message
  count: List sends one message more
--gzip compresses every response message (grpc-encoding: gzip).
"""
import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "shadowtest.Users"


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--pb-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--variant", default="")
    p.add_argument("--variant-at", type=int, default=-1)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--label", default="server")
    return p.parse_args()


ARGS = parse_args()
sys.path.insert(0, ARGS.pb_dir)
import users_pb2 as pb  # noqa: E402  (made by protoc at test time)


# Calls run on several threads: print writes the line and its newline
# separately, so two calls at once could share a line.
LOG_LOCK = threading.Lock()


def log(rpc, context):
    md = {k: v for k, v in context.invocation_metadata()
          if not k.endswith("-bin")}
    # time_remaining: seconds left of the call's deadline (grpc-timeout),
    # None without one; it shows whether a proxy passed the deadline on.
    line = json.dumps({"rpc": rpc, "label": ARGS.label, "metadata": md,
                       "time_remaining": context.time_remaining()})
    with LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def make_user(uid):
    # One map entry only: the order of several entries on the wire is the
    # encoder's choice, and the fixtures must be byte-stable.
    u = pb.User(id=uid, name="user-%d" % uid, email="u%d@example.com" % uid,
                role=pb.ROLE_ADMIN if uid % 2 == 0 else pb.ROLE_USER,
                address=pb.Address(city="Paris", street="%d rue Oberkampf" % uid),
                tags=["a", "b"],
                # Long and repetitive: gRPC sends a message uncompressed
                # when gzip would not make it smaller, and --gzip must show.
                bio="user %d likes long walks. " % uid * 8)
    u.scores["x"] = uid
    return u


def apply_variant(u, index):
    v = ARGS.variant
    if not v or (ARGS.variant_at >= 0 and index != ARGS.variant_at):
        return u
    if v == "name":
        u.name = u.name.upper()
    elif v == "email":
        u.email = "changed-" + u.email
    elif v == "role":
        u.role = pb.ROLE_UNSPECIFIED
    elif v == "address.city":
        u.address.city = "Lyon"
    elif v == "tags":
        u.tags.append("c")
    elif v == "scores":
        u.scores["x"] = u.scores["x"] + 1
    elif v == "bio":
        u.bio = "changed"
    return u


def get(req, context):
    log("/%s/Get" % SERVICE, context)
    if ARGS.variant == "status":
        context.abort(grpc.StatusCode.NOT_FOUND, "user %d not found" % req.id)
    u = make_user(req.id)
    if req.pad:
        u.bio = req.pad
    return apply_variant(u, 0)


def list_users(req, context):
    log("/%s/List" % SERVICE, context)
    count = req.count + (1 if ARGS.variant == "count" else 0)
    for i in range(count):
        yield apply_variant(make_user(i + 1), i)


def fail(req, context):
    log("/%s/Fail" % SERVICE, context)
    code = req.code or grpc.StatusCode.NOT_FOUND.value[0]
    status = next(s for s in grpc.StatusCode if s.value[0] == code)
    message = req.message or "failed on purpose"
    if ARGS.variant == "message":
        message = "otherwise: " + message
    context.abort(status, message)


def slow(req, context):
    log("/%s/Slow" % SERVICE, context)
    deadline = time.monotonic() + req.delay_ms / 1000.0
    while time.monotonic() < deadline and context.is_active():
        time.sleep(0.01)
    return pb.SlowReply(slept_ms=req.delay_ms)


def import_users(req_iter, context):
    log("/%s/Import" % SERVICE, context)
    names = [u.name for u in req_iter]
    if ARGS.variant == "name":
        names = [n.upper() for n in names]
    return pb.ImportSummary(count=len(names), names=names)


def main():
    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(
            get, request_deserializer=pb.GetUserRequest.FromString,
            response_serializer=pb.User.SerializeToString),
        "List": grpc.unary_stream_rpc_method_handler(
            list_users, request_deserializer=pb.ListRequest.FromString,
            response_serializer=pb.User.SerializeToString),
        "Fail": grpc.unary_unary_rpc_method_handler(
            fail, request_deserializer=pb.FailRequest.FromString,
            response_serializer=pb.User.SerializeToString),
        "Slow": grpc.unary_unary_rpc_method_handler(
            slow, request_deserializer=pb.SlowRequest.FromString,
            response_serializer=pb.SlowReply.SerializeToString),
        "Import": grpc.stream_unary_rpc_method_handler(
            import_users, request_deserializer=pb.User.FromString,
            response_serializer=pb.ImportSummary.SerializeToString),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        compression=grpc.Compression.Gzip if ARGS.gzip else None)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:%d" % ARGS.port)
    if port == 0:
        print("cannot bind 127.0.0.1:%d" % ARGS.port, file=sys.stderr)
        sys.exit(1)
    server.start()
    print("READY %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
