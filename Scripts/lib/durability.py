#!/usr/bin/env python3
"""Kills `calltap capture` with SIGKILL at random moments while an agent makes HTTP calls, then checks the
database: it opens, passes PRAGMA integrity_check, holds no half-written call, and holds every call that
finished longer ago than the commit window before the kill. Reports the calls lost and the worst window
(how long before the kill the oldest lost call had finished). Needs root (network namespaces).

usage: durability.py CALLTAP KILLS [--seed N]
"""
import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

AGENT, SERVER = "ct-dur-agent", "ct-dur-server"
AIP, SIP = "10.213.30.2", "10.213.30.1"
# A call is committed at most this long after it finished: the writer flushes every 250 ms and an
# HTTP call is complete when its response is; anything older that is missing is a failure.
ALLOWED_WINDOW = 1.5

CLIENT = r"""
import http.client, sys, time
out = open(sys.argv[1], "w", buffering=1)
i = 0
while True:
    i += 1
    c = http.client.HTTPConnection(sys.argv[2], 8080, timeout=5)
    try:
        c.request("GET", f"/dur/{i}")
        c.getresponse().read()
        out.write(f"/dur/{i} {time.time():.6f}\n")
    except Exception:
        pass
    finally:
        c.close()
    time.sleep(0.01)
"""


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def setup():
    teardown()
    sh("ip", "netns", "add", AGENT)
    sh("ip", "netns", "add", SERVER)
    sh("ip", "link", "add", "ct-dur0", "type", "veth", "peer", "name", "ct-dur1")
    sh("ip", "link", "set", "ct-dur0", "netns", AGENT)
    sh("ip", "link", "set", "ct-dur1", "netns", SERVER)
    sh("ip", "-n", AGENT, "addr", "add", AIP + "/24", "dev", "ct-dur0")
    sh("ip", "-n", SERVER, "addr", "add", SIP + "/24", "dev", "ct-dur1")
    for ns, dev in ((AGENT, "ct-dur0"), (SERVER, "ct-dur1")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown():
    sh("ip", "netns", "del", AGENT, check=False)
    sh("ip", "netns", "del", SERVER, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("kills", type=int)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    setup()
    tmp = tempfile.mkdtemp(prefix="calltap-durability-")
    server = subprocess.Popen(["ip", "netns", "exec", SERVER, "python3", "-m", "http.server", "8080", "--bind", SIP],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    failures, total_lost, total_done, worst = 0, 0, 0, 0.0
    try:
        for k in range(args.kills):
            db = os.path.join(tmp, f"kill{k}.db")
            log = os.path.join(tmp, f"client{k}.log")
            cap = subprocess.Popen([args.binary, "capture", "--netns", AGENT, "--db", db, "--format", "none"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            client = subprocess.Popen(["ip", "netns", "exec", AGENT, "python3", "-c", CLIENT, log, SIP])
            time.sleep(rng.uniform(1.0, 4.0))
            killed_at = time.time()
            os.kill(cap.pid, signal.SIGKILL)
            cap.wait()
            client.terminate()
            client.wait()
            done = {}
            for line in open(log):
                parts = line.split()
                if len(parts) == 2:
                    done[parts[0]] = float(parts[1])
            before_kill = {p: t for p, t in done.items() if t <= killed_at}
            problems = []
            try:
                c = sqlite3.connect(db)
                integrity = c.execute("pragma integrity_check").fetchone()[0]
                rows = c.execute("select path, status_code, outcome from calls where path like '/dur/%'").fetchall()
                c.close()
            except sqlite3.Error as e:
                integrity, rows = f"cannot open: {e}", []
            if integrity != "ok":
                problems.append(f"integrity_check: {integrity}")
            stored = {r[0] for r in rows}
            # http.server answers 404 here: a complete call has the status and its outcome.
            half = [r for r in rows if r[1] != 404 or r[2] != "http_error"]
            if half:
                problems.append(f"{len(half)} calls stored incomplete")
            if len(stored) != len(rows):
                problems.append("duplicate calls")
            lost = {p: t for p, t in before_kill.items() if p not in stored}
            window = killed_at - min(lost.values()) if lost else 0.0
            old = [p for p, t in lost.items() if killed_at - t > ALLOWED_WINDOW]
            if old:
                problems.append(f"{len(old)} calls finished more than {ALLOWED_WINDOW} s before the kill are missing")
            if len(before_kill) < 20:
                problems.append(f"only {len(before_kill)} calls made before the kill: no load")
            total_lost += len(lost)
            total_done += len(before_kill)
            worst = max(worst, window)
            failures += bool(problems)
            print(f"kill {k + 1}: after {killed_at - client_start(log, killed_at):.1f} s of load, "
                  f"{len(before_kill)} calls finished, {len(stored)} stored, {len(lost)} lost "
                  f"(window {window * 1000:.0f} ms), integrity {integrity}"
                  + ("" if not problems else " — FAILED: " + "; ".join(problems)))
    finally:
        server.terminate()
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"durability: {args.kills} kills (seed {args.seed}), {total_done} calls finished before the kills, "
          f"{total_lost} lost, worst window {worst * 1000:.0f} ms")
    sys.exit(1 if failures else 0)


def client_start(log, fallback):
    try:
        first = open(log).readline().split()
        return float(first[1]) if len(first) == 2 else fallback
    except OSError:
        return fallback


if __name__ == "__main__":
    main()
