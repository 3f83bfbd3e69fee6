#!/usr/bin/env python3
"""Deterministic text forms of what Scripts/golden pins that is not plain command output.

    golden_dump.py schema DB             the database schema, one entry per sqlite_master row, by name
    golden_dump.py rows DB               every table's rows, ordered (see dump_rows)
    golden_dump.py api BASE_URL OUTDIR   every API route of `calltap serve` into OUTDIR

Standard library only. Nothing is sorted that the program gives an order to: JSON keys and arrays
keep the order calltap wrote them in.
"""

import hashlib
import json
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request


def connect(path):
    # Read-only, so pinning the database cannot change it (no WAL checkpoint, no migration).
    return sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True)


def dump_schema(path):
    c = connect(path)
    for type_, name, table, sql in c.execute(
            "select type, name, tbl_name, sql from sqlite_master order by name"):
        print(f"-- {type_} {name} on {table}")
        # SQLite's own indexes for UNIQUE/PRIMARY KEY constraints have no SQL text.
        print((sql or "(no sql: made by SQLite for a constraint)") + ";")


def dump_rows(path):
    """Every table, by name. Left out: an INTEGER PRIMARY KEY column (the rowid; its values are
    insertion order, which the ordering below already shows). Rows are ordered by ts first when
    the table has it, then by every other column, so the order does not depend on insertion.
    Normalised: capture_stats.recorded_at, the wall-clock time of the run that wrote the row; it
    becomes "<run time N>", N counting the distinct times in the order met, so rows written
    together still show as written together."""
    c = connect(path)
    run_times = {}
    tables = [r[0] for r in c.execute("select name from sqlite_master where type = 'table' order by name")]
    for table in tables:
        info = c.execute(f'pragma table_info("{table}")').fetchall()  # cid, name, type, notnull, default, pk
        pk = [r for r in info if r[5]]
        rowid_alias = pk[0][1] if len(pk) == 1 and pk[0][2].upper() == "INTEGER" else None
        columns = [r[1] for r in info if r[1] != rowid_alias]
        order = (["ts"] if "ts" in columns else []) + [col for col in columns if col != "ts"]
        quoted = lambda names: ", ".join(f'"{n}"' for n in names)
        rows = c.execute(f'select {quoted(columns)} from "{table}" order by {quoted(order)}').fetchall()
        print(f"== {table}: {len(rows)} rows; columns: {', '.join(columns)}"
              + (f" (left out: {rowid_alias})" if rowid_alias else ""))
        for row in rows:
            values = dict(zip(columns, row))
            if table == "capture_stats" and "recorded_at" in values:
                n = run_times.setdefault(values["recorded_at"], len(run_times) + 1)
                values["recorded_at"] = f"<run time {n}>"
            print(json.dumps(list(values.values()), ensure_ascii=False))


