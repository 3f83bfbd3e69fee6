#!/usr/bin/env bash
# Sessions inside one agent process: a gateway-like Node process (Scripts/lib/gateway.mjs, built-in fetch
# only) serves two sessions at once against LLM-API-like servers and web hosts (Scripts/lib/gateway_servers.py)
# over TLS with Node's key log, in network namespaces made here, writing pi-format transcripts. calltap
# captures it live with --transcripts and reads the tcpdump capture of the same traffic offline:
#   1. OpenAI, Anthropic and Gemini with traceparent (diagnostics on), JSON Lines transcripts: every call in
#      the right session, none ambiguous, tokens as sent; read --transcripts gives the same as capture;
#   2. the same capture without transcripts: only the wire keys decide (prompt_cache_key), nothing wrong;
#   3. Anthropic only, no traceparent, the transcripts only in OpenClaw's SQLite store (Zstandard rows
#      written by Scripts/lib/openclaw_sqlite.py): every call still in the right session, live and offline.
# Needs root (namespaces); under CI=true it must not skip.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
. Scripts/lib/setup.sh
ensure_packages tcpdump openssl nodejs iproute2
python3 -c "import zstandard" 2>/dev/null || python3 -m pip install -q zstandard 2>/dev/null
python3 -c "import brotli" 2>/dev/null || python3 -m pip install -q brotli 2>/dev/null
. Scripts/lib/livecheck.sh
G=ctgw-g S=ctgw-s
tmp=$(mktemp -d)
cleanup() {
  stop_jobs
  rm -rf /etc/netns/$G
  ip netns del $G 2>/dev/null; ip netns del $S 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
if ! veth_pair $G $S ctgw-g0 ctgw-s0 10.77.0.1 10.77.0.2; then cannot_run "gateway tests"; exit 0; fi
ip -n $S addr add 10.77.0.3/24 dev ctgw-s0
mkdir -p /etc/netns/$G
cat > /etc/netns/$G/hosts <<HOSTS
127.0.0.1 localhost
10.77.0.2 api.openai.test api.anthropic.test generativelanguage.test
10.77.0.3 docs.test news.test
HOSTS

# A CA and one server certificate for every name; Node trusts the CA and logs its TLS keys.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=calltap test CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=api.openai.test" -keyout "$tmp/srv.key" -out "$tmp/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.openai.test,DNS:api.anthropic.test,DNS:generativelanguage.test,DNS:news.test,DNS:docs.test\n' > "$tmp/san.ext"
openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 2 -extfile "$tmp/san.ext" \
  -out "$tmp/srv.pem" 2>/dev/null
ip netns exec $S python3 Scripts/lib/gateway_servers.py "$tmp/truth-all.jsonl" "$tmp/srv.pem" "$tmp/srv.key" \
  --llm 10.77.0.2 --web 10.77.0.3 --ready "$tmp/ready" &
for _ in $(seq 100); do [ -s "$tmp/ready" ] && break; sleep 0.05; done

# run NAME SCENARIO TRANSCRIPT_FORM: the gateway under a live capture and tcpdump; leaves
# $tmp/NAME.{live.jsonl,pcap,keys,ids,truth} and the state directory $tmp/NAME.state.
run() {
  local name=$1 scenario=$2 form=$3 state=$tmp/$1.state
  mkdir -p "$state"
  : > "$tmp/$name.keys"
  # The SQLite form is written as the gateway goes, so the live capture follows it too.
  ip netns exec $G tcpdump -i ctgw-g0 --immediate-mode -U -w "$tmp/$name.pcap" 2> "$tmp/$name.tcpdump" &
  local dump=$!
  if [ "$form" = sqlite ]; then
    # The same flags from a --config file (its keys are the long flag names).
    printf 'netns = ["%s"]\ntranscripts = "%s"\nkeylog = ["%s"]\nformat = "jsonl"\n' $G "$state" "$tmp/$name.keys" > "$tmp/$name.toml"
    "$bin" capture --config "$tmp/$name.toml" > "$tmp/$name.live.jsonl" 2> "$tmp/$name.err" &
  else
    "$bin" capture --netns $G --transcripts "$state" --keylog "$tmp/$name.keys" --format jsonl > "$tmp/$name.live.jsonl" 2> "$tmp/$name.err" &
  fi
  local cap=$!
  for _ in $(seq 50); do grep -q listening "$tmp/$name.tcpdump" 2>/dev/null && break; sleep 0.1; done
  sleep 1.5
  local before; before=$(wc -l < "$tmp/truth-all.jsonl" 2>/dev/null || echo 0)
  local mirror=
  if [ "$form" = sqlite ]; then
    # The agent's store is written by the agent's own user, as OpenClaw's is.
    chmod 755 "$tmp"; chown 65534:65534 "$state"
    python3 Scripts/lib/openclaw_sqlite.py --follow --user 65534 "$state" "$tmp/$name.jsonl-src" & mirror=$!
  fi
  if [ "$form" = sqlite ]; then
    ip netns exec $G env NODE_EXTRA_CA_CERTS="$tmp/ca.pem" node --tls-keylog="$tmp/$name.keys" Scripts/lib/gateway.mjs "$tmp/$name.jsonl-src" "$scenario" > "$tmp/$name.ids"
  else
    ip netns exec $G env NODE_EXTRA_CA_CERTS="$tmp/ca.pem" node --tls-keylog="$tmp/$name.keys" Scripts/lib/gateway.mjs "$state" "$scenario" > "$tmp/$name.ids"
  fi
  local rc=$?
  sleep 1
  [ -n "$mirror" ] && { kill -TERM $mirror; wait $mirror; }
  sleep 4 # the join's hold (3 s) passes before the capture stops
  kill -TERM $cap; wait $cap
  kill -TERM $dump; wait $dump
  tail -n +$((before + 1)) "$tmp/truth-all.jsonl" > "$tmp/$name.truth"
  check "$name: the gateway ran ($(wc -l < "$tmp/$name.truth") requests)" test "$rc" = 0 -a -s "$tmp/$name.truth"
}

run full full jsonl
check "full: live capture with JSON Lines transcripts: every call in its session, none ambiguous, tokens as sent" \
  python3 Scripts/lib/gateway_check.py joined "$tmp/full.live.jsonl" "$tmp/full.truth" "$tmp/full.ids"
"$bin" read --transcripts "$tmp/full.state" --keylog "$tmp/full.keys" --format jsonl --stats "$tmp/full.pcap" > "$tmp/full.read.jsonl" 2> "$tmp/full.read.err"
check "full: read --transcripts offline: every call in its session" \
  python3 Scripts/lib/gateway_check.py joined "$tmp/full.read.jsonl" "$tmp/full.truth" "$tmp/full.ids"
check "full: read --transcripts decides exactly as the live capture" \
  python3 Scripts/lib/gateway_check.py same "$tmp/full.live.jsonl" "$tmp/full.truth" "$tmp/full.ids" "$tmp/full.read.jsonl"
check "full: read --stats counts what the transcripts decided" grep -qE "session_by_web_fetch=[1-9]" "$tmp/full.read.err"
"$bin" read --keylog "$tmp/full.keys" --format jsonl "$tmp/full.pcap" > "$tmp/full.wire.jsonl"
check "full without transcripts: the wire keys alone decide, and nothing is put in a wrong session" \
  python3 Scripts/lib/gateway_check.py wire "$tmp/full.wire.jsonl" "$tmp/full.truth" "$tmp/full.ids"

run sqlite anthropic sqlite
check "anthropic only, no traceparent, SQLite transcripts with Zstandard rows: every call in its session (live)" \
  python3 Scripts/lib/gateway_check.py joined "$tmp/sqlite.live.jsonl" "$tmp/sqlite.truth" "$tmp/sqlite.ids"
check "the SQLite store holds compressed rows" python3 -c "
import sqlite3, sys
db = sqlite3.connect('file:$tmp/sqlite.state/agents/main/agent/openclaw-agent.sqlite?mode=ro', uri=True)
sys.exit(0 if db.execute('select count(*) from transcript_events where event_zstd is not null').fetchone()[0] > 0 else 1)"
"$bin" read --transcripts "$tmp/sqlite.state" --keylog "$tmp/sqlite.keys" --format jsonl "$tmp/sqlite.pcap" > "$tmp/sqlite.read.jsonl"
# With the writer gone and its -wal/-shm removed, the store is read as it is (immutable), creating nothing.
rm -f "$tmp/sqlite.state/agents/main/agent/openclaw-agent.sqlite-wal" "$tmp/sqlite.state/agents/main/agent/openclaw-agent.sqlite-shm"
"$bin" read --transcripts "$tmp/sqlite.state" --keylog "$tmp/sqlite.keys" --format jsonl "$tmp/sqlite.pcap" > "$tmp/sqlite.read2.jsonl"
check "no file in the agent's state directory is root's after calltap (root) read it live and offline" \
  test -z "$(find "$tmp/sqlite.state" ! -user 65534)" -a -s "$tmp/sqlite.state/agents/main/agent/openclaw-agent.sqlite" \
  -a ! -e "$tmp/sqlite.state/agents/main/agent/openclaw-agent.sqlite-shm"
check "a store without its writer (no -shm) is still read" \
  python3 Scripts/lib/gateway_check.py same "$tmp/sqlite.read.jsonl" "$tmp/sqlite.truth" "$tmp/sqlite.ids" "$tmp/sqlite.read2.jsonl"
check "anthropic only, SQLite transcripts: read decides exactly as the live capture" \
  python3 Scripts/lib/gateway_check.py same "$tmp/sqlite.live.jsonl" "$tmp/sqlite.truth" "$tmp/sqlite.ids" "$tmp/sqlite.read.jsonl"

# A state directory that is a symbolic link is refused with a clear error (exit 1), by read and capture.
ln -s "$tmp/full.state" "$tmp/linked.state"
"$bin" read --transcripts "$tmp/linked.state" --format none "$tmp/full.pcap" 2> "$tmp/linked.err"; rc=$?
check "read --transcripts refuses a symbolic link (exit 1, said on stderr)" \
  test "$rc" = 1 -a -n "$(grep 'symbolic link' "$tmp/linked.err")"
"$bin" capture --netns $G --transcripts "$tmp/linked.state" --format none 2> "$tmp/linked-cap.err"; rc=$?
check "capture --transcripts refuses a symbolic link (exit 1)" test "$rc" = 1

echo "gateway tests: $pass passed, $fail failed"
[ "$fail" = 0 ]
