#!/usr/bin/env python3
"""Hostile OpenClaw state directories stay inside calltap's memory budget: for each budget B,

    peak RSS of `calltap read --transcripts DIR --format none --stats --memory-mb B SAMPLE`  <=  B + fixed(B)

where fixed(B) is the peak of the same run without --transcripts. DIR holds what an agent (or someone
writing in its directory) could leave there: a transcript of more tool calls and web_fetch results than
the caps keep, lines over the line cap, thousands of files, a symbolic link to a large file, and an
OpenClaw SQLite store whose Zstandard rows decompress past the cap or lie about their length. Each run
must exit 0 and count what it skipped (`transcript_entries_skipped`).

usage: transcript_memory.py BIN [--budgets 64,256] [--scale 1.0]
"""
import argparse
import json
import os
import sqlite3
import sys
import tempfile

from peak_rss import run as peak_run
import uuid

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Samples", "agent-demo.pcap")


def build(root, scale):
    sessions = f"{root}/agents/main/sessions"
    os.makedirs(sessions)
    sid = str(uuid.UUID(int=1))
    n = int(60_000 * scale)
    with open(f"{sessions}/{sid}.jsonl", "w") as f:
        f.write(json.dumps({"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-29T10:00:00.000Z", "cwd": "/"}) + "\n")
        for i in range(n):
            f.write(json.dumps({"type": "message", "id": f"{i:08x}", "message": {
                "role": "assistant", "model": "m", "usage": {"input": i, "output": i % 900}, "timestamp": 1764410400000 + i,
                "content": [{"type": "toolCall", "id": f"toolu_{i:016x}", "name": "web_fetch", "arguments": {}}]}}) + "\n")
            f.write(json.dumps({"type": "message", "id": f"r{i:07x}", "message": {
                "role": "toolResult", "toolCallId": f"toolu_{i:016x}", "toolName": "web_fetch",
                "details": {"url": f"https://h{i % 977}.test/p/{i}", "finalUrl": f"https://h{i % 977}.test/q/{i}",
                            "fetchedAt": "2026-11-29T10:00:02.000Z", "tookMs": i % 5000}}}) + "\n")
            if i % 10_000 == 0:
                f.write("x" * (3 << 20) + "\n")  # over the 2 MiB line cap
    for i in range(int(3000 * scale)):
        with open(f"{sessions}/{uuid.UUID(int=i + 2)}.jsonl", "w") as f:
            f.write('{"type":"message","message":{"role":"assistant","content":[{"type":"toolCall","id":"t%d"}]}}\n' % i)
    big = f"{root}/big.bin"
    with open(big, "wb") as f:
        f.truncate(512 << 20)  # sparse: a link to it must not be read
    os.symlink(big, f"{sessions}/{uuid.UUID(int=999_999)}.jsonl")
    os.makedirs(f"{root}/agents/main/agent")
    db = sqlite3.connect(f"{root}/agents/main/agent/openclaw-agent.sqlite")
    db.execute("CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT, created_at INTEGER,"
               " event_zstd BLOB, event_utf8_bytes INTEGER, navigation_json TEXT, PRIMARY KEY (session_id, seq))")
    bomb = zstandard.ZstdCompressor(level=19).compress(b"{" + b" " * (64 << 20) + b"}")  # 64 MiB of whitespace
    liar = zstandard.ZstdCompressor(level=1).compress(b'{"type":"message"}' * 1000)
    rows = []
    for i in range(int(400 * scale)):
        rows.append((sid, i, None, 0, bomb, 4 << 20, None))
        rows.append((sid, 10_000 + i, None, 0, liar, 5, None))
    db.executemany("INSERT INTO transcript_events VALUES (?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--budgets", default="64,256")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as root:
        build(root, a.scale)
        for b in [int(x) for x in a.budgets.split(",")]:
            base = ["read", "--format", "none", "--stats", "--memory-mb", str(b), SAMPLE]
            rc0, fixed, _ = peak_run(a.bin, base)
            rc, mb, stats = peak_run(a.bin, base + ["--transcripts", root])
            skipped = int(stats.get("transcript_entries_skipped", "0"))
            entries = int(stats.get("transcript_entries", "0"))
            ok = rc == 0 and rc0 == 0 and mb <= b + fixed and skipped > 0 and entries > 0
            failed += not ok
            print(f"{'ok' if ok else 'FAIL'}: transcripts at {b} MB: peak {mb:.0f} MB (limit {b + fixed:.0f}), "
                  f"{entries} entries read, {skipped} skipped, exit {rc}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
