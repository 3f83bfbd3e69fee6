#!/usr/bin/env bash
# Command-line behaviour: output formats, stdin, the database round trip, errors and exit codes.
# Every check fails when the feature it names is broken: none passes on empty output alone (an
# exclusion is compared with the calls it leaves out, a filter with the unfiltered calls), and the
# README's exit-code table has checks for each of its rows.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
corpus=../shared/corpus
demo=Samples/agent-demo.pcap
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
exec 3>&2 # stderr as given, for the checks' own explanations (check silences the commands' output)
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
# exits CODE CMD...: CMD exits with CODE and says why in exactly one line on stderr, starting with
# "calltap:" and with no stack trace (the README: errors are one line on stderr). Its stdout is left
# in $tmp/out and its stderr in $tmp/err for further checks.
exits() {
  local want=$1; shift
  "$@" > "$tmp/out" 2> "$tmp/err"
  local got=$? lines
  lines=$(wc -l < "$tmp/err")
  if [ "$got" = "$want" ] && [ "$lines" = 1 ] && grep -q '^calltap: ' "$tmp/err" && ! grep -qi 'backtrace\|fatal error' "$tmp/err"; then
    return 0
  fi
  echo "  exit $got (want $want), $lines stderr lines (want 1, starting 'calltap: '): $(head -c 300 "$tmp/err" | tr '\n' '|')" >&3
  return 1
}
# Like exits, and nothing is printed on stdout.
fails_quietly() { exits "$@" && [ ! -s "$tmp/out" ]; }
# jsonl_check FILE... <<'PY': runs the Python on stdin with `rows(path)` (the JSON objects of a
# JSON Lines file) and the file names in `files`; an assertion failing fails the check.
jsonl_check() {
  python3 -c "
import json, sys
def rows(path):
    return [json.loads(l) for l in open(path)]
files = sys.argv[1:]
exec(sys.stdin.read())" "$@"
}

# The bundled capture's calls, read once; several checks compare against them.
"$bin" read $demo --format jsonl > "$tmp/demo.jsonl" 2> "$tmp/demo.err"
demo_status=$?

check "the bundled capture carries the secret the redaction checks look for" grep -aq sk-demo $demo
# Success: exit 0, calls on stdout, nothing on stderr.
check "exit 0: read succeeds silently on stderr" bash -c "[ $demo_status = 0 ] && [ -s '$tmp/demo.jsonl' ] && [ ! -s '$tmp/demo.err' ]"

contract_fields() {
  jsonl_check "$tmp/demo.jsonl" <<'PY'
# The JSON Lines contract in the README: every field in every object, in one order.
contract = """kind ts ended_at latency_ms connection_id stream_id estimated trace_id parent_span_id session_id attribution attribution_key owner_source pid process
  exe cgroup agent target client_ip client_port server_ip server_port proxy scheme host method path url status_code
  http_version request_content_type response_content_type request_body_bytes response_body_bytes
  request_summary response_summary llm_provider llm_model llm_input_tokens llm_output_tokens llm_cache_read_tokens
  llm_ttft_ms llm_stop_reason llm_tool_calls sni alpn alpn_offered tls_version tls_cipher ja4 cert_subject cert_san
  dns_qtype dns_rcode dns_answers connect_ms tls_handshake_ms ttfb_ms outcome error weirds missed_bytes
  visibility bytes_sent bytes_received""".split()
rs = rows(files[0])
assert len(rs) >= 15, len(rs)
assert set(rs[0]) == set(contract), set(rs[0]) ^ set(contract)
assert all(list(r) == list(rs[0]) for r in rs)
assert [r["ts"] for r in rs] == sorted(r["ts"] for r in rs)
assert {r["outcome"] for r in rs} >= {"ok", "http_error", "reset", "refused", "timeout", "tls_failed", "dns_failed"}
assert not any("sk-demo" in json.dumps(r) for r in rs)
PY
}
check "jsonl: one object per call, every contract field, in start order" contract_fields

