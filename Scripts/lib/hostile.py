#!/usr/bin/env python3
"""Writes hostile captures for calltap's stress checks, each with one well-formed HTTP call before the
attack and one after it (GET /before and GET /after, both 200), so a check can see that the calls around
an attack are still recorded correctly.

usage: hostile.py OUTPUT_DIR [--scale 1.0] [--only NAME]
Full scale (1.0) is what Scripts/stress runs; CI runs 0.1.
"""
import argparse
import os
import struct

AGENT = bytes([10, 9, 0, 2])
SERVER = bytes([93, 184, 216, 34])
DNS_SERVER = bytes([10, 9, 0, 53])
LINKTYPE_RAW = 101


class Writer:
    """A pcap file of raw IPv4 packets with microsecond timestamps, written through a large buffer."""

    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 22)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        self.t = 1_764_000_000_000_000  # µs
        self.packets = 0

    def ip(self, src, dst, proto, payload, advance_us=10):
        self.t += advance_us
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
        frame = header + payload
        self.f.write(struct.pack("<IIII", self.t // 1_000_000, self.t % 1_000_000, len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1

    def tcp(self, src, dst, sport, dport, seq, ack, flags, payload=b"", advance_us=10):
        header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
        self.ip(src, dst, 6, header + payload, advance_us)

    def udp(self, src, dst, sport, dport, payload, advance_us=10):
        self.ip(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, advance_us)

    def close(self):
        self.f.close()


SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


_isn = [0]


def handshake(w, sport, dport=80, client=AGENT, server=SERVER, sseq=5000):
    # Each connection its own initial sequence number, as real stacks choose them.
    _isn[0] += 1
    cseq = (1000 + _isn[0] * 2_654_435_761) & 0xFFFFFFFF
    w.tcp(client, server, sport, dport, cseq, 0, SYN)
    w.tcp(server, client, dport, sport, sseq, cseq + 1, SYN | ACK)
    w.tcp(client, server, sport, dport, cseq + 1, sseq + 1, ACK)
    return (cseq + 1) & 0xFFFFFFFF, sseq + 1


def connect_and_get(w, sport, path):
    """A new connection carrying one GET request; returns the next client and server sequence numbers."""
    c, s = handshake(w, sport)
    req = f"GET {path} HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: agent\r\n\r\n".encode()
    w.tcp(AGENT, SERVER, sport, 80, c, s, PSH | ACK, req)
    return c + len(req), s


def good_call(w, sport, path):
    """One complete, well-formed HTTP/1.1 exchange on its own connection."""
    c, s = connect_and_get(w, sport, path)
    body = b'{"ok":true}'
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    w.tcp(SERVER, AGENT, 80, sport, s, c, PSH | ACK, resp, advance_us=2000)
    s += len(resp)
    w.tcp(AGENT, SERVER, sport, 80, c, s, FIN | ACK)
    w.tcp(SERVER, AGENT, 80, sport, s, c + 1, FIN | ACK)
    w.tcp(AGENT, SERVER, sport, 80, c + 1, s + 1, ACK)


def synflood(w, scale):
    """1M SYNs from distinct 4-tuples, never answered."""
    n = int(1_000_000 * scale)
    for i in range(n):
        src = bytes([10, 66, (i >> 16) & 0xFF, (i >> 8) & 0xFF])
        w.tcp(src, SERVER, 1024 + (i & 0xFF) * 200 + (i >> 24), 443, i * 7919, 0, SYN, advance_us=1)


def ooo_gaps(w, scale):
    """100k connections, each holding data after a large hole that never fills."""
    n = int(100_000 * scale)
    for i in range(n):
        sport = 1024 + (i % 60000)
        client = bytes([10, 67, (i >> 16) & 0xFF, (i >> 8) & 0xFF]) if i >= 60000 else AGENT
        c, s = handshake(w, sport, client=client)
        req = b"GET /held HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
        w.tcp(client, SERVER, sport, 80, c, s, PSH | ACK, req)
        c += len(req)
        # The response's first 100,000 bytes are missing; 4 segments after the hole arrive.
        for k in range(4):
            w.tcp(SERVER, client, 80, sport, s + 100_000 + k * 1400, c, ACK, b"x" * 1400, advance_us=1)


def overlaps(w, scale):
    """Overlapping segments that carry different data: the first copy must win."""
    n = int(20_000 * scale)
    for i in range(n):
        sport = 1024 + (i % 60000)
        c, s = handshake(w, sport)
        req = b"GET /first-copy HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
        evil = b"GET /second-copy-evil HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        w.tcp(AGENT, SERVER, sport, 80, c, s, PSH | ACK, req)
        w.tcp(AGENT, SERVER, sport, 80, c, s, PSH | ACK, evil)           # same start, different bytes
        w.tcp(AGENT, SERVER, sport, 80, c + 4, s, PSH | ACK, evil[4:40])  # overlapping the middle
        c += len(req)
        resp = b"HTTP/1.1 204 No Content\r\n\r\n"
        w.tcp(SERVER, AGENT, 80, sport, s, c, PSH | ACK, resp)
        w.tcp(SERVER, AGENT, 80, sport, s + 9, c, PSH | ACK, b"500 Internal Error\r\n\r\n")
        s += len(resp)
        w.tcp(AGENT, SERVER, sport, 80, c, s, RST | ACK)


def huge_chunked(w, scale):
    """A 1 GB chunked response body, then a request whose head never ends."""
    sport = 30001
    c, s = connect_and_get(w, sport, "/big")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    w.tcp(SERVER, AGENT, 80, sport, s, c, PSH | ACK, head)
    s += len(head)
    total = int(1_000_000_000 * scale)
    chunk = b"%x\r\n" % 8000 + b"z" * 8000 + b"\r\n"
    stream = chunk * 7  # 56,000 bytes of body per 40 segments
    sent = 0
    while sent < total:
        for off in range(0, len(stream), 1400):
            w.tcp(SERVER, AGENT, 80, sport, s, c, ACK, stream[off:off + 1400], advance_us=1)
            s += len(stream[off:off + 1400])
        sent += 56_000
    w.tcp(SERVER, AGENT, 80, sport, s, c, PSH | ACK, b"0\r\n\r\n")
    s += 5
    w.tcp(AGENT, SERVER, sport, 80, c, s, FIN | ACK)
    w.tcp(SERVER, AGENT, 80, sport, s, c + 1, FIN | ACK)
    # Endless header lines: 100 MB (10 MB at CI scale) of "X-Filler: …" with no blank line.
    sport = 30002
    c, s = handshake(w, sport)
    start = b"GET /endless HTTP/1.1\r\nHost: api.example.com\r\n"
    w.tcp(AGENT, SERVER, sport, 80, c, s, ACK, start)
    c += len(start)
    line = b"X-Filler: " + b"a" * 60 + b"\r\n"
    block = line * 19  # 1,368 bytes
    for _ in range(int(100_000_000 * scale) // len(block)):
        w.tcp(AGENT, SERVER, sport, 80, c, s, ACK, block, advance_us=1)
        c += len(block)
    w.tcp(AGENT, SERVER, sport, 80, c, s, RST | ACK)


def many_heads(w, scale):
    """10k connections, each sending a 60 KB head that never ends (all parsers' buffers together)."""
    n = int(10_000 * scale)
    block = (b"X-Filler: " + b"a" * 60 + b"\r\n") * 19
    for i in range(n):
        sport = 1024 + (i % 60000)
        client = AGENT if i < 60000 else bytes([10, 68, (i >> 16) & 0xFF, (i >> 8) & 0xFF])
        c, s = handshake(w, sport, client=client)
        w.tcp(client, SERVER, sport, 80, c, s, ACK, b"GET /slow HTTP/1.1\r\n")
        c += 20
        for _ in range(44):
            w.tcp(client, SERVER, sport, 80, c, s, ACK, block, advance_us=1)
            c += len(block)


def pipelined(w, scale):
    """Millions of pipelined requests on one connection, never answered."""
    sport = 30003
    c, s = handshake(w, sport)
    req = b"GET /p HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
    batch = req * 32
    for _ in range(int(2_000_000 * scale) // 32):
        w.tcp(AGENT, SERVER, sport, 80, c, s, ACK, batch, advance_us=1)
        c += len(batch)
    w.tcp(AGENT, SERVER, sport, 80, c, s, RST | ACK)


def tls_hostile(w, scale):
    """TLS records with absurd lengths, and a ClientHello cut into 1-byte records."""
    n = int(20_000 * scale)
    for i in range(n):
        sport = 1024 + (i % 60000)
        c, s = handshake(w, sport, dport=443)
        if i % 2 == 0:
            # Record length 0xFFFF (beyond the 2^14 + 2048 limit), then a claimed handshake of 16 MB.
            bad = bytes([0x16, 3, 3, 0xFF, 0xFF, 1, 0xFF, 0xFF, 0xFF]) + os.urandom(64)
        else:
            bad = bytes([0x16, 3, 1, 0x40, 0x00, 1, 0xFF, 0xFF, 0xFF]) + b"\x00" * 100
        w.tcp(AGENT, SERVER, sport, 443, c, s, PSH | ACK, bad, advance_us=1)
        w.tcp(AGENT, SERVER, sport, 443, c + len(bad), s, RST | ACK, advance_us=1)
    # A real-looking ClientHello with SNI, one byte per record, so deeply fragmented.
    sni = b"fragmented.example.com"
    ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    body = b"\x03\x03" + b"\x42" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(ext_sni)) + ext_sni
    hello = b"\x01" + struct.pack("!I", len(body))[1:] + body
    records = b"".join(bytes([0x16, 3, 1, 0, 1, b]) for b in hello)
    sport = 30004
    c, s = handshake(w, sport, dport=443)
    for off in range(0, len(records), 1200):
        w.tcp(AGENT, SERVER, sport, 443, c, s, ACK, records[off:off + 1200])
        c += len(records[off:off + 1200])
    w.tcp(AGENT, SERVER, sport, 443, c, s, RST | ACK)


def dns_loops(w, scale):
    """DNS answers whose names point to themselves or to each other (compression loops)."""
    n = int(50_000 * scale)
    for i in range(n):
        qid = i & 0xFFFF
        question = b"\x03api\x07example\x03com\x00" + struct.pack("!HH", 1, 1)
        query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
        w.udp(AGENT, DNS_SERVER, 20000 + (i % 40000), 53, query, advance_us=1)
        if i % 2 == 0:
            name = b"\xc0\x0c"  # points at itself (offset 12 holds this pointer)
            answer = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + name + struct.pack("!HH", 1, 1) \
                + name + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([1, 2, 3, 4])
        else:
            # Two pointers pointing at each other, after a valid question.
            answer = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + b"\xc0\x23\xc0\x21" \
                + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([1, 2, 3, 4])
        w.udp(DNS_SERVER, AGENT, 53, 20000 + (i % 40000), answer, advance_us=1)


SCENARIOS = {
    "synflood": synflood,
    "ooo-gaps": ooo_gaps,
    "overlaps": overlaps,
    "huge-chunked": huge_chunked,
    "many-heads": many_heads,
    "pipelined": pipelined,
    "tls": tls_hostile,
    "dns-loops": dns_loops,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only")
    args = ap.parse_args()
    os.makedirs(args.output, exist_ok=True)
    for name, make in SCENARIOS.items():
        if args.only and name != args.only:
            continue
        w = Writer(os.path.join(args.output, f"{name}.pcap"))
        # Source ports above those the attacks use (1024–61023), so the good calls share no 4-tuple.
        good_call(w, 62001, "/before")
        make(w, args.scale)
        w.t += 1_000_000
        good_call(w, 62002, "/after")
        w.close()
        print(f"{name}: {w.packets} packets")


if __name__ == "__main__":
    main()
