#!/usr/bin/env python3
"""Checks that calltap's peak RSS stays within its memory budget whatever the shape of the input:
for each hostile capture (seeded shapes and the named ones from hostile_shapes.py) and each budget,

    peak RSS of `calltap read --format none --stats --memory-mb B FILE`  <=  B + fixed(B)

where fixed(B) is the peak RSS of `calltap read --format none Samples/agent-demo.pcap --memory-mb B`
(the process itself: runtime, libraries, buffers). Each run must also exit 0, count what the shape
forced it to drop when the shape must have reached a cap at that budget, and (checked once per
shape, with --format jsonl at the smallest budget) record every well-formed call around the attack
exactly once, 200, ok.

usage: memory_shapes.py BIN [--seeds A-B] [--shapes ooo-hole,h2-frames,tls-partial,llm-bodies,dns-tcp,frag-flood|all]
                            [--budgets 64,128,256,512] [--scale 0.05] [--time-limit SEC]
                            [--keep-dir DIR] [--regressions] [--jobs N]

Without --seeds or --shapes it runs seeds 1-30. A run that goes over --kill-mb (6 GB) of RSS or past
--time-limit is killed and fails. A failing capture is kept in --keep-dir (default
Tests/Fixtures/memory-regressions/) as seed-N.pcap with its description when it is at most 5 MB;
larger ones are recorded as a line of seeds.txt there, from which --regressions writes them again.
Exits 1 on any failure.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GENERATOR = os.path.join(HERE, "hostile_shapes.py")
SAMPLE = os.path.join(ROOT, "Samples", "agent-demo.pcap")
NAMED = ["ooo-hole", "h2-frames", "tls-partial", "llm-bodies", "dns-tcp", "frag-flood"]
KEEP_MAX_BYTES = 5 * 1000 * 1000


# MARK: Running calltap

class Run:
    """The outcome of one calltap run: exit status, the child's peak RSS, time, counters, why it was killed."""

    def __init__(self):
        self.status = None
        self.peak_mb = None
        self.seconds = 0.0
        self.stats = {}
        self.stderr = ""
        self.killed = None  # "over N MB" or "over N s"
        self.calls = []     # the well-formed calls' records (jsonl runs only)


def limited(cmd, as_limit_mb):
    """`cmd` under an address-space ceiling (`ulimit -v`), a last resort: the watchdog in run_calltap
    normally ends a runaway first. The shell execs the command, so nothing else stays between."""
    if not as_limit_mb:
        return cmd
    return ["/bin/sh", "-c", f'ulimit -v {as_limit_mb * 1024} && exec "$@"', "sh"] + cmd


