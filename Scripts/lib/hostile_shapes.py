#!/usr/bin/env python3
"""Writes one hostile capture whose shape is drawn from a seed, for the memory-budget checks
(Scripts/lib/memory_shapes.py): peak RSS must stay within `--memory-mb` plus the process's fixed size
whatever the input looks like.

usage: hostile_shapes.py OUT.pcap --seed N [--scale S]
       hostile_shapes.py OUT.pcap --shape ooo-hole|h2-frames|tls-partial|llm-bodies|dns-tcp|frag-flood [--scale S]

A seeded shape mixes one to four attacks, each on its own set of connections:
  ooo        holes that never fill (at random offsets, up to 1 MB past the expected sequence number),
             in either direction, with the data after them in 1..1460-byte or 20 KB ("GSO-sized") segments
  heads      HTTP/1 heads that never end (requests, or responses to a complete request)
  chunks     chunked responses whose chunk-size line never ends or announces an absurd size
  pipeline   pipelined requests that are never answered
  held       bytes that do not look like any protocol yet, sent from a 1-byte first segment
  h2         HTTP/2 with prior knowledge: preface, SETTINGS, then a DATA or HEADERS frame announcing up to
             16 MiB of which only part is sent, a CONTINUATION flood, or an HPACK table-size update
             announcing a huge table
  tls        ClientHellos announcing 100 KB+ of which part is sent, ClientHellos in 1-byte handshake
             records, records longer than TLS allows
  synflood   connections that never get past their SYN (or SYN/ACK)
Hostile connections never close, so everything they hold stays held until calltap gives it up.
Well-formed HTTP/1.1 calls on their own port (GET /good/N on port 8080, each answered 200 and closed)
come before, in the middle of and after the attack, so the calls around it can be checked.

The named shapes reproduce reported cases exactly (with the same well-formed calls around them):
  ooo-hole     100,000 connections, each a SYN then four 1,400-byte segments 100 KB past the expected
               sequence number (a hole that never fills)
  h2-frames    2,000 prior-knowledge HTTP/2 connections, each sending the preface, SETTINGS and the first
               14 KB of a DATA frame announcing a length of 1 MiB
  tls-partial  40,000 TLS connections, each sending the first 14 KB of a ClientHello announcing 100 KB
  llm-bodies   300 LLM API requests, each sending 300 KB of a body announced as 900 KB
  dns-tcp      2,000 DNS-over-TCP connections, each sending 60,000 bytes of a message announced as 65,535
  frag-flood   60,000 IPv4 UDP datagrams that never complete, each from its own address and
               identification: three 1,480-byte fragments in a row (more to come) at an offset up to
               60,000, never the first, so a reassembler that sized a datagram by its highest offset
               would hold 64 KB for each; together more datagrams and more bytes than the caps allow
Connection counts (and frag-flood's datagrams) are multiplied by --scale.

Prints one line of JSON describing the shape: its parameters, the well-formed calls expected, and the
`loads` (what the attack makes calltap hold) from which the checker decides which caps must be reached
at a given budget.
"""
import argparse
import json
import math
import os
import random
import struct
import sys

LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144
ETHER = bytes.fromhex("020000000002") + bytes.fromhex("020000000001") + b"\x08\x00"
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10

GOOD_CLIENT = bytes([10, 200, 0, 1])
GOOD_SERVER = bytes([93, 184, 216, 80])
GOOD_PORT = 8080
# One server address per attack, so the attacks' connections never share a 4-tuple with each other or
# with the well-formed calls.
SERVERS = {"ooo": 11, "heads": 12, "chunks": 13, "pipeline": 14, "held": 15, "h2": 16, "tls": 17, "synflood": 18, "llm": 19,
           "dnstcp": 20}

GSO = 20_000           # one segment as a sender with segmentation offload hands it to the capture
HEAD_CAP = 64 * 1024   # calltap's cap on one HTTP message head
TLS_HANDSHAKE_CAP = 1 << 17
TLS_RECORD_CAP = (1 << 14) + 2048
H2_FRAME_CAP = 1 << 20  # largest non-DATA frame payload and HPACK table calltap accepts

FILL = b"x" * (1 << 16)