def fetch(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:  # 4xx/5xx: the body is still the route's answer
        return e.code, e.headers.get("Content-Type", ""), e.read()


def dump_api(base, outdir):
    """Every route in Sources/Server/APIServer.swift with fixed query parameters (the valid ones,
    and one of each kind of rejected parameter). For each: ROUTES.txt holds the status, the
    content type, the length and the SHA-256 of the exact body; the JSON bodies are also written
    re-indented (same keys, same order, same values) so that a change reads as a diff; /metrics
    is written with its order normalised (normalise_metrics), and so is its digest."""
    index = []

    def get(name, path, keep_body=True):
        status, ctype, body = fetch(base, path)
        if path == "/metrics" and status == 200:
            body = normalise_metrics(body)
        index.append(f"{name}\tGET {path}\t{status}\t{ctype}\t{len(body)} bytes\tsha256 {hashlib.sha256(body).hexdigest()}")
        if keep_body and ctype.startswith("application/json"):
            value = json.loads(body)
            with open(f"{outdir}/{name}.json", "w") as f:
                f.write(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
        elif keep_body:
            with open(f"{outdir}/{name}.txt", "wb") as f:
                f.write(body)
        return status, body

    get("healthz", "/healthz")
    get("calls", "/api/external-calls")
    get("calls-session", "/api/external-calls?session=golden")
    get("calls-session-id-unknown", "/api/external-calls?session_id=no-such-session")
    get("calls-host", "/api/external-calls?host=api.agent.test")
    get("calls-failed", "/api/external-calls?outcome=failed")
    get("calls-http-error", "/api/external-calls?outcome=http_error")
    get("calls-method-post", "/api/external-calls?method=POST")
    get("calls-window", "/api/external-calls?since=" + urllib.parse.quote(SINCE) + "&until=" + urllib.parse.quote(UNTIL))
    # Paging: the second page is asked for with the first page's cursor, as a client would.
    _, first = get("calls-page1", "/api/external-calls?limit=7")
    cursor = json.loads(first)["next_cursor"]
    if cursor is None:
        sys.exit("golden_dump: the first page of 7 calls has no next_cursor; the sample is too small to pin paging")
    get("calls-page2", "/api/external-calls?limit=7&before=" + urllib.parse.quote(cursor))
    get("calls-bad-limit", "/api/external-calls?limit=0")
    get("calls-bad-parameter", "/api/external-calls?colour=red")
    get("calls-bad-since", "/api/external-calls?since=yesterday")
    get("calls-bad-outcome", "/api/external-calls?outcome=sideways")
    get("calls-bad-cursor", "/api/external-calls?before=not-a-cursor")
    get("calls-repeated", "/api/external-calls?host=a&host=b")
    get("summary", "/api/external-calls/summary")
    get("summary-session", "/api/external-calls/summary?session=golden")
    get("summary-window", "/api/external-calls/summary?since=" + urllib.parse.quote(SINCE) + "&until=" + urllib.parse.quote(UNTIL))
    get("summary-bad-until", "/api/external-calls/summary?until=soon")
    get("timeline", "/api/external-calls/timeline")
    get("timeline-window", "/api/external-calls/timeline?session=golden&buckets=10&since=" + urllib.parse.quote(SINCE) + "&until=" + urllib.parse.quote(UNTIL))
    get("timeline-host", "/api/external-calls/timeline?host=api.agent.test&buckets=5")
    get("timeline-bad-buckets", "/api/external-calls/timeline?buckets=0")
    get("clawmetry-rows", "/api/local/external-calls?session_id=golden&since=&limit=5000")
    get("clawmetry-rows-bad", "/api/local/external-calls?limit=many")
    get("sessions", "/api/sessions")
    get("stats", "/api/stats")
    get("metrics", "/metrics")
    # A second scrape folds in no new rows: it must give the same counters.
    get("metrics-again", "/metrics", keep_body=False)
    get("not-found", "/api/nothing-here", keep_body=False)
    # The OpenAPI document and the dashboard are files in Sources/Server/Assets: only their digest.
    get("openapi", "/openapi.json", keep_body=False)
    get("dashboard", "/", keep_body=False)
    with open(f"{outdir}/ROUTES.txt", "w") as f:
        f.write("# name\trequest\tstatus\tcontent type\tbody length\tbody digest\n")
        f.write("\n".join(index) + "\n")


# A window inside Samples/agent-demo.pcap (calls from 16:43:29.092 to 16:43:29.914 UTC) that holds
# some of its calls but not all, given with milliseconds to pin their parsing too.
SINCE = "2026-11-25T16:43:29.120Z"
UNTIL = "2026-11-25T16:43:29.800Z"


def normalise_metrics(body):
    """The Prometheus registry keeps its metrics and their label sets in hash tables whose order
    changes from one process to the next, so only that order is normalised: metric families by
    name, and within a family the series by their labels (less `le`). A series' own lines (a
    histogram's buckets, _sum and _count) keep their order, and every value is kept as served."""
    families, current = [], None
    for line in body.decode().splitlines():
        if line.startswith("# HELP "):
            current = {"name": line.split()[2], "head": [line], "series": {}}
            families.append(current)
        elif line.startswith("#"):
            current["head"].append(line)
        else:
            labels = line.split("{", 1)[1].split("}", 1)[0] if "{" in line else ""
            key = ",".join(l for l in labels.split(",") if not l.startswith("le="))
            current["series"].setdefault(key, []).append(line)
    out = []
    for f in sorted(families, key=lambda f: f["name"]):
        out += f["head"]
        for key in sorted(f["series"]):
            out += f["series"][key]
    return ("\n".join(out) + "\n").encode()

if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "schema":
        dump_schema(*args)
    elif command == "rows":
        dump_rows(*args)
    elif command == "api":
        dump_api(*args)
    else:
        sys.exit(f"golden_dump: unknown command {command}")