def child_of(pid):
    """The process GNU time started (calltap), once it exists."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_calltap(args, opts, jsonl_port=None):
    """Runs `BIN args...` under GNU time, which reports its child's peak RSS through wait4 (measuring from
    here would also count the pages this script had when it forked, which ru_maxrss keeps across exec).
    A watchdog polls the child's RSS and kills it past --kill-mb, or past --time-limit.
    With jsonl_port, stdout is read as JSON Lines and the HTTP calls to that port are kept."""
    r = Run()
    with tempfile.TemporaryDirectory(prefix="calltap-mem-") as tmp:
        rss_path = os.path.join(tmp, "rss")
        err_path = os.path.join(tmp, "stderr")
        with open(err_path, "wb") as err:
            start = time.monotonic()
            p = subprocess.Popen(limited([opts.time_bin, "-f", "%M", "-o", rss_path, opts.binary] + args, opts.as_limit_mb),
                                 stdout=subprocess.PIPE if jsonl_port else subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
            done = threading.Event()

            def watch():
                child = None
                while not done.wait(0.02):
                    child = child or child_of(p.pid)
                    if child is None:
                        continue
                    mb = rss_mb(child)
                    reason = None
                    if mb is not None and mb > opts.kill_mb:
                        reason = (f"over {opts.kill_mb // 1024} GB" if opts.kill_mb % 1024 == 0
                                  else f"over {opts.kill_mb} MB")
                    elif time.monotonic() - start > opts.time_limit:
                        reason = f"over {opts.time_limit:g} s"
                    if reason:
                        r.killed = reason
                        try:
                            os.kill(child, signal.SIGKILL)
                        except OSError:
                            pass
                        return

            t = threading.Thread(target=watch, daemon=True)
            t.start()
            if jsonl_port:
                marker = f'"server_port":{jsonl_port}'.encode()
                for line in p.stdout:
                    # Only the well-formed calls are decoded; the attack's own records are skipped unread.
                    if marker in line or marker.replace(b":", b": ") in line:
                        call = json.loads(line)
                        if call.get("server_port") == jsonl_port:
                            r.calls.append(call)
            r.status = p.wait()
            done.set()
            t.join()
            r.seconds = time.monotonic() - start
        with open(err_path, "rb") as f:
            r.stderr = f.read().decode(errors="replace")
        try:
            with open(rss_path) as f:
                r.peak_mb = int(f.read().split()[-1]) / 1024
        except (OSError, ValueError, IndexError):
            r.peak_mb = None
    for line in r.stderr.splitlines():
        if line.startswith("stats: "):
            r.stats = {k: int(v) for k, v in (kv.split("=", 1) for kv in line[7:].split())}
    return r


# MARK: What each shape must have dropped

def required_drops(desc, budget):
    """Counters that must be non-zero at this budget: (why, counters of which at least one is > 0).
    Derived from the shape's loads and calltap's documented caps (README, Limits), only where the cap is
    certainly reached: hostile connections never close and the whole capture spans less than the 3 s after
    which a full table sweeps unanswered handshakes, so the tracked connections are known."""
    L = desc["loads"]
    out = []
    # IP datagrams that never complete: more of them, or more of their bytes, than reassembly may hold.
    if L.get("frag_datagrams", 0) > 16 * budget or L.get("frag_bytes", 0) > budget << 16:
        out.append((f"{L['frag_datagrams']} incomplete IP datagrams > cap {16 * budget} or {budget << 16} bytes",
                    ["ip_fragments_over_cap"]))
    conn_cap = 160 * budget
    ooo_total_cap = budget << 17
    ooo_dir_cap = min(4 << 20, ooo_total_cap // 4)
    parser_cap = budget << 17
    short = desc.get("capture_seconds", 0) < 3
    evicting = L["open_conns"] > conn_cap
    if evicting:
        out.append((f"{L['open_conns']} open connections > cap {conn_cap}", ["evicted_for_capacity", "evicted_idle"]))
    # The per-connection reasoning holds when no connection is evicted, or when each connection's packets
    # are written together (an evicted connection is then never picked up again mid-stream).
    if not (desc["order"] == "sequential" or not evicting) or not short:
        return out

    def live(count):
        """A lower bound on how many of `count` such connections are still tracked at the end: once the
        table is full, eviction takes a sixteenth of it at a time, and the well-formed calls linger in it."""
        if not evicting:
            return count
        floor = conn_cap - conn_cap // 16 - 1 - len(desc["good_calls"])
        return max(0, count - (L["open_conns"] - floor))

    if L["ooo_holds"]:
        if L["ooo_max_dir_bytes"] > ooo_dir_cap or L["ooo_max_dir_segments"] > 2048:
            out.append((f"one direction holds {L['ooo_max_dir_bytes']} bytes in {L['ooo_max_dir_segments']} segments "
                        f"(cap {ooo_dir_cap} / 2048)", ["reassembly_cap_flushes"]))
        elif live(L["ooo_holds"]) * (L["ooo_min_bytes"] or 0) > ooo_total_cap:
            out.append((f"out-of-order bytes held > cap {ooo_total_cap}", ["reassembly_cap_flushes"]))
    if L["long_heads"]:
        out.append((f"{L['long_heads']} heads > 64 KiB", ["parse_errors", "parser_memory_refusals"]))
    if L["small_heads"] and live(L["small_heads"]) * (L["small_head_min_bytes"] or 0) > parser_cap:
        out.append((f"endless heads hold > cap {parser_cap}", ["parser_memory_refusals"]))
    if L["max_pipelined"] > 1024:
        out.append((f"{L['max_pipelined']} unanswered requests on a connection > 1024",
                    ["http_pending_dropped", "parser_memory_refusals"]))
    if L["tls_too_long"]:
        out.append((f"{L['tls_too_long']} TLS lengths over the caps", ["parse_errors"]))
    if L.get("llm_bodies") and live(L["llm_bodies"]) * min(L["llm_body_bytes"], min(1 << 20, parser_cap // 16)) > parser_cap:
        out.append((f"{L['llm_bodies']} LLM request bodies held > cap {parser_cap}", ["parser_memory_refusals"]))
    if L.get("dns_tcp_partials") and live(L["dns_tcp_partials"]) * L["dns_tcp_partial_bytes"] > parser_cap:
        out.append((f"{L['dns_tcp_partials']} partial DNS-over-TCP messages held > cap {parser_cap}", ["parser_memory_refusals"]))
    if L["hpack_bad"]:
        out.append((f"{L['hpack_bad']} HPACK table sizes over 1 MiB", ["parse_errors"]))
    return out


def check_good_calls(desc, calls):
    """Every well-formed call exactly once, 200, ok; nothing else on their port."""
    problems = []
    by_path = {}
    for c in calls:
        if c.get("kind") == "http":
            by_path.setdefault(c.get("path"), []).append(c)
    for path in desc["good_calls"]:
        got = by_path.pop(path, [])
        if len(got) != 1:
            problems.append(f"{path} recorded {len(got)} times")
        elif got[0].get("status_code") != 200 or got[0].get("outcome") != "ok":
            problems.append(f"{path} {got[0].get('status_code')} {got[0].get('outcome')}")
    if by_path:
        problems.append(f"unexpected calls on port {desc['good_port']}: {sorted(map(str, by_path))[:5]}")
    return problems


# MARK: One shape through every budget

class Item:
    def __init__(self, label, gen_args=None, pcap=None, desc=None):
        self.label = label
        self.gen_args = gen_args  # arguments for hostile_shapes.py, or None for a kept capture
        self.pcap = pcap
        self.desc = desc
        self.rows = []            # (budget, Run, limit_mb, problems, required drops)
        self.good_problems = []
        self.gen_seconds = 0.0
        self.error = None

    @property
    def failed(self):
        return bool(self.error or self.good_problems or any(row[3] for row in self.rows))


SHORT = {"evicted_for_capacity": "evict", "evicted_idle": "idle", "reassembly_cap_flushes": "flush",
         "parse_errors": "parse", "parser_memory_refusals": "refuse", "http_pending_dropped": "pending",
         "ip_fragments_over_cap": "frag-cap"}


def short_required(required):
    """The counters a row had to see, e.g. 'evict|idle,flush': groups by comma, alternatives by |."""
    return ",".join("|".join(SHORT.get(c, c) for c in counters) for _, counters in required) or "-"


def fmt_mb(mb):
    return "-" if mb is None else f"{mb:.0f}"


def process(item, opts, fixed, workdir):
    if item.gen_args is not None:
        item.pcap = os.path.join(workdir, item.label.replace("/", "_") + ".pcap")
        start = time.monotonic()
        g = subprocess.run([sys.executable, GENERATOR, item.pcap] + item.gen_args, capture_output=True, text=True)
        item.gen_seconds = time.monotonic() - start
        if g.returncode != 0:
            item.error = "generator failed: " + g.stderr.strip().splitlines()[-1] if g.stderr.strip() else "generator failed"
            return item
        item.desc = json.loads(g.stdout)
    for budget in opts.budgets:
        limit = budget + fixed[budget]
        r = run_calltap(["read", "--format", "none", "--stats", "--memory-mb", str(budget), item.pcap], opts)
        problems = []
        required = required_drops(item.desc, budget)
        if r.killed:
            problems.append(r.killed)
        elif r.status != 0:
            problems.append(f"exit status {r.status}")
        if "Fatal error" in r.stderr or "panic" in r.stderr.lower():
            problems.append("crash message on stderr")
        if r.peak_mb is None:
            problems.append("no peak RSS reported")
        elif r.peak_mb > limit:
            problems.append(f"peak {r.peak_mb:.1f} MB > {limit:.1f} MB")
        if not r.killed and r.status == 0:
            if not r.stats:
                problems.append("no stats line")
            else:
                for why, counters in required:
                    if not any(r.stats.get(c, 0) > 0 for c in counters):
                        problems.append(f"{why} but {'+'.join(counters)} = 0")
        item.rows.append((budget, r, limit, problems, required))
        print(f"  {item.label} @{budget}: {fmt_mb(r.peak_mb)} MB (limit {limit:.0f}) {r.seconds:.1f} s "
              + ("ok" if not problems else "FAILED: " + "; ".join(problems)), file=sys.stderr, flush=True)
    if opts.jsonl:
        budget = min(opts.budgets)
        r = run_calltap(["read", "--format", "jsonl", "--memory-mb", str(budget), item.pcap], opts,
                        jsonl_port=item.desc["good_port"])
        if r.killed:
            item.good_problems = [f"jsonl run {r.killed}"]
        elif r.status != 0:
            item.good_problems = [f"jsonl run exit status {r.status}"]
        else:
            item.good_problems = check_good_calls(item.desc, r.calls)
        if item.good_problems:
            print(f"  {item.label} calls: " + "; ".join(item.good_problems), file=sys.stderr, flush=True)
    return item


def keep_regression(item, opts):
    """Keeps a failing capture for later runs: the file itself when small, else how to write it again."""
    os.makedirs(opts.keep_dir, exist_ok=True)
    d = item.desc or {}
    name = f"seed-{d['seed']}" if d.get("seed") is not None else d.get("shape", item.label)
    if item.gen_args is None:
        return f"already kept: {item.pcap}"
    size = os.path.getsize(item.pcap) if item.pcap and os.path.exists(item.pcap) else None
    if size is not None and size <= KEEP_MAX_BYTES:
        dest = os.path.join(opts.keep_dir, name + ".pcap")
        shutil.copyfile(item.pcap, dest)
        with open(os.path.join(opts.keep_dir, name + ".json"), "w") as f:
            json.dump(d, f, separators=(",", ":"))
            f.write("\n")
        return f"kept {shown(dest)}"
    line = (f"seed={d['seed']}" if d.get("seed") is not None else f"shape={d.get('shape')}") + f" scale={d.get('scale')}"
    path = os.path.join(opts.keep_dir, "seeds.txt")
    existing = set()
    if os.path.exists(path):
        with open(path) as f:
            existing = {l.strip() for l in f}
    if line not in existing:
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write("# Failing shapes too large to keep as captures; memory_shapes.py --regressions writes them again.\n")
            f.write(line + "\n")
    return f"recorded '{line}' in {shown(path)}"


def shown(path):
    """A path as the table shows it: relative to the repository when inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


