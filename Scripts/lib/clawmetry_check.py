#!/usr/bin/env python3
"""Feeds calltap's ClawMetry file to ClawMetry itself (PyPI `clawmetry`): its own sync code
(`sync.sync_intercepted_events`, which tails `$CLAWMETRY_HOME/intercepted.jsonl`) ingests it into its
own store, and `LocalStore.query_external_calls` reads it back. Every line must come back, with its url,
status and latency, and failures must carry an error status.

With ROUTE_JSON (calltap's /api/local/external-calls answer over the same calls), its rows must be the
rows ClawMetry made from the file: the same ids (ClawMetry's own sha256 of ts, url and library) and the
same values in every column but node_id.

usage: clawmetry_check.py CLAWMETRY_FILE EXPECTED_LINES [ROUTE_JSON]
"""
import json
import os
import shutil
import sys
import tempfile

path, expected = sys.argv[1], int(sys.argv[2])
home = tempfile.mkdtemp()
os.environ["CLAWMETRY_HOME"] = home
os.environ["HOME"] = home  # ClawMetry's store and state live under the home directory
shutil.copy(path, os.path.join(home, "intercepted.jsonl"))
from clawmetry import sync  # noqa: E402  (after the environment is set)
from clawmetry import local_store  # noqa: E402

ingested = sync.sync_intercepted_events({"node_id": "calltap-test"}, {}, {"openclaw_dir": os.path.join(home, ".openclaw")})
store = local_store.get_store()
if hasattr(store, "flush"):
    store.flush()
rows = store.query_external_calls(limit=100000)
lines = [json.loads(l) for l in open(path) if l.strip()]
problems = []
if len(lines) != expected:
    problems.append(f"the file has {len(lines)} lines, calltap reported {expected} external calls")
if ingested != len(lines):
    problems.append(f"ClawMetry ingested {ingested} of {len(lines)} lines")
if len(rows) != len(lines):
    problems.append(f"ClawMetry returned {len(rows)} rows for {len(lines)} lines")
by_url = {}
for r in rows:
    by_url.setdefault((r["url"], r["ts"]), r)
for l in lines:
    if not l["url"] or not l["host"]:
        problems.append(f"a line without url or host: {l}")
    if l["outcome"] not in ("ok", "incomplete") and (l["status_code"] is None or l["status_code"] < 400):
        problems.append(f"a failure ClawMetry would not count as an error: {l['url']} {l['outcome']} {l['status_code']}")
urls = sorted(r["url"] for r in rows)
if urls != sorted(l["url"] for l in lines):
    problems.append("the urls ClawMetry returned differ from the file's")
if len(sys.argv) > 3:
    route = json.load(open(sys.argv[3]))
    mine = {r["id"]: r for r in route["rows"]}
    theirs = {r["id"]: r for r in rows}
    if set(mine) != set(theirs):
        problems.append(f"route ids differ from ClawMetry's: {len(set(mine) - set(theirs))} only in the route, "
                        f"{len(set(theirs) - set(mine))} only in ClawMetry")
    if route["count"] != len(route["rows"]):
        problems.append("the route's count is not its number of rows")
    for i, r in theirs.items():
        m = mine.get(i)
        if m is None:
            continue
        for col in ("ts", "host", "url", "method", "status_code", "library", "source", "input_tokens", "output_tokens", "model"):
            a, b = m.get(col), r.get(col)
            # ClawMetry stores a missing token count as 0.
            if str(a) != str(b) and not (a in (None, "") and b in (None, "")) and not (col.endswith("_tokens") and a is None and b == 0):
                problems.append(f"{r['url']}: {col} is {a!r} in the route, {b!r} in ClawMetry")
        if r.get("latency_ms") is not None and abs(float(m["latency_ms"]) - float(r["latency_ms"])) > 0.001:
            problems.append(f"{r['url']}: latency_ms {m['latency_ms']} in the route, {r['latency_ms']} in ClawMetry")
    print(f"route: {len(mine)} rows, {len(set(mine) & set(theirs))} with ClawMetry's own id and values")
kinds = {}
for l in lines:
    kinds[l["kind"]] = kinds.get(l["kind"], 0) + 1
failures = sum(1 for l in lines if l["outcome"] not in ("ok", "incomplete"))
print(f"clawmetry {getattr(sys.modules.get('clawmetry'), '__version__', '?')}: {len(lines)} lines "
      f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}; {failures} failures), {ingested} ingested by its sync, "
      f"{len(rows)} returned by query_external_calls")
for p in problems[:10]:
    print("  " + p)
sys.exit(1 if problems else 0)
