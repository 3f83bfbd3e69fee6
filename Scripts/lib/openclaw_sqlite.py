#!/usr/bin/env python3
"""Writes pi-format JSON Lines transcripts into OpenClaw's per-agent SQLite store, as OpenClaw does (agent
schema 23 and later): `agents/<agent>/agent/openclaw-agent.sqlite`, table `transcript_events`, WAL mode,
each event either as JSON text or as a level-1 Zstandard frame with a checksum, by OpenClaw's rule
(events of 1 KiB to 4 MiB without "\\u" or NUL, never the session header, kept compressed only when the
frame and its navigation metadata save at least max(64 bytes, 10 %)). Facts and sources:
../shared/OPENCLAW-FORMATS.md (openclaw/openclaw src/config/sessions/transcript-payload.ts).

usage: openclaw_sqlite.py [--follow] [--user UID] OUT_STATE SRC_STATE
  Reads SRC_STATE/agents/*/sessions/*.jsonl (with --follow, as they grow, until SIGTERM) and writes
  OUT_STATE/agents/<agent>/agent/openclaw-agent.sqlite. With --user, it runs as that user (and group) once
  its modules are loaded, as the agent's own writer would.
"""
import glob
import json
import math
import os
import signal
import sqlite3
import sys
import time

import zstandard

args = sys.argv[1:]
follow = "--follow" in args
if follow:
    args.remove("--follow")
if "--user" in args:
    i = args.index("--user")
    uid = int(args[i + 1])
    del args[i:i + 2]
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
out_state, src_state = args
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
dbs = {}
compressor = zstandard.ZstdCompressor(level=1, write_checksum=True)


def store(agent):
    if agent not in dbs:
        d = f"{out_state}/agents/{agent}/agent"
        os.makedirs(d, exist_ok=True)
        db = sqlite3.connect(f"{d}/openclaw-agent.sqlite")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("""CREATE TABLE IF NOT EXISTS transcript_events (
            session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT, created_at INTEGER NOT NULL,
            event_zstd BLOB, event_utf8_bytes INTEGER, navigation_json TEXT,
            PRIMARY KEY (session_id, seq), CHECK ((event_json IS NULL) <> (event_zstd IS NULL))) STRICT""")
        dbs[agent] = db
    return dbs[agent]


def row(line, is_header):
    raw = line.encode()
    if not is_header and 1024 <= len(raw) <= 4 << 20 and "\\u" not in line and "\0" not in line:
        frame = compressor.compress(raw)
        nav = json.dumps({"version": 1, "report": None, "navigation": None, "reset": None, "model": None,
                          "modelBytes": 0, "modelWithoutCheckpointBytes": 0, "withoutCustomDataBytes": len(raw)})
        if len(frame) + len(nav) <= len(raw) - max(64, math.ceil(len(raw) / 10)):
            return None, frame, len(raw), nav
    return line, None, len(raw), None


offsets, seqs, sessions = {}, {}, {}
while True:
    for path in sorted(glob.glob(f"{src_state}/agents/*/sessions/*.jsonl")):
        agent = path.split("/agents/")[1].split("/")[0]
        with open(path) as f:
            f.seek(offsets.get(path, 0))
            data = f.read()
        complete = data[: data.rfind("\n") + 1]
        offsets[path] = offsets.get(path, 0) + len(complete.encode())
        db = store(agent)
        for line in complete.splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            if e.get("type") == "session":
                sessions[path] = e["id"]
            sid = sessions.get(path, os.path.basename(path)[:-6])
            seq = seqs.get(path, 0)
            seqs[path] = seq + 1
            text, frame, n, nav = row(line, e.get("type") == "session")
            db.execute("INSERT INTO transcript_events (session_id, seq, event_json, created_at, event_zstd, event_utf8_bytes, navigation_json)"
                       " VALUES (?,?,?,?,?,?,?)", (sid, seq, text, int(time.time() * 1000), frame, n, nav))
        db.commit()
    if not follow or stop:
        break
    time.sleep(0.05)
for db in dbs.values():
    db.close()
