#!/usr/bin/env python3
"""A fast OTLP/HTTP sink for Scripts/bench: reads each request body and answers 200 without decoding
(the decoding is checked by Scripts/lib/otlp-tests.sh); counts requests and bytes into STATS at exit.

usage: otlp_sink.py PORTFILE STATS
"""
import http.server
import signal
import sys

requests = 0
received = 0


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global requests, received
        n = int(self.headers.get("Content-Length", "0"))
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)
            received += len(chunk)
        requests += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
open(sys.argv[1], "w").write(str(server.server_address[1]))


def stop(*_):
    open(sys.argv[2], "w").write(f"{requests} {received}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