table_summary() {
  "$bin" read $demo > "$tmp/table.txt" || return 1
  python3 - "$tmp/table.txt" "$tmp/demo.jsonl" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
calls = sum(1 for _ in open(sys.argv[2]))
assert lines[0].split()[:2] == ["time", "kind"], lines[0]
end = lines.index("per host:")
assert lines[end - 1] == "" and end - 2 == calls, (end, calls)   # a row per call, then a blank line
assert lines[end + 1].split() == ["host", "calls", "failures", "p50_ms", "p95_ms"], lines[end + 1]
hosts = lines[end + 2:]                                           # and the summary is the end
assert hosts and sum(int(h.split()[1]) for h in hosts) == calls, hosts
PY
}
check "table: a row per call, then the per-host summary, which ends it" table_summary
check "stdin (-) reads the same calls" bash -c "'$bin' read - --format jsonl < $demo > '$tmp/stdin.jsonl' && [ -s '$tmp/stdin.jsonl' ] && cmp '$tmp/demo.jsonl' '$tmp/stdin.jsonl'"
check "output is deterministic" bash -c "'$bin' read $corpus/zeek/http/wikipedia.pcap --format jsonl > '$tmp/w1' && '$bin' read $corpus/zeek/http/wikipedia.pcap --format jsonl > '$tmp/w2' && [ -s '$tmp/w1' ] && cmp '$tmp/w1' '$tmp/w2'"
check "--session tags every call" bash -c "'$bin' read $demo --session s-tag --format jsonl | python3 -c '
import sys, json
rows = [json.loads(l) for l in sys.stdin]
assert rows and all(r[\"session_id\"] == \"s-tag\" for r in rows)'"
format_none() { "$bin" read $demo --format none > "$tmp/none.out" 2> "$tmp/none.err" && [ ! -s "$tmp/none.out" ] && [ ! -s "$tmp/none.err" ]; }
check "--format none prints nothing and exits 0" format_none

# A capture of loopback traffic only: nothing by default because it was left out (and counted), not
# because nothing was read.
loopback_excluded() {
  "$bin" read $corpus/zeek/http/connect-with-header.pcap --format jsonl --stats > "$tmp/lo.out" 2> "$tmp/lo.err" &&
    [ ! -s "$tmp/lo.out" ] && grep -q ' excluded_local=[1-9]' "$tmp/lo.err" && grep -q ' packets=[1-9]' "$tmp/lo.err"
}
check "loopback excluded by default (and counted)" loopback_excluded
check "--include-local brings loopback back" bash -c "'$bin' read $corpus/zeek/http/connect-with-header.pcap --include-local --format jsonl | grep -q CONNECT"

exclude_host() { # HOST: the calls left are exactly the others (the host, and its subdomains, go)
  "$bin" read $demo --format jsonl --exclude-host "$1" > "$tmp/ex.jsonl" || return 1
  jsonl_check "$tmp/demo.jsonl" "$tmp/ex.jsonl" "$1" <<'PY'
every, left, name = rows(files[0]), rows(files[1]), files[2]
under = lambda h: h is not None and (h == name or h.endswith("." + name))
kept = [r for r in every if not under(r["host"])]
assert left == kept, [r["host"] for r in left]
assert 0 < len(left) < len(every), (len(left), len(every))
PY
}
check "--exclude-host drops a domain and its subdomains, and only those" exclude_host agent.test
# typo-api.agent.test ends with the text api.agent.test but is not under it.
exclude_exact_host() { exclude_host api.agent.test && grep -q '"host":"typo-api.agent.test"' "$tmp/ex.jsonl"; }
check "--exclude-host api.agent.test keeps typo-api.agent.test" exclude_exact_host

bpf_filter() {
  "$bin" read $demo --format jsonl --filter 'udp port 53' > "$tmp/dns.jsonl" || return 1
  jsonl_check "$tmp/demo.jsonl" "$tmp/dns.jsonl" <<'PY'
every, filtered = rows(files[0]), rows(files[1])
assert filtered and len(filtered) < len(every), (len(filtered), len(every))
assert all(r["kind"] == "dns" and 53 in (r["server_port"], r["client_port"]) for r in filtered)
assert filtered == [r for r in every if r["kind"] == "dns"]   # the same DNS calls, and nothing else
PY
}
check "--filter keeps only the packets it matches (udp port 53: the DNS calls alone)" bpf_filter

# Answers larger than the MTU, fragmented by the kernel (Scripts/make-frag-captures): reassembled and parsed,
# and counted in the statistics.
fragments() {
  "$bin" read Tests/Fixtures/captures/fragments.pcap --format jsonl --stats > "$tmp/frag.jsonl" 2> "$tmp/frag.err" || return 1
  grep -q '^stats: .* ip_fragments=18 .* ip_datagrams_reassembled=5 ip_fragments_duplicate=0 ip_fragments_overlapping=0 ip_fragments_invalid=0 ip_fragments_timed_out=0 ip_fragments_over_cap=0$' "$tmp/frag.err" || return 1
  jsonl_check "$tmp/frag.jsonl" <<'PY'
rs = rows(files[0])
assert [(r["kind"], r["dns_qtype"]) for r in rs] == [("dns", "A"), ("dns", "AAAA"), ("quic", None)], rs
assert len(rs[0]["dns_answers"]) == 180 and rs[0]["dns_answers"][-1] == "A 10.215.1.180"
assert len(rs[1]["dns_answers"]) == 100 and rs[2]["sni"] == "frag.agent.test"
PY
}
check "IP fragments: large DNS answers and QUIC Initials reassembled, counted in --stats" fragments

db_round_trip() {
  "$bin" read $demo --db "$tmp/c.db" --session s1 --format none > "$tmp/db.out" || return 1
  [ ! -s "$tmp/db.out" ] || return 1
  "$bin" calls --db "$tmp/c.db" --session s1 --format jsonl > "$tmp/s1.jsonl" || return 1
  "$bin" calls --db "$tmp/c.db" --session other --format jsonl > "$tmp/other.jsonl" || return 1
  "$bin" calls --db "$tmp/c.db" --failed --format jsonl > "$tmp/failed.jsonl" || return 1
  jsonl_check "$tmp/demo.jsonl" "$tmp/s1.jsonl" "$tmp/other.jsonl" "$tmp/failed.jsonl" <<'PY'
every, stored, other, failed = (rows(f) for f in files)
assert every and [dict(r, session_id=None, attribution_key=None) for r in stored] == every    # every call, every field
assert all(r["attribution_key"] == "cli" for r in stored)
assert all(r["session_id"] == "s1" for r in stored)
assert other == []
expected = [r for r in every if r["outcome"] != "ok"]
assert failed and len(failed) == len(expected), (len(failed), len(expected))
assert all(r["outcome"] != "ok" for r in failed)
PY
}
check "--db stores every call, calls queries them back (--session, --failed)" db_round_trip
check "--summaries are kept and redacted" bash -c "'$bin' read $demo --summaries --format jsonl > '$tmp/sum.jsonl' && grep -q 'request_summary\":\"application/json' '$tmp/sum.jsonl' && ! grep -q sk-demo '$tmp/sum.jsonl'"
check "key log of garbage: calls still read, malformed lines reported once" bash -c "head -c 3000 /dev/urandom > '$tmp/junk.keylog'; out=\$('$bin' read $demo --keylog '$tmp/junk.keylog' --format jsonl 2>'$tmp/junk.err' | wc -l); [ \"\$out\" -ge 10 ] && [ \$(grep -c malformed '$tmp/junk.err') = 1 ]"

# The exit codes, a check for each row of the README's table (0 success is checked above).
# 1: usage error, one `calltap:` line.
check "exit 1: read with an unknown flag" fails_quietly 1 "$bin" read $demo --bogus
check "exit 1: read without a file" fails_quietly 1 "$bin" read
check "exit 1: read with a format it does not have" fails_quietly 1 "$bin" read $demo --format xml
check "exit 1: calls with an unknown flag" fails_quietly 1 "$bin" calls --db "$tmp/c.db" --bogus
check "exit 1: calls without --db" fails_quietly 1 "$bin" calls
# A time that does not parse is a usage error, and one that does is accepted on the same database.
since_nonsense() {
  fails_quietly 1 "$bin" calls --db "$tmp/c.db" --since yesterday &&
    "$bin" calls --db "$tmp/c.db" --since 2024-06-01T12:00:00Z --format jsonl | grep -q '"kind"'
}
check "exit 1: calls --since rejects nonsense (and takes a time)" since_nonsense
# 2: no input could be read.
check "exit 2: missing file" fails_quietly 2 "$bin" read /nonexistent.pcap
echo "garbage" > "$tmp/junk.pcap"
garbage_file() { fails_quietly 2 "$bin" read "$tmp/junk.pcap" && grep -q 'cannot read capture' "$tmp/err"; }
check "exit 2: garbage file, 'cannot read capture'" garbage_file
garbage_stdin() { fails_quietly 2 "$bin" read - < "$tmp/junk.pcap"; }
check "exit 2: garbage on stdin" garbage_stdin
bad_filter() { fails_quietly 2 "$bin" read $demo --filter 'port banana' && grep -q "filter 'port banana'" "$tmp/err"; }
check "exit 2: bad BPF filter" bad_filter
python3 -c "
import struct, sys
f = open(sys.argv[1], 'wb')
f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 147))
f.write(struct.pack('<IIII', 1, 0, 4, 4) + b'abcd')" "$tmp/user0.pcap"
link_type() { fails_quietly 2 "$bin" read "$tmp/user0.pcap" && grep -q 'unsupported link type .*DLT 147' "$tmp/err"; }
check "exit 2: unsupported link type, named" link_type
missing_keylog() { fails_quietly 2 "$bin" read $demo --keylog /nonexistent.keylog && grep -q 'cannot read key log' "$tmp/err"; }
check "exit 2: missing key log" missing_keylog
check "exit 2: unreadable key log (a directory)" fails_quietly 2 "$bin" read $demo --keylog /etc
# 0: a partial read reports the calls up to the damage, and stderr says where it stopped.
head -c 3000 $demo > "$tmp/cut.pcap"
truncated() {
  exits 0 "$bin" read "$tmp/cut.pcap" --format jsonl && grep -q "cut.pcap: damaged after [0-9]* packets" "$tmp/err" &&
    [ -s "$tmp/out" ] && [ "$(wc -l < "$tmp/out")" -lt "$(wc -l < "$tmp/demo.jsonl")" ]
}
check "exit 0: truncated file, calls up to the damage and where it stopped" truncated
missing_beside() { # [--strict]: the missing file named, every call of the good file reported
  exits "$1" "$bin" read /nonexistent.pcap $demo --format jsonl ${2:-} && grep -q /nonexistent.pcap "$tmp/err" &&
    cmp "$tmp/out" "$tmp/demo.jsonl"
}
check "exit 0: a missing file beside a good one, every call of the good one" missing_beside 0
garbage_beside() { exits "$1" "$bin" read "$tmp/junk.pcap" $demo --format jsonl ${2:-} && cmp "$tmp/out" "$tmp/demo.jsonl"; }
check "exit 0: a garbage file beside a good one" garbage_beside 0
# 3: the same partial reads with --strict, calls still reported.
truncated_strict() { exits 3 "$bin" read "$tmp/cut.pcap" --strict --format jsonl && [ -s "$tmp/out" ]; }
check "exit 3: truncated file with --strict" truncated_strict
check "exit 3: a missing file beside a good one with --strict" missing_beside 3 --strict
check "exit 3: a garbage file beside a good one with --strict" garbage_beside 3 --strict
# 4: the database cannot be opened or written.
check "exit 4: read --db in a directory that cannot exist" fails_quietly 4 "$bin" read $demo --db /proc/nope/calls.db
check "exit 4: read --db on a file that is not a database" fails_quietly 4 "$bin" read $demo --db "$tmp/junk.pcap"
check "exit 4: calls --db in a directory that cannot exist" fails_quietly 4 "$bin" calls --db /proc/nope/calls.db
check "exit 4: calls --db on a file that is not a database" fails_quietly 4 "$bin" calls --db "$tmp/junk.pcap"
# DNS rebinding: without a token the server answers only Host values naming it (or --allow-host names).
"$bin" read Samples/agent-demo.pcap --db "$tmp/serve.db" --format none >/dev/null 2>&1
sport=$((30000 + RANDOM % 20000))
"$bin" serve --db "$tmp/serve.db" --listen 127.0.0.1:$sport --allow-host calltap.lan >/dev/null 2>&1 &
serve_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$sport/healthz" && break; sleep 0.1; done
check "a rebinding Host is refused (403); the listen address, localhost and --allow-host are served" bash -c "
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.example' 'http://127.0.0.1:$sport/api/external-calls')\" = 403 ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.example:$sport' 'http://127.0.0.1:$sport/')\" = 403 ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:$sport/api/external-calls')\" = 200 ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost:$sport' 'http://127.0.0.1:$sport/api/external-calls')\" = 200 ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: calltap.lan:$sport' 'http://127.0.0.1:$sport/api/external-calls')\" = 200 ]"
kill $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null
check "--listen on an address that is not loopback needs --token" bash -c "
  timeout 5 '$bin' serve --db '$tmp/serve.db' --listen 0.0.0.0:$sport >/dev/null 2>&1; [ \$? = 1 ]"

