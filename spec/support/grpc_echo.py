"""A gRPC server for specs, on Debian's python3-grpcio, with no generated
code: one generic handler takes every method as bytes in, bytes out.

  /echo.Echo/Say   answers b"echo:" + the request message
  /echo.Echo/Fail  ends with status INVALID_ARGUMENT, "no such thing"
  anything else    UNIMPLEMENTED (grpc's own answer)

usage: grpc_echo.py PORT [NAME]. Plain TCP (h2c). Prints "listening" once
bound, then "call METHOD" per call, flushed. NAME is put after "echo:"
when given, so two servers answer differently.
"""
import sys
from concurrent import futures

import grpc


def main():
    port = int(sys.argv[1])
    name = sys.argv[2].encode() if len(sys.argv) > 2 else b""

    def say(request, context):
        return b"echo:" + name + request

    def fail(request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such thing")

    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }

    class Logged(grpc.GenericRpcHandler):
        def __init__(self):
            self.inner = grpc.method_handlers_generic_handler("echo.Echo",
                                                              handlers)

        def service(self, details):
            sys.stdout.write("call %s\n" % details.method)
            sys.stdout.flush()
            return self.inner.service(details)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         handlers=[Logged()])
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
