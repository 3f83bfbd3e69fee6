#!/usr/bin/env python3
"""Checks the spans an OTLP receiver decoded (otlp_receiver.py) against the calls calltap reported for
the same input (JSON Lines): every exported call has its span, with the right name, kind, times to the
microsecond, attributes, parent ids and resource, and nothing else arrived. Prints one summary line;
exits 1 with the differences.

usage: otlp_check.py SPANS CALLS [--resource k=v]... [--allow-duplicates] [--metrics METRICS] [--header-x-test V]
"""
import argparse
import collections
import datetime
import json
import sys

KNOWN = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


def ns(iso):
    """ISO-8601 with microseconds → nanoseconds (exact, no float)."""
    if iso is None:
        return None
    d = datetime.datetime.strptime(iso.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    delta = d - epoch
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def exported(c):
    return not (c["kind"] == "tls" and c["visibility"] == "decrypted")


def expected_name(c):
    if c["kind"] == "http":
        return c["method"] if c["method"] in KNOWN else "HTTP"
    return c["kind"]


def error_type(c):
    if c["outcome"] in ("ok", "incomplete"):  # a capture gap is not the call's failure
        return None
    if c["outcome"] == "http_error" and c["status_code"] is not None:
        return str(c["status_code"])
    return c["outcome"]


def key(start, kind, cid, stream):
    return (start, kind, cid, stream)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spans")
    ap.add_argument("calls")
    ap.add_argument("--resource", action="append", default=[])
    ap.add_argument("--allow-duplicates", action="store_true")
    ap.add_argument("--metrics")
    ap.add_argument("--header-x-test")
    a = ap.parse_args()
    spans = [json.loads(l) for l in open(a.spans) if l.strip()]
    calls = [json.loads(l) for l in open(a.calls) if l.strip()]
    problems = []

    by_id = collections.defaultdict(list)
    for s in spans:
        by_id[s["span_id"]].append(s)
    duplicates = sum(len(v) - 1 for v in by_id.values())
    for sid, group in by_id.items():
        if len(group) > 1:
            first = json.dumps(group[0], sort_keys=True)
            if any(json.dumps(g, sort_keys=True) != first for g in group[1:]):
                problems.append(f"span id {sid} was sent twice with different content")
    if duplicates and not a.allow_duplicates:
        problems.append(f"{duplicates} duplicate spans")

    index = {}
    for s in by_id.values():
        s = s[0]
        at = s["attributes"]
        index[key(s["start"], at.get("calltap.kind"), at.get("calltap.community_id"), at.get("calltap.stream_id"))] = s
    want = [c for c in calls if exported(c)]
    matched = set()
    checked_attrs = 0
    for c in want:
        k = key(ns(c["ts"]), c["kind"], c["connection_id"], c["stream_id"])
        s = index.get(k)
        label = f'{c["kind"]} {c["ts"]} {c.get("url") or c.get("host") or c.get("server_ip")}'
        if s is None:
            problems.append(f"no span for {label}")
            continue
        if s["span_id"] in matched:
            problems.append(f"two calls share span {s['span_id']} ({label})")
        matched.add(s["span_id"])
        at = s["attributes"]

        def expect(what, got, wanted):
            if got != wanted:
                problems.append(f"{label}: {what} is {got!r}, expected {wanted!r}")

        expect("name", s["name"], expected_name(c))
        expect("kind", s["kind"], 3)
        start = ns(c["ts"])
        end = ns(c["ended_at"]) if c["ended_at"] else (start + round(c["latency_ms"] * 1e6) if c["latency_ms"] is not None else start)
        expect("start", s["start"], start)
        if c["ended_at"]:
            expect("end", s["end"], end)
        elif abs(s["end"] - end) > 1000:
            expect("end", s["end"], end)
        if c["kind"] == "http":
            m = c["method"]
            expect("http.request.method", at.get("http.request.method"), m if m in KNOWN else "_OTHER")
            expect("http.response.status_code", at.get("http.response.status_code"), c["status_code"])
            expect("url.full", at.get("url.full"), c["url"])
            expect("url.scheme", at.get("url.scheme"), c["scheme"])
            v = c["http_version"]
            expect("network.protocol.version", at.get("network.protocol.version"), "2" if v and v.endswith("2") else v)
        expect("server.address", at.get("server.address"),
               c["server_ip"] if c["kind"] == "dns" else (c["host"] or c["sni"] or c["server_ip"]))
        if c["kind"] == "dns":
            expect("dns.question.name", at.get("dns.question.name"), c["host"])
        expect("server.port", at.get("server.port"), c["server_port"])
        expect("network.peer.address", at.get("network.peer.address"), c["server_ip"])
        expect("network.peer.port", at.get("network.peer.port"), c["server_port"])
        expect("error.type", at.get("error.type"), error_type(c))
        expect("session.id", at.get("session.id"), c["session_id"])
        expect("process.pid", at.get("process.pid"), c["pid"])
        expect("process.executable.name", at.get("process.executable.name"), c["process"])
        expect("calltap.outcome", at.get("calltap.outcome"), c["outcome"])
        expect("calltap.attribution", at.get("calltap.attribution"), c["attribution"])
        expect("calltap.visibility", at.get("calltap.visibility"), c["visibility"])
        expect("calltap.ja4", at.get("calltap.ja4"), c["ja4"])
        expect("calltap.estimated", at.get("calltap.estimated", False), c["estimated"])
        expect("tls.protocol.version", at.get("tls.protocol.version"), c["tls_version"])
        expect("status", s["status"]["code"], 2 if error_type(c) else 0)
        if c["trace_id"]:
            expect("trace id", s["trace_id"], c["trace_id"])
            expect("parent span id", s["parent_span_id"], c["parent_span_id"])
        else:
            expect("parent span id", s["parent_span_id"], "")
            if len(s["trace_id"]) != 32:
                problems.append(f"{label}: trace id {s['trace_id']!r}")
        if len(s["span_id"]) != 16:
            problems.append(f"{label}: span id {s['span_id']!r}")
        if "__duplicate_keys__" in at:
            problems.append(f"{label}: repeated attribute keys {at['__duplicate_keys__']}")
        names = [e["name"] for e in s["events"]]
        if c["ttfb_ms"] is not None and c["kind"] == "http" and "first_byte" not in names:
            problems.append(f"{label}: no first_byte event")
        if c["connect_ms"] is not None and "connect" not in names:
            problems.append(f"{label}: no connect event")
        for e in s["events"]:
            if not (s["start"] <= e["time"] <= s["end"]):
                problems.append(f"{label}: event {e['name']} outside the span")
        for kv in a.resource:
            k, v = kv.split("=", 1)
            expect(f"resource {k}", s["resource"].get(k), v)
        if "host.name" not in s["resource"]:
            problems.append(f"{label}: no host.name in the resource")
        if c["target"] and s["resource"].get("calltap.target") != c["target"]:
            problems.append(f"{label}: resource calltap.target {s['resource'].get('calltap.target')!r}")
        if a.header_x_test is not None:
            expect("x-test header", s["header_x_test"], a.header_x_test)
        expect("content type", s["content_type"], "application/x-protobuf")
        checked_attrs += 1
    extra = [sid for sid in by_id if sid not in matched]
    if extra:
        problems.append(f"{len(extra)} spans match no call, e.g. {by_id[extra[0]][0]['name']} {by_id[extra[0]][0]['start']}")

    metrics_note = ""
    if a.metrics:
        reqs = [json.loads(l) for l in open(a.metrics) if l.strip()]
        if not reqs:
            if any(c["kind"] in ("http", "dns") and c["latency_ms"] is not None for c in calls) or any(c["bytes_sent"] for c in calls):
                problems.append("no metrics request arrived")
        if reqs:
            last = reqs[-1]["metrics"]
            by_name = {m["name"]: m for m in last}
            h = by_name.get("http.client.request.duration")
            http_calls = sum(1 for c in calls if c["kind"] == "http" and c["latency_ms"] is not None)
            if http_calls and h is None:
                problems.append("no http.client.request.duration")
            if h:
                count = sum(p["count"] for p in h["points"])
                if count != http_calls:
                    problems.append(f"request-duration count {count}, expected {http_calls} HTTP calls")
                if h["unit"] != "s" or h["type"] != "histogram" or h["temporality"] != 2:
                    problems.append(f"request-duration is {h['type']} in {h['unit']!r}, temporality {h['temporality']}")
                for p in h["points"]:
                    if p["explicit_bounds"] != BOUNDS:
                        problems.append(f"bucket bounds {p['explicit_bounds']}")
                    if sum(p["bucket_counts"]) != p["count"]:
                        problems.append("bucket counts do not add up to the count")
                metrics_note = f", request-duration count {count} = {http_calls} HTTP calls"
            for m in last:
                for p in m["points"]:
                    for k in p["attributes"]:
                        if k.startswith("session") or k.startswith("url") or k in ("http.route", "calltap.path"):
                            problems.append(f"metric {m['name']} has label {k}")
            dns_calls = sum(1 for c in calls if c["kind"] == "dns" and c["latency_ms"] is not None)
            d = by_name.get("dns.lookup.duration")
            if dns_calls and (d is None or sum(p["count"] for p in d["points"]) != dns_calls):
                problems.append(f"dns.lookup.duration does not count the {dns_calls} lookups")
            sent = sum(c["bytes_sent"] or 0 for c in calls if c["kind"] in ("connect", "tls", "quic"))
            io = by_name.get("calltap.network.io")
            if sent and (io is None or sum(p["value"] for p in io["points"] if p["attributes"].get("network.io.direction") == "transmit") != sent):
                problems.append(f"calltap.network.io transmit does not add up to {sent} bytes")

    print(f"otlp: {len(want)} calls to export, {len(matched)} spans matched ({checked_attrs} checked field by field), "
          f"{duplicates} duplicates by span id, {len(extra)} unmatched{metrics_note}")
    if problems:
        for p in problems[:30]:
            print("  " + p)
        if len(problems) > 30:
            print(f"  … and {len(problems) - 30} more")
        sys.exit(1)


if __name__ == "__main__":
    main()
