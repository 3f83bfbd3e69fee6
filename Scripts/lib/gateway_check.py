#!/usr/bin/env python3
"""Checks calltap's calls from the gateway fixture against what the servers saw.

usage: gateway_check.py MODE CALLS TRUTH IDS [OTHER_CALLS]
  MODE joined:  every request the servers saw is a call of the right session, none ambiguous, tokens equal
                to what was sent, one keep-alive connection carrying both sessions' LLM calls, both
                sessions' overlapping fetches of one URL right, the cache hit claiming nothing;
  MODE wire:    (no transcripts) calls with a wire key are right, every other call has no session;
  MODE same:    CALLS and OTHER_CALLS give every request the same session, attribution and key.
Requests and calls are matched by the client's port and their place on the connection.
"""
import collections
import json
import sys

mode, calls_path, truth_path, ids_path = sys.argv[1:5]
ids = json.load(open(ids_path))
name = {ids["A"]: "A", ids["B"]: "B"}
truth = [json.loads(l) for l in open(truth_path) if l.strip()]


def load(path):
    calls = [json.loads(l) for l in open(path) if l.strip()]
    calls = [c for c in calls if c.get("kind") == "http" and c.get("server_ip", "").startswith("10.77.0.")]
    by_conn = collections.defaultdict(list)
    for c in calls:
        by_conn[(c["client_port"], c["server_port"])].append(c)
    keyed = {}
    for conn, cs in by_conn.items():
        for i, c in enumerate(sorted(cs, key=lambda c: c["ts"])):
            keyed[(conn[0], conn[1], i + 1)] = c
    return keyed


calls = load(calls_path)
failures = []


def fail(msg):
    failures.append(msg)
    print("  " + msg, file=sys.stderr)


def key(t):
    return (t["client_port"], t["server_port"], t["seq"])


if mode == "same":
    other = load(sys.argv[5])
    for t in truth:
        a, b = calls.get(key(t)), other.get(key(t))
        if a is None or b is None:
            fail(f"{t['path']}: missing in {'live' if a is None else 'offline'} calls")
            continue
        fa = (a.get("session_id"), a.get("attribution"), a.get("attribution_key"))
        fb = (b.get("session_id"), b.get("attribution"), b.get("attribution_key"))
        if fa != fb:
            fail(f"{t['path']}: live {fa} offline {fb}")
    print(f"same: {len(truth)} requests, {len(failures)} differences")
    sys.exit(1 if failures else 0)

keys = collections.Counter()
right = wrong = missing = ambiguous = unattributed = 0
for t in truth:
    c = calls.get(key(t))
    if c is None:
        missing += 1
        fail(f"no call for {t['host']}{t['path']} (session {name.get(t['session'])})")
        continue
    got = c.get("session_id")
    if c.get("attribution") == "ambiguous":
        ambiguous += 1
    if got == t["session"]:
        right += 1
        keys[c.get("attribution_key")] += 1
    elif got is None:
        unattributed += 1
        if mode == "joined":
            fail(f"{t['host']}{t['path']}: no session (want {name.get(t['session'])})")
    else:
        wrong += 1
        fail(f"{t['host']}{t['path']}: session {name.get(got, got)}, want {name.get(t['session'])} (key {c.get('attribution_key')})")
    if t.get("kind") in ("openai", "anthropic", "gemini"):
        cached = t["cached"] if t["kind"] != "anthropic" else t["cached"]
        if (c.get("llm_input_tokens"), c.get("llm_output_tokens")) != (t["input"], t["output"]) or c.get("llm_cache_read_tokens") != cached:
            fail(f"{t['path']}: tokens {c.get('llm_input_tokens')}/{c.get('llm_output_tokens')}/{c.get('llm_cache_read_tokens')}, "
                 f"sent {t['input']}/{t['output']}/{cached}")
    if mode == "wire" and got is not None and c.get("attribution_key") not in ("prompt_cache_key", "session_id_header"):
        fail(f"{t['path']}: decided by {c.get('attribution_key')} without transcripts")

print(f"{mode}: {len(truth)} requests: {right} right, {wrong} wrong, {unattributed} without a session, {missing} missing, "
      f"{ambiguous} ambiguous; keys {dict(keys)}")
if mode == "joined":
    if ambiguous:
        fail(f"{ambiguous} ambiguous calls")
    # One keep-alive connection carried LLM calls of both sessions.
    conns = collections.defaultdict(set)
    for t in truth:
        if t.get("kind") in ("openai", "anthropic", "gemini"):
            conns[(t["client_port"], t["server_port"])].add(t["session"])
    shared = [c for c, s in conns.items() if len(s) == 2]
    if not shared:
        fail("no connection carried both sessions' LLM calls")
    else:
        print(f"joined: {len(shared)} keep-alive connections carried both sessions' LLM calls")
    page = [t for t in truth if t["path"] == "/page"]
    if sorted(name.get(t["session"]) for t in page) != ["A", "B"]:
        fail(f"/page fetched by {[name.get(t['session']) for t in page]}, want A and B")
    cachedpage = [t for t in truth if t["path"] == "/cached"]
    if len(cachedpage) != 1:
        fail(f"/cached requested {len(cachedpage)} times, want once (the other fetch a cache hit)")
    for k in ("tool_call_id", "web_fetch"):
        if keys[k] == 0:
            fail(f"no call decided by {k}")
elif mode == "wire":
    if wrong:
        fail(f"{wrong} calls in the wrong session")
    if keys["prompt_cache_key"] == 0:
        fail("no call decided by prompt_cache_key")
sys.exit(1 if failures else 0)
