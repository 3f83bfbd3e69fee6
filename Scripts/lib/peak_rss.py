"""Runs calltap under GNU time: exit status, the child's peak RSS in MB (through wait4, so this script's
own pages are not counted), and the counters `--stats` printed. Shared by the memory checks."""
import subprocess


def run(bin, args, timeout=900):
    r = subprocess.run(["/usr/bin/time", "-f", "%M", bin] + args, capture_output=True, text=True, timeout=timeout)
    lines = r.stderr.strip().splitlines()
    stats = {}
    for line in lines:
        if line.startswith("stats: "):
            stats = dict(kv.split("=") for kv in line[7:].split())
    return r.returncode, int(lines[-1]) / 1024, stats
