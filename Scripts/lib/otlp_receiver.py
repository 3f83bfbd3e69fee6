#!/usr/bin/env python3
"""An OTLP/HTTP receiver for the tests: decodes every request with the official opentelemetry-proto
package (PyPI) and appends what it decoded as JSON Lines, one object per span to SPANS and one object
per metrics request to METRICS.

While the file named by --fail-file exists, every request is answered 503 with `Retry-After: 1` (a
collector outage). While the file named by --slow-file exists, a traces request is decoded and recorded
and then answered only 3 s later (a window in which to kill the exporter with the batch in flight). Requests whose body does not decode are answered 400 and counted in BAD.

usage: otlp_receiver.py HOST PORT SPANS METRICS [--fail-file PATH] [--slow-file PATH] [--ready PATH]
"""
import argparse
import http.server
import json
import os
import threading
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return None


def attributes(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            out.setdefault("__duplicate_keys__", []).append(kv.key)
        out[kv.key] = any_value(kv.value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("spans")
    ap.add_argument("metrics")
    ap.add_argument("--fail-file")
    ap.add_argument("--slow-file")
    ap.add_argument("--ready")
    a = ap.parse_args()
    lock = threading.Lock()
    spans_out = open(a.spans, "a", buffering=1)
    metrics_out = open(a.metrics, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, code, body=b"", extra=None):
            self.send_response(code)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if a.fail_file and os.path.exists(a.fail_file):
                self.answer(503, extra={"Retry-After": "1"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                if self.path == "/v1/traces":
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    with lock:
                        for rs in req.resource_spans:
                            resource = attributes(rs.resource.attributes)
                            for ss in rs.scope_spans:
                                for s in ss.spans:
                                    spans_out.write(json.dumps({
                                        "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                        "parent_span_id": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                                        "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                                        "attributes": attributes(s.attributes),
                                        "events": [{"time": e.time_unix_nano, "name": e.name,
                                                    "attributes": attributes(e.attributes)} for e in s.events],
                                        "status": {"code": s.status.code, "message": s.status.message},
                                        "resource": resource,
                                        "scope": {"name": ss.scope.name, "version": ss.scope.version},
                                        "content_type": headers.get("content-type"),
                                        "header_x_test": headers.get("x-test"),
                                    }) + "\n")
                    if a.slow_file and os.path.exists(a.slow_file):
                        time.sleep(3)
                    self.answer(200, ExportTraceServiceResponse().SerializeToString())
                elif self.path == "/v1/metrics":
                    req = ExportMetricsServiceRequest()
                    req.ParseFromString(body)
                    metrics = []
                    for rm in req.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                kind = m.WhichOneof("data")
                                points = []
                                if kind == "histogram":
                                    for p in m.histogram.data_points:
                                        points.append({"attributes": attributes(p.attributes), "count": p.count,
                                                       "sum": p.sum, "bucket_counts": list(p.bucket_counts),
                                                       "explicit_bounds": list(p.explicit_bounds),
                                                       "start": p.start_time_unix_nano, "time": p.time_unix_nano,
                                                       "min": p.min, "max": p.max})
                                    temporality = m.histogram.aggregation_temporality
                                elif kind == "sum":
                                    for p in m.sum.data_points:
                                        points.append({"attributes": attributes(p.attributes), "value": p.as_int,
                                                       "start": p.start_time_unix_nano, "time": p.time_unix_nano})
                                    temporality = m.sum.aggregation_temporality
                                else:
                                    temporality = None
                                metrics.append({"name": m.name, "unit": m.unit, "type": kind,
                                                "temporality": temporality, "points": points,
                                                "resource": attributes(rm.resource.attributes)})
                    with lock:
                        metrics_out.write(json.dumps({"metrics": metrics}) + "\n")
                    self.answer(200)
                else:
                    self.answer(404)
            except Exception as e:  # a body the official decoder refuses
                with lock:
                    with open(a.spans + ".bad", "a") as bad:
                        bad.write(f"{self.path}: {e}\n")
                self.answer(400)

    server = http.server.ThreadingHTTPServer((a.host, a.port), Handler)
    if a.ready:
        open(a.ready, "w").write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
