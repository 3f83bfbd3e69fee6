#!/usr/bin/env python3
"""Local services for the bundled sample capture: a plaintext HTTP API, an HTTPS API with a
self-signed certificate, and a tiny DNS responder. Runs inside the "service" network namespace
made by Scripts/make-sample; addresses are passed on the command line."""
import http.server
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

ADDR, CERT, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
NAMES = {"api.agent.test": ADDR, "secure.agent.test": ADDR, "slow.agent.test": ADDR}


class API(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/v1/models"):
            self.reply(200, '{"data":[{"id":"local-model"}]}')
        elif self.path.startswith("/slow"):
            time.sleep(0.4)
            self.reply(200, '{"ok":true}')
        elif self.path.startswith("/missing"):
            self.reply(404, '{"error":"not found"}')
        elif self.path.startswith("/boom"):
            self.reply(500, '{"error":"internal"}')
        elif self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = f"data: token {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/reset"):
            # Abort mid-response with a RST (SO_LINGER 0).
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        else:
            self.reply(200, '{"hello":"world"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path.startswith("/v1/chat"):
            self.reply(429 if "limited" in self.path else 200, '{"choices":[{"text":"hi"}]}')
        else:
            self.reply(201, '{"created":true}')


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_http(port):
    ThreadingServer((ADDR, port), API).serve_forever()


def serve_https(port):
    server = ThreadingServer((ADDR, port), API)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    ctx.set_alpn_protocols(["http/1.1"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def serve_dns():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ADDR, 53))
    while True:
        data, peer = sock.recvfrom(2048)
        if len(data) < 12:
            continue
        qid = data[:2]
        pos, labels = 12, []
        while pos < len(data) and data[pos] != 0:
            n = data[pos]
            labels.append(data[pos + 1:pos + 1 + n].decode(errors="replace"))
            pos += n + 1
        qtype = struct.unpack("!H", data[pos + 1:pos + 3])[0]
        question = data[12:pos + 5]
        name = ".".join(labels).lower()
        if name in NAMES and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(NAMES[name])
            reply = qid + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0) + question + answer
        elif name in NAMES:
            reply = qid + b"\x81\x80" + struct.pack("!HHHH", 1, 0, 0, 0) + question
        else:
            reply = qid + b"\x81\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + question
        sock.sendto(reply, peer)


for target in (lambda: serve_http(80), lambda: serve_http(8080), lambda: serve_https(443), serve_dns):
    threading.Thread(target=target, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