# Files written as root are never written through a link an unprivileged user planted: the user (made
# here) plants links in a sticky world-writable directory and in its own; calltap refuses each with one
# line and the link targets stay as they were.
if [ "$(id -u)" = 0 ] && { id calltap-plant >/dev/null 2>&1 || useradd --system --no-create-home calltap-plant 2>/dev/null; }; then
  chmod 711 "$tmp" # the user may pass through, not list
  pub="$tmp/public"; mkdir -m 1777 "$pub"
  victim="$tmp/victim"; echo "untouched" > "$victim"; chmod 600 "$victim"
  as_user() { runuser -u calltap-plant -- "$@"; }
  as_user ln -s "$victim" "$pub/calls.db"
  as_user ln -s "$victim" "$pub/claw.jsonl"
  as_user ln -s "$victim" "$pub/registry.jsonl"
  as_user ln -s "$tmp/nowhere" "$pub/dangling.db"
  check "--db through a planted symlink: exit 4, one line, the target untouched" bash -c "
    out=\$('$bin' read Samples/agent-demo.pcap --db '$pub/calls.db' --format none 2>&1); code=\$?
    [ \$code = 4 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'symbolic link' &&
    [ \"\$(cat '$victim')\" = untouched ] && [ \"\$(stat -c %a '$victim')\" = 600 ]"
  check "--db through a dangling planted symlink creates nothing" bash -c "
    '$bin' read Samples/agent-demo.pcap --db '$pub/dangling.db' --format none >/dev/null 2>&1; [ \$? = 4 ] && [ ! -e '$tmp/nowhere' ]"
  check "--clawmetry-jsonl through a planted symlink is refused, the target keeps its mode" bash -c "
    [ -L '$pub/claw.jsonl' ] || exit 1
    out=\$(timeout 10 '$bin' capture -i lo --clawmetry-jsonl '$pub/claw.jsonl' 2>&1); code=\$?
    [ \$code = 1 ] && echo \"\$out\" | grep -q 'symbolic link' && [ \"\$(stat -c '%a %U' '$victim')\" = '600 root' ] &&
    [ \"\$(cat '$victim')\" = untouched ]"
  check "calltap run: a registry that is a planted symlink is refused" bash -c "
    '$bin' run --session s1 --registry '$pub/registry.jsonl' -- true >/dev/null 2>&1; [ \$? = 1 ] && [ \"\$(cat '$victim')\" = untouched ]"
  check "calltap run: a session id that climbs out of --keylog-dir is refused, nothing written" bash -c "
    '$bin' run --session ../../escaped --registry '$tmp/reg.jsonl' --keylog-dir '$tmp/keys' -- true >/dev/null 2>&1
    [ \$? = 1 ] && [ ! -e '$tmp/escaped.keys' ] && [ ! -e '$tmp/reg.jsonl' ]"
  as_user mkdir -m 777 "$pub/open" 2>/dev/null || mkdir -m 777 "$pub/open"
  chmod 777 "$pub/open"
  check "a database in a directory anyone can write is refused" bash -c "
    '$bin' read Samples/agent-demo.pcap --db '$pub/open/c.db' --format none 2>&1 | grep -q 'writable by every user'"
  check "read --session outside the session-id policy is a usage error" bash -c "
    '$bin' read Samples/agent-demo.pcap --session \"\$(printf 'a\\033[2Jb')\" --format none >/dev/null 2>&1; [ \$? = 1 ]"
else
  echo "file-safety checks skipped: not root, or no user could be made"
fi
# The ClawMetry file from read: a line for every external call by the README's kind → line table
# (worked out here from the JSON Lines, independently), and ClawMetry itself (PyPI) takes every line.
clawmetry_file() {
  python3 -c "import clawmetry" 2>/dev/null || python3 -m pip install -q clawmetry==0.12.937 >/dev/null 2>&1
  rm -f "$tmp/claw.jsonl"
  rm -f "$tmp/claw.db"
  CLAWMETRY_INTERCEPT_HOSTS_EXCLUDE=excluded-by-env.test "$bin" read $demo Samples/https-demo.pcap Samples/tls-gap.pcap \
    --keylog Samples/https-demo.keylog --clawmetry-jsonl "$tmp/claw.jsonl" --db "$tmp/claw.db" --format jsonl > "$tmp/claw-calls.jsonl" || return 1
  # The same calls through the ClawMetry-compatible read route.
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve --db "$tmp/claw.db" --listen 127.0.0.1:$port 2>/dev/null & local srv=$!
  for _ in $(seq 50); do curl -sf -o "$tmp/claw-route.json" "http://127.0.0.1:$port/api/local/external-calls?limit=2000" && break; sleep 0.1; done
  kill $srv; wait $srv 2>/dev/null
  expected=$(python3 - "$tmp/claw-calls.jsonl" <<'PY'
import ipaddress, json, sys
n = 0
for c in map(json.loads, open(sys.argv[1])):
    host = c["host"] or c["sni"] or c["server_ip"]
    ip = ipaddress.ip_address(c["server_ip"]) if c["server_ip"] else None
    if c["kind"] != "dns" and ip and (ip.is_loopback or ip.is_link_local): continue
    if c["kind"] == "http" and (c["estimated"] or c["method"] is None): continue
    if c["kind"] == "tls" and c["visibility"] == "decrypted": continue
    if c["kind"] == "dns" and c["outcome"] != "dns_failed": continue
    n += 1
print(n)
PY
)
  python3 Scripts/lib/clawmetry_check.py "$tmp/claw.jsonl" "$expected" "$tmp/claw-route.json" >&3 2>&3
}
check "--clawmetry-jsonl from read: a line for every external call, ClawMetry's own sync takes them all, and /api/local/external-calls gives ClawMetry's own rows" clawmetry_file

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
