#!/usr/bin/env python3
"""A flood of QUIC Initial packets stays inside calltap's memory budget: N client Initials (version 1,
1,200 bytes, a random Destination Connection ID each, never answered), each from a new address and
port to UDP/443, written to a capture and read with `calltap read --format none --stats --memory-mb B`.
The peak RSS must stay within B plus the process's own size (its peak on Samples/agent-demo.pcap), every
flow must come out as one call, and the flows reported before their idle timeout must be counted
(`quic_flows_reported_early`).

usage: quic_flood.py BIN [--flows 200000] [--budgets 64,256]
"""
import argparse
import os
import random
import struct
import sys
import tempfile

from peak_rss import run as peak_run

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Samples", "agent-demo.pcap")


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write(path, flows):
    rng = random.Random(7)
    body = bytes(rng.getrandbits(8) for _ in range(1160))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_764_000_000 * 1_000_000
        for i in range(flows):
            src = struct.pack("!BBBB", 10, 50 + (i >> 16) % 100, (i >> 8) & 0xFF, i & 0xFF)
            dst = bytes([203, 0, 113, 9])
            dcid = rng.getrandbits(64).to_bytes(8, "big")
            # Long header, Initial, 4-byte packet number; version 1; DCID; no SCID; no token; length.
            quic = bytes([0xC3]) + struct.pack("!I", 1) + bytes([8]) + dcid + bytes([0]) + bytes([0]) \
                + struct.pack("!H", 0x4000 | (len(body) + 4)) + struct.pack("!I", i) + body
            udp = struct.pack("!HHHH", 40000 + i % 20000, 443, 8 + len(quic), 0) + quic
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            frame = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + udp
            t += 20
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--budgets", default="64,256")
    a = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "flood.pcap")
        write(path, a.flows)
        for b in [int(x) for x in a.budgets.split(",")]:
            _, fixed, _ = peak_run(a.bin, ["read", "--format", "none", "--memory-mb", str(b), SAMPLE])
            rc, peak, stats = peak_run(a.bin, ["read", "--format", "none", "--stats", "--memory-mb", str(b), path])
            calls = int(stats.get("calls", "0"))
            early = int(stats.get("quic_flows_reported_early", "0"))
            ok = rc == 0 and peak <= b + fixed and calls == a.flows and early > 0
            failed += not ok
            print(f"{'ok' if ok else 'FAIL'}: QUIC Initial flood of {a.flows} flows at {b} MB: peak {peak:.0f} MB "
                  f"(limit {b + fixed:.0f}), {calls} calls, {early} reported early, exit {rc}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
