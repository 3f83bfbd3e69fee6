#!/usr/bin/env python3
"""Runs `calltap read` on each hostile capture written by hostile.py and checks the result: the run ends
normally, the child's peak RSS (through wait4 by GNU time, not the checker's own) stays under the cap, the
well-formed calls around the attack are recorded correctly, and what the attack forced calltap to drop
or give up is counted in its statistics.

usage: hostile_check.py CALLTAP DIR SCALE [--cap-mb 256]
"""
import argparse
import json
import os
import subprocess
import sys
import time


def run(binary, pcap, out_path, memory_mb):
    # GNU time reports the peak RSS of its own child through wait4. Measuring from here instead would
    # count the pages this checker had at fork time, which ru_maxrss keeps across exec.
    rss_path = out_path + ".rss"
    with open(out_path, "wb") as out:
        start = time.monotonic()
        child = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_path,
                                binary, "read", pcap, "--format", "jsonl", "--stats", "--memory-mb", str(memory_mb)],
                               stdout=out, stderr=subprocess.PIPE)
        seconds = time.monotonic() - start
    stderr = child.stderr.decode(errors="replace")
    rss_kb = int(open(rss_path).read().split()[-1])
    stats = {}
    for line in stderr.splitlines():
        if line.startswith("stats: "):
            stats = {k: int(v) for k, v in (kv.split("=") for kv in line[7:].split())}
    calls = [json.loads(line) for line in open(out_path)]
    return child.returncode, stderr, rss_kb / 1024, seconds, stats, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("dir")
    ap.add_argument("scale", type=float)
    ap.add_argument("--cap-mb", type=int, default=256, help="the --memory-mb budget, which peak RSS must stay under")
    args = ap.parse_args()
    s = args.scale

    def by_path(calls, path):
        return [c for c in calls if c.get("path") == path]

    def synflood(st, calls, budget):
        n = int(1_000_000 * s)
        yield st.get("flows") == n + 2, f"flows {st.get('flows')} == {n + 2}"
        connects = [c for c in calls if c["kind"] == "connect"]
        yield len(connects) == n, f"{len(connects)} unanswered connects reported of {n}"
        if n > budget * 160:  # the connection cap of that budget
            yield st.get("evicted_for_capacity", 0) > 0, f"evicted_for_capacity {st.get('evicted_for_capacity')} > 0"

    def ooo_gaps(st, calls, budget):
        n = int(100_000 * s)
        held = by_path(calls, "/held")
        yield len(held) == n, f"{len(held)} /held calls of {n}"
        yield all(c["outcome"] == "incomplete" for c in held), "every /held call is incomplete"
        yield st.get("gaps", 0) >= n, f"gaps {st.get('gaps')} >= {n}"
        if n * 5600 > 2 * (budget << 17):  # twice the out-of-order bytes cap (an eighth of the budget)
            yield st.get("reassembly_cap_flushes", 0) > 0, f"reassembly_cap_flushes {st.get('reassembly_cap_flushes')} > 0"

    def overlaps(st, calls, budget):
        n = int(20_000 * s)
        first = by_path(calls, "/first-copy")
        yield len(first) == n, f"{len(first)} /first-copy calls of {n}"
        yield all(c["status_code"] == 204 for c in first), "every status is the first copy's 204"
        yield not any("evil" in json.dumps(c) for c in calls), "nothing of the second copies is reported"
        yield st.get("retransmitted_segments", 0) >= n, f"retransmitted_segments {st.get('retransmitted_segments')} >= {n}"

    def huge_chunked(st, calls, budget):
        total = int(1_000_000_000 * s)
        chunks = 7 * -(-total // 56_000)
        big = by_path(calls, "/big")
        yield len(big) == 1 and big[0]["outcome"] == "ok", "/big is one ok call"
        yield big and big[0]["response_body_bytes"] == chunks * 8000, \
            f"/big body {big[0]['response_body_bytes'] if big else None} == {chunks * 8000}"
        endless = [c for c in calls if "header_too_long" in (c.get("weirds") or [])]
        yield len(endless) == 1 and endless[0].get("path") == "/endless", \
            "the endless head is one call, GET /endless, marked header_too_long"
        yield st.get("parse_errors", 0) >= 1, f"parse_errors {st.get('parse_errors')} >= 1"

    def many_heads(st, calls, budget):
        n = int(10_000 * s)
        slow = by_path(calls, "/slow")
        yield len(slow) == n, f"{len(slow)} /slow calls of {n}, each with its request line"
        if n * 60_000 > (budget << 17):
            yield st.get("parser_memory_refusals", 0) > 0, \
                f"parser_memory_refusals {st.get('parser_memory_refusals')} > 0"

    def pipelined(st, calls, budget):
        n = int(2_000_000 * s) // 32 * 32
        p = by_path(calls, "/p")
        yield len(p) == n, f"{len(p)} /p calls of {n}"
        yield all(c["outcome"] in ("no_response", "reset") for c in p), "every /p call is unanswered (or reset)"
        yield st.get("http_pending_dropped", 0) >= n - 1024, f"http_pending_dropped {st.get('http_pending_dropped')} >= {n - 1024}"
        yield st.get("calls_released_early", 0) > 0, f"calls_released_early {st.get('calls_released_early')} > 0"

    def tls(st, calls, budget):
        n = int(20_000 * s)
        weird = [c for c in calls if c["kind"] == "tls" and set(c.get("weirds") or []) & {"tls_record_too_long", "tls_handshake_too_long"}]
        yield len(weird) == n, f"{len(weird)} TLS connections with absurd lengths marked, of {n}"
        yield st.get("parse_errors", 0) >= n, f"parse_errors {st.get('parse_errors')} >= {n}"
        frag = [c for c in calls if c.get("sni") == "fragmented.example.com"]
        yield len(frag) == 1, "the ClientHello in 1-byte records still gives its SNI"

    def dns_loops(st, calls, budget):
        n = int(50_000 * s)
        yield st.get("dns_malformed") == n, f"dns_malformed {st.get('dns_malformed')} == {n}"

    checks = {"synflood": synflood, "ooo-gaps": ooo_gaps, "overlaps": overlaps, "huge-chunked": huge_chunked,
              "many-heads": many_heads, "pipelined": pipelined, "tls": tls, "dns-loops": dns_loops}
    failures = 0
    print(f"{'capture':18} {'packets':>9} {'seconds':>8} {'peak RSS':>9}  result")
    # Every capture with the default budget, and the two that fill the caps again with half of it.
    runs = [(name, check, args.cap_mb) for name, check in checks.items()]
    runs += [(name, checks[name], args.cap_mb // 2) for name in ("synflood", "ooo-gaps", "many-heads")]
    for name, check, budget in runs:
        pcap = os.path.join(args.dir, f"{name}.pcap")
        rc, stderr, rss, seconds, st, calls = run(args.binary, pcap, os.path.join(args.dir, f"{name}.jsonl"), budget)
        if budget != args.cap_mb:
            name = f"{name} @{budget}"
        results = [(rc == 0, f"exit status {rc}"),
                   (rss <= budget, f"peak RSS {rss:.0f} MB <= {budget} MB"),
                   ("Fatal error" not in stderr and "panic" not in stderr, "no crash message")]
        for path in ("/before", "/after"):
            c = by_path(calls, path)
            results.append((len(c) == 1 and c[0]["status_code"] == 200 and c[0]["outcome"] == "ok",
                            f"{path} recorded once, 200, ok"))
        results += list(check(st, calls, budget))
        bad = [text for ok, text in results if not ok]
        failures += bool(bad)
        print(f"{name:18} {st.get('packets', 0):>9} {seconds:>8.2f} {rss:>6.0f} MB  "
              + ("ok" if not bad else "FAILED: " + "; ".join(bad)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
