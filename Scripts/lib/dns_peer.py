"""A small authoritative DNS server over UDP for the live capture tests.

  dns_peer.py HOST ADDRESS   answers every A question with ADDRESS, every other type with no records
"""
import socket
import struct
import sys

host, address = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 53))
while True:
    query, peer = s.recvfrom(4096)
    if len(query) < 12:
        continue
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    question = query[12:end + 5]
    qtype = struct.unpack("!H", query[end + 1:end + 3])[0] if end + 3 <= len(query) else 0
    answers = b""
    if qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(address)
    header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, 1 if answers else 0, 0, 0)
    s.sendto(header + question + answers, peer)
