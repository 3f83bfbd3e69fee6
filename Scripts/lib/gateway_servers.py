#!/usr/bin/env python3
"""The far side of the gateway fixture (Scripts/lib/gateway.mjs): LLM-API-like servers and web hosts.

One HTTPS server answers the LLM APIs (OpenAI Responses, Anthropic Messages, Gemini generateContent and
streamGenerateContent?alt=sse; SSE, or JSON compressed with br/gzip when offered) on one keep-alive
connection per client: a request with no tool result yet gets a web_fetch tool call, one carrying a tool
result gets a text answer. Web hosts answer pages after a delay, redirects, over HTTP and HTTPS, closing
each connection as a fetch through OpenClaw's guard does.

Every request is written to TRUTH as one JSON line: the client's port, the request's place on its
connection, the session the fixture says it belongs to (its `x-fixture-session` header: ground truth
for the test, never read by calltap) and, for LLM calls, the tokens sent.

usage: gateway_servers.py TRUTH CERT KEY --llm IP --web IP [--ready FILE]
"""
import argparse
import gzip
import http.server
import json
import os
import ssl
import threading
import time

try:
    import brotli
except ImportError:
    brotli = None

lock = threading.Lock()
truth_out = None


def log(entry):
    with lock:
        truth_out.write(json.dumps(entry) + "\n")


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.seq = 0

    def record(self, **kw):
        self.seq += 1
        log(dict(client_port=self.client_address[1], server_port=self.server.server_address[1], seq=self.seq,
                 session=self.headers.get("x-fixture-session"), host=self.headers.get("Host"), path=self.path, **kw))


def tokens(seed):
    r = int.from_bytes(os.urandom(4), "big")
    return 100 + r % 4000, 5 + (r >> 12) % 600, ((r >> 22) % 4) * 64


class LLM(Base):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        req = json.loads(body or b"{}")
        p = self.path.split("?")[0]
        text = body.decode(errors="replace")
        answered = ("tool_use_id" in text) or ("function_call_output" in text) or ("functionResponse" in text)
        inp, out, cached = tokens(self.path)
        fetch_url = self.headers.get("x-fixture-fetch", "http://docs.test/page")
        hexid = os.urandom(6).hex()
        if p.endswith("/v1/messages"):
            kind = "anthropic"
            model = req.get("model", "claude")
            tid = None if answered else f"toolu_{hexid}"
            stop = "end_turn" if answered else "tool_use"
            ev = [("message_start", {"type": "message_start", "message": {"id": "msg", "model": model, "content": [],
                   "usage": {"input_tokens": inp, "output_tokens": 1, "cache_read_input_tokens": cached}}})]
            if tid:
                ev.append(("content_block_start", {"type": "content_block_start", "index": 0,
                           "content_block": {"type": "tool_use", "id": tid, "name": "web_fetch", "input": {}}}))
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                           "delta": {"type": "input_json_delta", "partial_json": json.dumps({"url": fetch_url})}}))
            else:
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "done"}}))
            ev.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": out}}))
            ev.append(("message_stop", {"type": "message_stop"}))
            self.record(kind=kind, input=inp, output=out, cached=cached, tool=tid)
            return self.sse(ev)
        if p.endswith("/responses"):
            kind = "openai"
            model = req.get("model", "gpt")
            call = None if answered else f"call_{hexid}"
            output = [{"type": "function_call", "id": f"fc_{hexid}", "call_id": call, "name": "web_fetch",
                       "arguments": json.dumps({"url": fetch_url})}] if call else \
                     [{"type": "message", "id": "m", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]
            usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out}
            whole = {"id": "r", "object": "response", "status": "completed", "model": model, "output": output, "usage": usage}
            ev = [("response.created", {"type": "response.created", "response": {"id": "r", "status": "in_progress", "model": model, "output": []}})]
            if call:
                ev.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": output[0]}))
            else:
                ev.append(("response.output_text.delta", {"type": "response.output_text.delta", "delta": "done"}))
            ev.append(("response.completed", {"type": "response.completed", "response": whole}))
            self.record(kind=kind, input=inp, output=out, cached=cached, tool=call)
            return self.sse(ev)
        # Gemini: no ids on function calls; the client names them.
        kind = "gemini"
        model = p.split("/models/")[-1].split(":")[0]
        parts = [{"text": "done"}] if answered else [{"functionCall": {"name": "web_fetch", "args": {"url": fetch_url}}}]
        usage = {"promptTokenCount": inp, "candidatesTokenCount": out, "cachedContentTokenCount": cached, "totalTokenCount": inp + out}
        whole = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}], "usageMetadata": usage,
                 "modelVersion": model}
        self.record(kind=kind, input=inp, output=out, cached=cached, tool=None)
        if ":streamGenerateContent" in p:
            first = {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}}], "modelVersion": model}
            return self.sse([("", first), ("", whole)])
        payload = json.dumps(whole).encode()
        accept = self.headers.get("Accept-Encoding", "")
        encoding = None
        if "br" in accept and brotli is not None:
            payload, encoding = brotli.compress(payload), "br"
        elif "gzip" in accept:
            payload, encoding = gzip.compress(payload), "gzip"
        time.sleep(0.08)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def sse(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        time.sleep(0.06)
        for name, data in events:
            b = ((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n").encode()
            self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b"0\r\n\r\n")


class Web(Base):
    def do_GET(self):
        path = self.path.split("?")[0]
        delay = float(self.headers.get("x-fixture-delay", "0.3"))
        if path.startswith("/redirect"):
            self.record(kind="web", status=302)
            self.send_response(302)
            self.send_header("Location", "/page?from=redirect")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        time.sleep(delay)
        body = ("<html><head><title>t</title></head><body>" + "text " * 200 + "</body></html>").encode()
        self.record(kind="web", status=200)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


def serve(handler, ip, port, ctx):
    server = http.server.ThreadingHTTPServer((ip, port), handler)
    server.daemon_threads = True
    if ctx:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    global truth_out
    ap = argparse.ArgumentParser()
    ap.add_argument("truth")
    ap.add_argument("cert")
    ap.add_argument("key")
    ap.add_argument("--llm", required=True)
    ap.add_argument("--web", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()
    truth_out = open(a.truth, "a", buffering=1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    serve(LLM, a.llm, 443, ctx)
    serve(Web, a.web, 80, None)
    serve(Web, a.web, 443, ctx)
    if a.ready:
        open(a.ready, "w").write("ready")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
