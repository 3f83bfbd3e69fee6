#!/usr/bin/env python3
"""Writes a small capture of plain HTTP calls with awkward host names, for the dashboard's browser check
(Scripts/browser_check.py): a 10,000-character host answered 503, a host holding U+202E (right-to-left
override) and a zero-width space answered 200, and a call to an ordinary host, spread over the two hours
before Samples/agent-demo.pcap (2 h, 33 min and 5 min before it) so that the range picker's 15 min, 1 h
and 24 h each hold a different number of calls.

usage: odd_hosts.py OUT.pcap
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_shapes import Conn, Pcap  # noqa: E402

DEMO_START_US = 1_795_625_009_092_000  # 2026-11-25T16:43:29.092Z, the first call of Samples/agent-demo.pcap
LONG_HOST = ("a" * 9_988) + ".example.com"
RLO_HOST = "evil\u202egnp.exe\u200b.example"
CALLS = [  # (seconds before the demo, host, status)
    (2 * 3600 + 3 * 60, LONG_HOST, 503),
    (33 * 60, RLO_HOST, 200),
    (5 * 60, "plain.example", 200),
]


def call(w, n, host, status):
    c = Conn(bytes([10, 213, 9, 2]), 40000 + n, bytes([10, 213, 9, 1]), 80, 1000 * (n + 1), 900_000 * (n + 1))
    c.syn(w)
    c.synack(w)
    c.ack(w)
    request = b"GET /v1/things?n=%d HTTP/1.1\r\nHost: " % n + host.encode() + b"\r\nAccept: */*\r\n\r\n"
    c.segment(w, True, request, advance_us=200)
    body = b'{"ok": %s}' % (b"true" if status < 400 else b"false")
    response = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body
    c.segment(w, False, response, advance_us=12_000)
    c.fin(w)


def main():
    w = Pcap(sys.argv[1])
    for n, (before, host, status) in enumerate(CALLS):
        w.t = DEMO_START_US - before * 1_000_000
        call(w, n, host, status)
    w.close()


if __name__ == "__main__":
    main()
