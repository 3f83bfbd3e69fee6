#!/usr/bin/env bash
# Command-line behaviour: output formats, stdin, the database round trip, errors and exit codes.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
corpus=../shared/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
exit_code() { "$@" >/dev/null 2>"$tmp/err"; echo $?; }

check "jsonl: one object per call, all fields" bash -c "'$bin' read Samples/agent-demo.pcap --format jsonl | python3 -c '
import sys, json
rows = [json.loads(l) for l in sys.stdin]
assert len(rows) >= 15, len(rows)
assert all(len(r) == len(rows[0]) for r in rows)
assert [r[\"ts\"] for r in rows] == sorted(r[\"ts\"] for r in rows)
assert {r[\"outcome\"] for r in rows} >= {\"ok\", \"http_error\", \"reset\", \"refused\", \"timeout\", \"tls_failed\", \"dns_failed\"}
assert not any(\"sk-demo\" in json.dumps(r) for r in rows)
'"
check "table ends with the per-host summary" bash -c "'$bin' read Samples/agent-demo.pcap | grep -q '^per host:'"
check "stdin (-) reads the same calls" bash -c "diff <('$bin' read Samples/agent-demo.pcap --format jsonl) <('$bin' read - --format jsonl < Samples/agent-demo.pcap)"
check "output is deterministic" bash -c "diff <('$bin' read $corpus/zeek/http/wikipedia.pcap --format jsonl) <('$bin' read $corpus/zeek/http/wikipedia.pcap --format jsonl)"
check "loopback excluded by default" bash -c "[ -z \"\$('$bin' read $corpus/zeek/http/connect-with-header.pcap --format jsonl)\" ]"
check "--include-local brings loopback back" bash -c "'$bin' read $corpus/zeek/http/connect-with-header.pcap --include-local --format jsonl | grep -q CONNECT"
check "--exclude-host" bash -c "! '$bin' read Samples/agent-demo.pcap --format jsonl --exclude-host agent.test | grep -q '\"host\":\"api.agent.test\"'"
check "--filter" bash -c "[ \"\$('$bin' read Samples/agent-demo.pcap --format jsonl --filter 'udp port 53' | grep -c '\"kind\":\"dns\"')\" -ge 3 ]"
check "--db stores, calls queries" bash -c "'$bin' read Samples/agent-demo.pcap --db '$tmp/c.db' --session s1 --format none && \
  [ \"\$('$bin' calls --db '$tmp/c.db' --session s1 --format jsonl | wc -l)\" = \"\$('$bin' read Samples/agent-demo.pcap --format jsonl | wc -l)\" ] && \
  '$bin' calls --db '$tmp/c.db' --failed --format jsonl | python3 -c 'import sys,json; assert all(json.loads(l)[\"outcome\"] != \"ok\" for l in sys.stdin)'"
check "--summaries are redacted" bash -c "'$bin' read Samples/agent-demo.pcap --summaries --format jsonl | grep -q 'request_summary\":\"application/json' && ! '$bin' read Samples/agent-demo.pcap --summaries --format jsonl | grep -q sk-demo"
check "missing file: exit 2 and one line" bash -c "[ \$('$bin' read /nonexistent.pcap 2>&1 >/dev/null | wc -l) = 1 ] && { '$bin' read /nonexistent.pcap >/dev/null 2>&1; [ \$? = 2 ]; }"
head -c 3000 Samples/agent-demo.pcap > "$tmp/cut.pcap"
check "truncated file: calls up to the damage, a message, exit 0" bash -c "'$bin' read '$tmp/cut.pcap' --format jsonl > '$tmp/cut.out' 2>'$tmp/cut.err'; [ \$? = 0 ] && grep -q damaged '$tmp/cut.err' && [ -s '$tmp/cut.out' ]"
check "truncated file with --strict: exit 3" bash -c "'$bin' read '$tmp/cut.pcap' --strict >/dev/null 2>&1; [ \$? = 3 ]"
check "partial read still reports other files" bash -c "'$bin' read /nonexistent.pcap Samples/agent-demo.pcap --format jsonl 2>/dev/null | grep -q http; [ \${PIPESTATUS[0]} = 0 ]"
echo "garbage" > "$tmp/junk.pcap"
check "garbage file: clear error, no trace" bash -c "out=\$('$bin' read '$tmp/junk.pcap' 2>&1); [ \$? = 2 ] && echo \"\$out\" | grep -q 'cannot read capture' && ! echo \"\$out\" | grep -qi 'backtrace\|fatal'"
check "bad filter: exit 2" bash -c "'$bin' read Samples/agent-demo.pcap --filter 'port banana' >/dev/null 2>&1; [ \$? = 2 ]"
check "unwritable database: exit 4" bash -c "'$bin' read Samples/agent-demo.pcap --db /proc/nope/calls.db >/dev/null 2>&1; [ \$? = 4 ]"
check "calls --since rejects nonsense" bash -c "! '$bin' calls --db '$tmp/c.db' --since yesterday >/dev/null 2>&1"
python3 -c "
import struct, sys
f = open(sys.argv[1], 'wb')
f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 147))
f.write(struct.pack('<IIII', 1, 0, 4, 4) + b'abcd')" "$tmp/user0.pcap"
check "unsupported link type: exit 2, one line naming it" bash -c "out=\$('$bin' read '$tmp/user0.pcap' 2>&1 >/dev/null); [ \$? = 2 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'unsupported link type .*DLT 147'"
check "missing key log: exit 2, one line" bash -c "out=\$('$bin' read Samples/agent-demo.pcap --keylog /nonexistent.keylog 2>&1 >/dev/null); [ \$? = 2 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'cannot read key log'"
check "unreadable key log (a directory): exit 2" bash -c "'$bin' read Samples/agent-demo.pcap --keylog /etc >/dev/null 2>&1; [ \$? = 2 ]"
check "key log of garbage: calls still read, malformed lines reported once" bash -c "head -c 3000 /dev/urandom > '$tmp/junk.keylog'; out=\$('$bin' read Samples/agent-demo.pcap --keylog '$tmp/junk.keylog' --format jsonl 2>'$tmp/junk.err' | wc -l); [ \"\$out\" -ge 10 ] && [ \$(grep -c malformed '$tmp/junk.err') = 1 ]"
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