# MARK: Command line

def parse_seeds(text):
    seeds = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "-" in part:
            a, b = part.split("-", 1)
            seeds.extend(range(int(a), int(b) + 1))
        else:
            seeds.append(int(part))
    return seeds


def regression_items(opts):
    items = []
    if not os.path.isdir(opts.keep_dir):
        return items
    for name in sorted(os.listdir(opts.keep_dir)):
        if name.endswith(".pcap"):
            side = os.path.join(opts.keep_dir, name[:-5] + ".json")
            if os.path.exists(side):
                with open(side) as f:
                    desc = json.load(f)
                items.append(Item(f"kept:{name[:-5]}", pcap=os.path.join(opts.keep_dir, name), desc=desc))
    path = os.path.join(opts.keep_dir, "seeds.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                kv = dict(p.split("=", 1) for p in line.split())
                if "seed" in kv:
                    items.append(Item(f"seed {kv['seed']} x{kv['scale']}", ["--seed", kv["seed"], "--scale", kv["scale"]]))
                else:
                    items.append(Item(f"{kv['shape']} x{kv['scale']}", ["--shape", kv["shape"], "--scale", kv["scale"]]))
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--seeds", help="seeds, e.g. 1-30 or 3,7,10-12 (default 1-30 unless --shapes is given)")
    ap.add_argument("--shapes", default="", help="named shapes, comma-separated, or 'all'")
    ap.add_argument("--budgets", default="64,128,256,512")
    ap.add_argument("--scale", type=float, default=0.05,
                    help="connection counts and volumes relative to full scale (default 0.05: 30 seeds in about a minute)")
    ap.add_argument("--time-limit", type=float, default=300, help="seconds one calltap run may take")
    ap.add_argument("--kill-mb", type=int, default=6144, help="RSS at which a run is killed and fails")
    ap.add_argument("--as-limit-mb", type=int, default=16384, help="address-space ceiling for calltap (0: none)")
    ap.add_argument("--keep-dir", default=os.path.join(ROOT, "Tests", "Fixtures", "memory-regressions"))
    ap.add_argument("--regressions", action="store_true", help="also run what --keep-dir holds")
    ap.add_argument("--no-jsonl", dest="jsonl", action="store_false", help="skip the well-formed calls check")
    ap.add_argument("--jobs", type=int, default=1, help="shapes checked at once (their runs stay one at a time each)")
    ap.add_argument("--work-dir", help="where captures are written (default: a temporary directory, removed)")
    opts = ap.parse_args()
    opts.binary = os.path.abspath(opts.binary)
    opts.budgets = [int(b) for b in opts.budgets.split(",")]
    opts.time_bin = "/usr/bin/time"
    if not os.access(opts.binary, os.X_OK):
        sys.exit(f"memory_shapes.py: {opts.binary} is not executable")
    if not os.access(opts.time_bin, os.X_OK):
        sys.exit("memory_shapes.py: needs GNU time (/usr/bin/time; apt-get install time)")

    items = []
    shapes = NAMED if opts.shapes == "all" else [s for s in opts.shapes.split(",") if s]
    for s in shapes:
        if s not in NAMED:
            sys.exit(f"memory_shapes.py: unknown shape {s} ({', '.join(NAMED)})")
        items.append(Item(f"{s} x{opts.scale:g}", ["--shape", s, "--scale", str(opts.scale)]))
    seeds = parse_seeds(opts.seeds) if opts.seeds is not None else ([] if shapes or opts.regressions else list(range(1, 31)))
    for n in seeds:
        items.append(Item(f"seed {n} x{opts.scale:g}", ["--seed", str(n), "--scale", str(opts.scale)]))
    if opts.regressions:
        items += regression_items(opts)

    started = time.monotonic()
    fixed = {}
    for b in opts.budgets:
        r = run_calltap(["read", "--format", "none", SAMPLE, "--memory-mb", str(b)], opts)
        if r.status != 0 or r.peak_mb is None:
            sys.exit(f"memory_shapes.py: the fixed-size run failed at {b} MB: {r.stderr.strip()}")
        fixed[b] = r.peak_mb
    print("fixed size (agent-demo.pcap): " + ", ".join(f"{b} MB -> {fixed[b]:.1f} MB" for b in opts.budgets),
          file=sys.stderr, flush=True)

    workdir = opts.work_dir or tempfile.mkdtemp(prefix="calltap-shapes-")
    os.makedirs(workdir, exist_ok=True)
    done = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
            futures = [pool.submit(process, it, opts, fixed, workdir) for it in items]
            for f in futures:
                item = f.result()
                if item.failed:
                    item.kept = keep_regression(item, opts) if item.desc else None
                if item.gen_args is not None and item.pcap and os.path.exists(item.pcap) and not opts.work_dir:
                    os.remove(item.pcap)
                done.append(item)
    finally:
        if not opts.work_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    print("\nfixed size (agent-demo.pcap): " + ", ".join(f"{fixed[b]:.1f} MB at {b}" for b in opts.budgets))
    print(f"{'shape':24} {'packets':>9} {'budget':>6} {'peak MB':>8} {'limit MB':>8} {'s':>6}  {'must drop':18} ok")
    failures = 0
    for item in done:
        if item.error:
            print(f"{item.label:24} {'':>9} {'':>6} {'':>8} {'':>8} {'':>6}  FAILED: {item.error}")
            failures += 1
            continue
        for budget, r, limit, problems, required in item.rows:
            print(f"{item.label:24} {item.desc['packets']:>9} {budget:>6} {fmt_mb(r.peak_mb):>8} {limit:>8.0f} "
                  f"{r.seconds:>6.1f}  {short_required(required):18} "
                  + ("ok" if not problems else "FAILED: " + "; ".join(problems)))
        if item.good_problems:
            print(f"{item.label:24} well-formed calls FAILED: " + "; ".join(item.good_problems))
        if item.failed:
            failures += 1
            if getattr(item, "kept", None):
                print(f"{item.label:24} {item.kept}")
    print(f"\n{len(done)} shapes x {len(opts.budgets)} budgets in {elapsed:.0f} s; "
          f"{failures} shape{'s' if failures != 1 else ''} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
