#!/usr/bin/env python3
"""LLM-API-like servers for the tests: OpenAI Chat Completions and Responses, Anthropic Messages and
Gemini generateContent / streamGenerateContent, as JSON or SSE (the request's `stream`, or Gemini's
streaming path), gzip or br when the client accepts them (JSON only, as the providers do), over HTTP/1.1,
plain or TLS. Each answer's facts (model, tokens, stop reason, tool call) go to TRUTH as one JSON line,
keyed by the request path, so the test can compare calltap's fields with what was sent.

usage: llm_server.py HOST PORT TRUTH [--tls CERT KEY] [--ready FILE]
"""
import argparse
import gzip
import http.server
import json
import random
import ssl
import threading
import time

try:
    import brotli
except ImportError:
    brotli = None

lock = threading.Lock()


def answer(kind, path, req, rnd):
    model = req.get("model") or path.split("/models/")[-1].split(":")[0]
    served = model + "-2026"
    inp, out, cached = rnd.randint(10, 5000), rnd.randint(1, 900), rnd.randint(0, 9) * 64
    tool = f"call_{rnd.randint(1000, 9999)}" if rnd.random() < 0.5 else None
    if kind == "chat":
        stop = "tool_calls" if tool else "stop"
        msg = {"role": "assistant", "content": None if tool else "hi"}
        if tool:
            msg["tool_calls"] = [{"id": tool, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
        whole = {"id": "c", "object": "chat.completion", "model": served, "choices": [{"index": 0, "message": msg, "finish_reason": stop}],
                 "usage": {"prompt_tokens": inp, "completion_tokens": out, "prompt_tokens_details": {"cached_tokens": cached}}}
        events = [{"id": "c", "model": served, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        if tool:
            events.append({"id": "c", "model": served, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": tool, "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]})
        else:
            events.append({"id": "c", "model": served, "choices": [{"index": 0, "delta": {"content": "hi"}}]})
        events.append({"id": "c", "model": served, "choices": [{"index": 0, "delta": {}, "finish_reason": stop}]})
        events.append({"id": "c", "model": served, "choices": [], "usage": whole["usage"]})
        sse = [("", json.dumps(e)) for e in events] + [("", "[DONE]")]
        truth = dict(model=served, input=inp, output=out, cached=cached, stop=stop, tools=[f"get_weather {tool}"] if tool else [])
    elif kind == "responses":
        output = [{"type": "function_call", "id": "fc_1", "call_id": tool, "name": "web_fetch", "arguments": "{}"}] if tool else \
                 [{"type": "message", "id": "m", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}]
        usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out}
        whole = {"id": "r", "object": "response", "status": "completed", "model": served, "output": output, "usage": usage}
        events = [("response.created", {"type": "response.created", "response": {"id": "r", "status": "in_progress", "model": served, "output": []}})]
        if tool:
            events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": output[0]}))
        else:
            events.append(("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "hi"}))
        events.append(("response.completed", {"type": "response.completed", "response": whole}))
        sse = [(name, json.dumps(e)) for name, e in events]
        truth = dict(model=served, input=inp, output=out, cached=cached, stop="completed", tools=[f"web_fetch {tool}"] if tool else [])
    elif kind == "messages":
        tid = f"toolu_{rnd.randint(1000, 9999)}" if tool else None
        stop = "tool_use" if tid else "end_turn"
        content = [{"type": "tool_use", "id": tid, "name": "exec", "input": {}}] if tid else [{"type": "text", "text": "hi"}]
        usage = {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}
        whole = {"id": "msg", "type": "message", "role": "assistant", "model": served, "content": content, "stop_reason": stop, "usage": usage}
        events = [("message_start", {"type": "message_start", "message": {"id": "msg", "model": served, "content": [], "usage": {"input_tokens": inp, "output_tokens": 1, "cache_read_input_tokens": cached}}})]
        if tid:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": tid, "name": "exec", "input": {}}}))
        else:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": out}}))
        events.append(("message_stop", {"type": "message_stop"}))
        sse = [(name, json.dumps(e)) for name, e in events]
        truth = dict(model=served, input=inp, output=out, cached=cached, stop=stop, tools=[f"exec {tid}"] if tid else [])
    else:  # gemini
        parts = [{"functionCall": {"name": "lookup", "args": {}}}] if tool else [{"text": "hi"}]
        usage = {"promptTokenCount": inp, "candidatesTokenCount": out, "cachedContentTokenCount": cached, "totalTokenCount": inp + out}
        whole = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}], "usageMetadata": usage, "modelVersion": served}
        first = {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}}], "modelVersion": served}
        sse = [("", json.dumps(first)), ("", json.dumps(whole))]
        truth = dict(model=served, input=inp, output=out, cached=cached, stop="STOP", tools=["lookup"] if tool else [])
    return whole, sse, truth


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("truth")
    ap.add_argument("--tls", nargs=2)
    ap.add_argument("--ready")
    a = ap.parse_args()
    truth_out = open(a.truth, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = json.loads(body or b"{}")
            p = self.path.split("?")[0]
            kind = "chat" if p.endswith("/chat/completions") else "responses" if p.endswith("/responses") else \
                "messages" if p.endswith("/v1/messages") else "gemini"
            stream = req.get("stream") is True or ":streamGenerateContent" in p
            whole, sse, truth = answer(kind, p, req, random.Random(self.path))
            truth.update(path=self.path, stream=stream)
            with lock:
                truth_out.write(json.dumps(truth) + "\n")
            if stream:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                time.sleep(0.05)  # the model thinks: time to first token
                for name, data in sse:
                    ev = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
                    b = ev.encode()
                    self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.005)
                self.wfile.write(b"0\r\n\r\n")
                return
            payload = json.dumps(whole).encode()
            accept = self.headers.get("Accept-Encoding", "")
            encoding = None
            if "br" in accept and brotli is not None:
                payload, encoding = brotli.compress(payload), "br"
            elif "gzip" in accept:
                payload, encoding = gzip.compress(payload), "gzip"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer((a.host, a.port), Handler)
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if a.ready:
        open(a.ready, "w").write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