def filler(n):
    """n bytes of filler (repeated when longer than the cached block)."""
    if n <= len(FILL):
        return FILL[:n]
    return (FILL * (n // len(FILL) + 1))[:n]


class Pcap:
    """A pcap file of Ethernet/IPv4/TCP packets with microsecond timestamps, written through a large buffer."""

    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 22)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.t = 1_764_000_000_000_000  # µs
        self.start = self.t
        self.packets = 0
        self.bytes = 24

    def tcp(self, src, dst, sport, dport, seq, ack, flags, payload=b"", advance_us=1):
        self.t += advance_us
        n = 40 + len(payload)
        # IPv4 (no options, DF) and TCP (no options) headers; checksums are left at zero, as offloading
        # senders leave them in captures.
        hdr = struct.pack("!BBHHHBBH4s4sHHIIBBHHH", 0x45, 0, n, 0, 0x4000, 64, 6, 0, src, dst,
                          sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
        frame_len = 14 + n
        self.f.write(struct.pack("<IIII", self.t // 1_000_000, self.t % 1_000_000, frame_len, frame_len))
        self.f.write(ETHER)
        self.f.write(hdr)
        if payload:
            self.f.write(payload)
        self.packets += 1
        self.bytes += 16 + frame_len

    def ipv4_fragment(self, src, dst, ident, offset, more, payload, proto=17, advance_us=1):
        """One IPv4 fragment: `payload` at byte `offset` (a multiple of 8) of datagram `ident`."""
        self.t += advance_us
        n = 20 + len(payload)
        frag = (offset // 8) | (0x2000 if more else 0)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, n, ident, frag, 64, proto, 0, src, dst)
        frame_len = 14 + n
        self.f.write(struct.pack("<IIII", self.t // 1_000_000, self.t % 1_000_000, frame_len, frame_len))
        self.f.write(ETHER)
        self.f.write(hdr)
        self.f.write(payload)
        self.packets += 1
        self.bytes += 16 + frame_len

    def close(self):
        self.f.close()


class Conn:
    """One TCP connection: its endpoints and the next sequence number each way."""

    def __init__(self, client, cport, server, sport, cisn, sisn):
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.cseq = cisn
        self.sseq = sisn

    def syn(self, w):
        w.tcp(self.client, self.server, self.cport, self.sport, self.cseq, 0, SYN)
        self.cseq = (self.cseq + 1) & 0xFFFFFFFF

    def synack(self, w):
        w.tcp(self.server, self.client, self.sport, self.cport, self.sseq, self.cseq, SYN | ACK)
        self.sseq = (self.sseq + 1) & 0xFFFFFFFF

    def ack(self, w):
        w.tcp(self.client, self.server, self.cport, self.sport, self.cseq, self.sseq, ACK)

    def segment(self, w, from_client, payload, offset=0, flags=PSH | ACK, advance_us=1):
        """A segment `offset` bytes past the next expected sequence number (0: in order, advancing it)."""
        if from_client:
            w.tcp(self.client, self.server, self.cport, self.sport, self.cseq + offset, self.sseq, flags, payload, advance_us)
            if offset == 0:
                self.cseq = (self.cseq + len(payload)) & 0xFFFFFFFF
        else:
            w.tcp(self.server, self.client, self.sport, self.cport, self.sseq + offset, self.cseq, flags, payload, advance_us)
            if offset == 0:
                self.sseq = (self.sseq + len(payload)) & 0xFFFFFFFF

    def fin(self, w):
        w.tcp(self.client, self.server, self.cport, self.sport, self.cseq, self.sseq, FIN | ACK)
        w.tcp(self.server, self.client, self.sport, self.cport, self.sseq, self.cseq + 1, FIN | ACK)
        w.tcp(self.client, self.server, self.cport, self.sport, self.cseq + 1, self.sseq + 1, ACK)


class Shape:
    """Connection addressing, ISNs and the per-attack bookkeeping of one capture."""

    def __init__(self, rng):
        self.rng = rng
        self.next_conn = 0
        self.good_calls = []
        # What the attack makes calltap hold; see `describe` for the meaning of each entry.
        self.loads = {
            "open_conns": 0,
            "ooo_holds": 0, "ooo_min_bytes": None, "ooo_max_dir_bytes": 0, "ooo_max_dir_segments": 0,
            "ooo_total_bytes": 0,
            "small_heads": 0, "small_head_min_bytes": None, "small_head_total_bytes": 0,
            "long_heads": 0,
            "max_pipelined": 0,
            "tls_too_long": 0,
            "hpack_bad": 0,
            "llm_bodies": 0, "llm_body_bytes": 0,
            "dns_tcp_partials": 0, "dns_tcp_partial_bytes": 0,
            "frag_datagrams": 0, "frag_bytes": 0,
        }

    def isn(self):
        # Distinct initial sequence numbers, some just below the wrap so the sequence space wraps mid-stream.
        if self.rng.random() < 0.1:
            return (0xFFFFFFFF - self.rng.randrange(0, 200_000)) & 0xFFFFFFFF
        return self.rng.getrandbits(32)

    def conn(self, kind, sport):
        """A new hostile connection from a client address and port no other connection uses."""
        n = self.next_conn
        self.next_conn += 1
        hi = n >> 14
        client = bytes([10, 64 + ((hi >> 16) & 0x3F), (hi >> 8) & 0xFF, hi & 0xFF])
        server = bytes([93, 184, 216, SERVERS[kind]])
        self.loads["open_conns"] += 1
        return Conn(client, 1024 + (n & 0x3FFF), server, sport, self.isn(), self.isn())

    def good_call(self, w):
        """One complete, well-formed HTTP/1.1 exchange on its own connection, port 8080."""
        k = len(self.good_calls)
        path = f"/good/{k}"
        c = Conn(GOOD_CLIENT, 40000 + k, GOOD_SERVER, GOOD_PORT, self.isn(), self.isn())
        c.syn(w)
        c.synack(w)
        c.ack(w)
        req = f"GET {path} HTTP/1.1\r\nHost: good.example.com\r\nUser-Agent: agent\r\n\r\n".encode()
        c.segment(w, True, req)
        body = b'{"ok":true,"n":%d}' % k
        resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        c.segment(w, False, resp, advance_us=2000)
        c.fin(w)
        self.good_calls.append(path)

    def hold_ooo(self, nbytes, nsegs):
        L = self.loads
        L["ooo_holds"] += 1
        L["ooo_total_bytes"] += nbytes
        L["ooo_min_bytes"] = nbytes if L["ooo_min_bytes"] is None else min(L["ooo_min_bytes"], nbytes)
        L["ooo_max_dir_bytes"] = max(L["ooo_max_dir_bytes"], nbytes)
        L["ooo_max_dir_segments"] = max(L["ooo_max_dir_segments"], nsegs)

    def hold_head(self, nbytes):
        L = self.loads
        if nbytes > HEAD_CAP:
            L["long_heads"] += 1
        else:
            L["small_heads"] += 1
            L["small_head_total_bytes"] += nbytes
            L["small_head_min_bytes"] = nbytes if L["small_head_min_bytes"] is None else min(L["small_head_min_bytes"], nbytes)


# MARK: Segmenting

SEG_MODES = ["mss", "random", "small", "tiny", "gso", "mixed"]


def seg_size(rng, mode):
    if mode == "mss":
        return 1460
    if mode == "random":
        return rng.randint(1, 1460)
    if mode == "small":
        return rng.randint(1, 64)
    if mode == "tiny":
        return 1
    if mode == "gso":
        return GSO
    return GSO if rng.random() < 0.2 else rng.randint(1, 1460)  # mixed


def send(w, c, from_client, data, rng, mode, first_min=0):
    """Sends `data` in order, cut into segments as `mode` says; the first segment carries at least
    `first_min` bytes, so protocol detection sees the opening whole (a request line, a preface, a record
    header) and the attack reaches the parser it is meant for. Yields after each packet."""
    i = 0
    first = True
    while i < len(data):
        n = seg_size(rng, mode)
        if first:
            n = max(n, first_min)
            first = False
        c.segment(w, from_client, data[i:i + n])
        i += n
        yield


AVG_SEGMENT = {"mss": 1460, "random": 730, "small": 32, "tiny": 1, "gso": GSO, "mixed": 4500}


def payload_limit(budget, n, mode, floor, setup_packets=4):
    """Payload bytes one of n connections may send in `mode` segments within the attack's (packets,
    bytes) budget: tiny segments run out of packets long before they run out of bytes."""
    per_conn_packets = max(1, budget[0] // max(1, n) - setup_packets)
    per_conn_bytes = budget[1] // max(1, n) - 70 * setup_packets
    return max(floor, min(per_conn_bytes, per_conn_packets * AVG_SEGMENT[mode]))


# MARK: Attacks. Each builds its connections as generators that write one packet per step, so a shape can
# write them one after the other or interleaved. `budget` is (packets, bytes) this attack may write.

def attack_ooo(sh, w, rng, n, budget):
    """Holes that never fill: after the handshake (and sometimes an in-order request), data arrives
    past a hole in one direction."""
    mode = rng.choice(SEG_MODES)
    hole_kind = rng.choice(["100k", "random", "small", "1mb"])
    per_conn_pkts = max(1, budget[0] // max(1, n) - 5)
    per_conn_bytes = max(1, budget[1] // max(1, n))
    max_segs = rng.choice([1, 4, 16, 64, 512, 2100, 3000])
    max_segs = max(1, min(max_segs, per_conn_pkts))
    syn_only_share = rng.choice([0.0, 0.0, 0.5, 1.0])
    params = {"kind": "ooo", "conns": n, "segments": mode, "hole": hole_kind, "max_segments": max_segs,
              "syn_only_share": syn_only_share}

    def one(i):
        c = sh.conn("ooo", 80)
        syn_only = rng.random() < syn_only_share
        c.syn(w)
        yield
        if not syn_only:
            c.synack(w)
            yield
            c.ack(w)
            yield
        # Server-side holes need the SYN/ACK to fix where the server's stream starts.
        from_client = syn_only or rng.random() < 0.5
        if not syn_only and rng.random() < 0.5:
            req = f"GET /held/{i} HTTP/1.1\r\nHost: ooo.example.com\r\n\r\n".encode()
            c.segment(w, True, req)
            yield
        hole = {"100k": 100_000, "random": rng.randint(1, 1_000_000), "small": rng.randint(1, 1460),
                "1mb": 1_000_000}[hole_kind]
        k = rng.randint(1, max_segs)
        sizes = []
        total = 0
        for _ in range(k):
            s = seg_size(rng, mode)
            if total + s > per_conn_bytes and sizes:
                break
            sizes.append(s)
            total += s
        offsets = []
        off = hole
        for s in sizes:
            offsets.append((off, s))
            off += s
        if rng.random() < 0.3:
            rng.shuffle(offsets)  # the held segments themselves out of order
        for off, s in offsets:
            c.segment(w, from_client, filler(s), offset=off, flags=ACK)
            yield
        sh.hold_ooo(total, len(sizes))

    return params, [one(i) for i in range(n)]


def attack_heads(sh, w, rng, n, budget):
    """HTTP/1 heads that never end: header lines (or one endless line) and no blank line."""
    mode = rng.choice(SEG_MODES)
    long = rng.random() < 0.4
    if long:
        size = rng.randint(HEAD_CAP + 4096, 300_000)
    else:
        size = rng.randint(1_000, 60_000)
    size = min(size, payload_limit(budget, n, mode, 200, setup_packets=5))
    side = rng.choice(["request", "response"])
    lines = rng.choice(["filler", "one-line"])
    params = {"kind": "heads", "conns": n, "segments": mode, "head_bytes": size, "side": side, "lines": lines}

    def one(i):
        c = sh.conn("heads", 80)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        if side == "request":
            start = f"GET /slow/{i} HTTP/1.1\r\nHost: heads.example.com\r\n".encode()
        else:
            req = f"GET /slow-response/{i} HTTP/1.1\r\nHost: heads.example.com\r\n\r\n".encode()
            c.segment(w, True, req)
            yield
            start = b"HTTP/1.1 200 OK\r\nServer: endless\r\n"
        if lines == "filler":
            line = b"X-Filler: " + b"a" * rng.randint(1, 200) + b"\r\n"
            rest = (line * (size // len(line) + 1))[:max(0, size - len(start))]
        else:
            rest = b"X-Endless: " + filler(max(0, size - len(start) - 11))
        head = start + rest
        yield from send(w, c, side == "request", head, rng, mode, first_min=len(start))
        sh.hold_head(len(head))

    return params, [one(i) for i in range(n)]


def attack_chunks(sh, w, rng, n, budget):
    """Chunked responses whose chunk-size line never ends, or announces an absurd size."""
    mode = rng.choice(SEG_MODES)
    variant = rng.choice(["endless-extension", "endless-digits", "absurd-size"])
    line_bytes = min(rng.choice([5_000, 60_000, 1_000_000]), payload_limit(budget, n, mode, 100, setup_packets=5))
    params = {"kind": "chunks", "conns": n, "segments": mode, "variant": variant, "line_bytes": line_bytes}

    def one(i):
        c = sh.conn("chunks", 80)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        req = f"GET /chunks/{i} HTTP/1.1\r\nHost: chunks.example.com\r\n\r\n".encode()
        c.segment(w, True, req)
        yield
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        c.segment(w, False, head)
        yield
        if variant == "endless-extension":
            body = b"10;ext=" + filler(line_bytes)
        elif variant == "endless-digits":
            body = b"f" * line_bytes
        else:
            body = b"7fffffffffffffff\r\n" + filler(line_bytes)
        yield from send(w, c, False, body, rng, mode)

    return params, [one(i) for i in range(n)]


def attack_pipeline(sh, w, rng, n, budget):
    """Pipelined requests that are never answered."""
    mode = rng.choice(["mss", "random", "gso", "mixed"])
    req = b"GET /p HTTP/1.1\r\nHost: pipeline.example.com\r\n\r\n"
    count = rng.choice([10, 500, 1100, 3000, 20_000])
    count = max(1, min(count, payload_limit(budget, n, mode, len(req)) // len(req)))
    params = {"kind": "pipeline", "conns": n, "segments": mode, "requests_per_conn": count}

    def one(i):
        c = sh.conn("pipeline", 80)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        yield from send(w, c, True, req * count, rng, mode, first_min=len(req))
        sh.loads["max_pipelined"] = max(sh.loads["max_pipelined"], count)

    return params, [one(i) for i in range(n)]


def attack_held(sh, w, rng, n, budget):
    """Printable bytes that are not yet recognisable as any protocol, starting with a 1-byte segment:
    calltap holds them while it waits for the server to speak."""
    size = min(rng.choice([100, 4_000, 8_000, 20_000]), payload_limit(budget, n, "random", 2))
    params = {"kind": "held", "conns": n, "bytes_per_conn": size}

    def one(i):
        c = sh.conn("held", 80)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        data = b"G" + b"E" * (size - 1)
        c.segment(w, True, data[:1])
        yield
        yield from send(w, c, True, data[1:], rng, "random")

    return params, [one(i) for i in range(n)]


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, length):
    return struct.pack("!I", length)[1:] + struct.pack("!BBI", ftype, flags, stream)


def hpack_int(value, prefix_bits, first):
    """An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def attack_h2(sh, w, rng, n, budget, variant=None, announce=None, sent=None, mode=None, settings_table="draw"):
    """HTTP/2 with prior knowledge; after the preface and SETTINGS, one of: a DATA or HEADERS frame
    announcing far more than is sent, a CONTINUATION flood, an HPACK table-size update announcing a
    huge table."""
    variant = variant or rng.choice(["data", "headers", "continuation", "table-size"])
    mode = mode or rng.choice(SEG_MODES)
    per_conn_bytes = payload_limit(budget, n, mode, 64)
    if announce is None:
        announce = rng.choice([1 << 14, 1 << 20, (1 << 20) - 9, 1 << 23, (1 << 24) - 1])
    if sent is None:
        sent = rng.choice([1_000, 14 * 1024, 64 * 1024, 900_000, 2_000_000])
    sent = min(sent, announce + 9, per_conn_bytes)
    table = rng.choice([4096, 65536, H2_FRAME_CAP, H2_FRAME_CAP + 1, 1 << 24, (1 << 31) - 1])
    if settings_table == "draw":
        settings_table = rng.choice([None, 4096, 1 << 20, (1 << 31) - 1])
    params = {"kind": "h2", "conns": n, "variant": variant, "segments": mode}
    if variant in ("data", "headers"):
        params.update(announce=announce, sent=sent)
    elif variant == "continuation":
        params.update(flood_bytes=sent)
    else:
        params.update(table_size=table)
    if settings_table is not None:
        params["settings_header_table_size"] = settings_table

    def one(i):
        c = sh.conn("h2", 80)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        settings = b"" if settings_table is None else struct.pack("!HI", 1, settings_table)
        opening = H2_PREFACE + h2_frame(4, 0, 0, len(settings)) + settings
        if variant in ("data", "headers"):
            ftype = 0 if variant == "data" else 1
            # HEADERS without END_HEADERS; DATA without END_STREAM: neither completes within what is sent.
            stream = h2_frame(ftype, 0, 1, announce) + filler(max(0, sent - 9))
        elif variant == "continuation":
            frames = [h2_frame(1, 0, 1, 1), b"\x82"]  # HEADERS (:method GET), END_HEADERS not set
            total = 10
            piece = min(rng.choice([1, 16, 1000, 16384]), max(1, sent // 4))
            while total < sent:
                frames.append(h2_frame(9, 0, 1, piece) + b"\x86" * piece)  # CONTINUATION, never the last
                total += 9 + piece
            stream = b"".join(frames)
        else:
            block = hpack_int(table, 5, 0x20) + b"\x82\x86\x84" + b"\x41\x0bh2.example.com"
            stream = h2_frame(1, 0x05, 1, len(block)) + block  # END_HEADERS | END_STREAM
            if table > H2_FRAME_CAP:
                sh.loads["hpack_bad"] += 1
        yield from send(w, c, True, opening + stream, rng, mode, first_min=len(opening))

    return params, [one(i) for i in range(n)]


def client_hello_start(announce, sni=b"tls.example.com"):
    """The opening of a ClientHello whose handshake header announces `announce` bytes of body: version,
    random, session id, cipher suites, compression and an SNI extension; the rest is filler."""
    ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    body = (b"\x03\x03" + b"\x42" * 32 + b"\x00" + b"\x00\x04\x13\x01\x13\x02" + b"\x01\x00"
            + struct.pack("!H", min(0xFFFF, max(0, announce - 44))) + ext_sni)
    return b"\x01" + struct.pack("!I", announce)[1:] + body


def attack_tls(sh, w, rng, n, budget, variant=None, announce=None, sent=None, mode=None):
    """TLS ClientHellos that announce more than they send, or come in 1-byte records, or records longer
    than TLS allows."""
    variant = variant or rng.choice(["partial", "one-byte-records", "record-too-long"])
    mode = mode or rng.choice(SEG_MODES)
    per_conn_bytes = payload_limit(budget, n, mode, 64)
    if announce is None:
        announce = rng.choice([100_000, 120_000, TLS_HANDSHAKE_CAP + 1, 200_000, (1 << 24) - 1])
    if sent is None:
        sent = rng.choice([2_000, 14 * 1024, 40_000, 100_000])
    sent = min(sent, per_conn_bytes)
    record_len = rng.choice([TLS_RECORD_CAP + 1, 0xFFFF])
    params = {"kind": "tls", "conns": n, "variant": variant, "segments": mode}
    if variant == "partial":
        params.update(announce=announce, sent=sent)
    elif variant == "one-byte-records":
        params.update(announce=announce, records=sent // 6)
    else:
        params.update(record_length=record_len)

    def one(i):
        c = sh.conn("tls", 443)
        c.syn(w); yield
        c.synack(w); yield
        c.ack(w); yield
        if variant == "partial":
            # The handshake split over records of 2^14 bytes as a sender would; only the first `sent`
            # bytes of that stream are sent, so the last record and the message both stay incomplete.
            hs = client_hello_start(announce)
            hs += filler(max(0, min(announce + 4, sent) - len(hs)))
            stream = b"".join(b"\x16\x03\x01" + struct.pack("!H", min(16384, announce + 4 - k)) + hs[k:k + 16384]
                              for k in range(0, len(hs), 16384))[:sent]
            if announce > TLS_HANDSHAKE_CAP:
                sh.loads["tls_too_long"] += 1
        elif variant == "one-byte-records":
            hs = client_hello_start(announce)
            count = max(6, sent // 6)
            hs += filler(max(0, count - len(hs)))
            stream = b"".join(b"\x16\x03\x01\x00\x01" + hs[k:k + 1] for k in range(count))
            if announce > TLS_HANDSHAKE_CAP and count >= 4:
                sh.loads["tls_too_long"] += 1
        else:
            stream = b"\x16\x03\x03" + struct.pack("!H", record_len) + client_hello_start(1000) + filler(max(0, sent - 60))
            sh.loads["tls_too_long"] += 1
        yield from send(w, c, True, stream, rng, mode, first_min=6)

    return params, [one(i) for i in range(n)]


def attack_synflood(sh, w, rng, n, budget):
    """Connections that never carry data: a SYN, sometimes answered."""
    answered = rng.random() < 0.5
    params = {"kind": "synflood", "conns": n, "answered": answered}

    def one(i):
        c = sh.conn("synflood", 443)
        c.syn(w)
        yield
        if answered:
            c.synack(w)
            yield

    return params, [one(i) for i in range(n)]


ATTACKS = {"ooo": attack_ooo, "heads": attack_heads, "chunks": attack_chunks, "pipeline": attack_pipeline,
           "held": attack_held, "h2": attack_h2, "tls": attack_tls, "synflood": attack_synflood}


# MARK: Shapes

def run_connections(conns, order, rng):
    """Writes the connections' packets one connection after another, or interleaved round-robin (every
    connection opens before any has finished sending, so all of them hold state at once)."""
    if order == "sequential":
        for g in conns:
            for _ in g:
                pass
        return
    live = list(conns)
    while live:
        nxt = []
        for g in live:
            try:
                next(g)
                nxt.append(g)
            except StopIteration:
                pass
        live = nxt


def seeded_shape(w, seed, scale):
    rng = random.Random(seed)
    sh = Shape(rng)
    max_conns = max(1, int(100_000 * scale))
    # Volume budget, so a shape stays quick to write and read at small scales: 2M packets and 2 GB at
    # scale 1 (at least 20k packets and 20 MB).
    packets_budget = max(20_000, int(2_000_000 * scale))
    bytes_budget = max(20_000_000, int(2_000_000_000 * scale))
    total = max(1, int(round(math.exp(rng.uniform(0, math.log(max_conns))))))
    kinds = rng.sample(list(ATTACKS), rng.randint(1, 4))
    weights = [rng.random() + 0.05 for _ in kinds]
    order = rng.choice(["sequential", "sequential", "interleaved"])
    plan = []
    for kind, wt in zip(kinds, weights):
        share = wt / sum(weights)
        n = max(1, int(total * share))
        budget = (max(10, int(packets_budget * share) - 3 * n), max(1000, int(bytes_budget * share)))
        plan.append((kind, n, budget))
    good_before, good_middle, good_after = rng.randint(1, 3), rng.randint(0, 2), rng.randint(1, 3)
    for _ in range(good_before):
        sh.good_call(w)
    components = []
    conns = []
    for kind, n, budget in plan:
        params, gens = ATTACKS[kind](sh, w, rng, n, budget)
        components.append(params)
        conns.extend(gens)
    if order == "interleaved":
        rng.shuffle(conns)
    half = len(conns) // 2
    run_connections(conns[:half], order, rng)
    for _ in range(good_middle):
        sh.good_call(w)
    run_connections(conns[half:], order, rng)
    w.t += 200_000
    for _ in range(good_after):
        sh.good_call(w)
    return sh, components, order


def named_shape(w, name, scale):
    rng = random.Random(name)
    sh = Shape(rng)
    sh.good_call(w)
    sh.good_call(w)
    if name == "ooo-hole":
        n = max(1, int(100_000 * scale))
        components = [{"kind": "ooo", "conns": n, "syn_only_share": 1.0, "hole": 100_000, "segments": 4,
                       "segment_bytes": 1400}]

        def one(i):
            c = sh.conn("ooo", 80)
            c.syn(w)
            yield
            for k in range(4):
                c.segment(w, True, filler(1400), offset=100_000 + k * 1400, flags=ACK)
                yield
            sh.hold_ooo(5600, 4)
        gens = [one(i) for i in range(n)]
    elif name == "h2-frames":
        n = max(1, int(2_000 * scale))
        params, gens = attack_h2(sh, w, rng, n, (1 << 40, 1 << 40), variant="data", announce=1 << 20,
                                 sent=14 * 1024, mode="mss", settings_table=None)
        components = [params]
    elif name == "llm-bodies":
        # LLM API requests whose large bodies never end: each one's body is held while it is read, so
        # together they must stay inside the parsers' shared budget.
        n = max(1, int(300 * scale))
        size = 300_000
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.example\r\nContent-Type: application/json\r\n"
                b"Content-Length: 900000\r\n\r\n")
        body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + filler(size)
        components = [{"kind": "llm-bodies", "conns": n, "bytes_per_body": size}]
        sh.loads["llm_bodies"] = n
        sh.loads["llm_body_bytes"] = size

        def one(i):
            c = sh.conn("llm", 80)
            c.syn(w); yield
            c.synack(w); yield
            c.ack(w); yield
            yield from send(w, c, True, head + body, rng, "mss", first_min=len(head))
        gens = [one(i) for i in range(n)]
    elif name == "dns-tcp":
        # DNS over TCP whose length-prefixed messages never end: each connection announces a 65,535-byte
        # query and sends 60,000 bytes of it, which the framer holds in the parsers' shared budget.
        n = max(1, int(2_000 * scale))
        size = 60_000
        components = [{"kind": "dns-tcp", "conns": n, "announced": 65_535, "sent": size}]
        sh.loads["dns_tcp_partials"] = n
        sh.loads["dns_tcp_partial_bytes"] = size
        query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\x00\x01\x00\x01"

        def one(i):
            c = sh.conn("dnstcp", 53)
            c.syn(w); yield
            c.synack(w); yield
            c.ack(w); yield
            yield from send(w, c, True, struct.pack("!H", 65_535) + query + filler(size - len(query)), rng, "mss", first_min=2)
        gens = [one(i) for i in range(n)]
    elif name == "tls-partial":
        n = max(1, int(40_000 * scale))
        params, gens = attack_tls(sh, w, rng, n, (1 << 40, 1 << 40), variant="partial", announce=100_000,
                                  sent=14 * 1024, mode="mss")
        components = [params]
    elif name == "frag-flood":
        n = max(1, int(60_000 * scale))
        data = filler(1480)
        components = [{"kind": "frag-flood", "datagrams": n, "fragments_each": 3, "fragment_bytes": len(data)}]
        sh.loads["frag_datagrams"] = n
        sh.loads["frag_bytes"] = n * 3 * len(data)

        def one(i):
            src = bytes([10, 128 + (i >> 16) % 64, (i >> 8) & 0xFF, i & 0xFF])
            first = rng.randrange(1, 7500) * 8
            for k in range(3):
                w.ipv4_fragment(src, bytes([93, 184, 216, 53]), i & 0xFFFF, first + k * len(data), True, data)
            yield
        gens = [one(i) for i in range(n)]
    else:
        raise SystemExit(f"hostile_shapes.py: unknown shape {name!r} (ooo-hole, h2-frames, tls-partial, llm-bodies, dns-tcp, frag-flood)")
    half = len(gens) // 2
    run_connections(gens[:half], "sequential", rng)
    sh.good_call(w)
    run_connections(gens[half:], "sequential", rng)
    w.t += 200_000
    sh.good_call(w)
    sh.good_call(w)
    return sh, components, "sequential"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--shape", choices=["ooo-hole", "h2-frames", "tls-partial", "llm-bodies", "dns-tcp", "frag-flood"])
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    if (args.seed is None) == (args.shape is None):
        ap.error("give exactly one of --seed N and --shape NAME")
    d = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(d, exist_ok=True)
    w = Pcap(args.output)
    if args.shape:
        sh, components, order = named_shape(w, args.shape, args.scale)
    else:
        sh, components, order = seeded_shape(w, args.seed, args.scale)
    w.close()
    desc = {
        "shape": args.shape or "seeded",
        "seed": args.seed,
        "scale": args.scale,
        "packets": w.packets,
        "bytes": w.bytes,
        "capture_seconds": round((w.t - w.start) / 1e6, 3),
        "order": order,
        "components": components,
        "good_port": GOOD_PORT,
        "good_calls": sh.good_calls,
        "loads": sh.loads,
    }
    json.dump(desc, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
