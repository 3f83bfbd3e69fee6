#!/usr/bin/env bash
# Live capture in real network namespaces: a veth pair, a Python HTTP server in one namespace, real
# clients (curl, Python) in the other, the daemon capturing the agent namespace with a registry file.
# Needs root. Skips when namespaces cannot be made, except under CI=true, where that is a failure.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
A=ct-cap-agent S=ct-cap-svc
AIP=10.213.10.2 SIP=10.213.10.1
tmp=$(mktemp -d)
. Scripts/lib/livecheck.sh
# Starts `calltap capture ARGS` (stdout to OUT), makes one request from the agent namespace once it is
# up, and stops it with SIGTERM.
capture_one_request() { # out, url, capture arguments...
  local out=$1 url=$2; shift 2
  "$bin" capture "$@" > "$out" 2>/dev/null &
  local pid=$!
  sleep 1.5
  ip netns exec $A curl -s -o /dev/null "$url"
  sleep 0.5
  kill -TERM $pid; wait $pid
}
# Stops what this script started, by pid (its own background jobs: the capture daemons, the servers,
# the clients), never by name, so a calltap capture running for anyone else is left alone. Each gets
# up to 5 s to exit (a daemon flushes on SIGTERM) before the mounts under it are taken away.
cleanup() {
  local p _
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  for p in $(jobs -p); do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  umount "$tmp/small" "$tmp/ro" 2>/dev/null
  rm -rf /etc/netns/$A
  ip netns del $A 2>/dev/null; ip netns del $S 2>/dev/null; ip netns del ct-cap-b 2>/dev/null; ip netns del ct-cap-br 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)
if ! { ip netns add $A && ip netns add $S; } 2>/dev/null; then
  echo "capture tests skipped: cannot create network namespaces here (need root and iproute2)"
  [ "${CI:-}" = "true" ] && { echo "capture: 0 passed, 1 failed"; exit 1; }
  exit 0
fi
ip link add ct-capa0 type veth peer name ct-caps0
ip link set ct-capa0 netns $A; ip link set ct-caps0 netns $S
ip -n $A addr add $AIP/24 dev ct-capa0; ip -n $S addr add $SIP/24 dev ct-caps0
for ns in $A $S; do ip -n $ns link set lo up; done
ip -n $A link set ct-capa0 up; ip -n $S link set ct-caps0 up
ip netns exec $S python3 -m http.server 80 --bind $SIP >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec $A curl -s -o /dev/null http://$SIP/ && break; sleep 0.1; done
# DNS for the agent namespace (ip netns exec mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf),
# and a QUIC server (aioquic) with a throwaway certificate.
python3 -c "import aioquic" 2>/dev/null || python3 -m pip install -q aioquic
mkdir -p /etc/netns/$A && echo "nameserver $SIP" > /etc/netns/$A/resolv.conf
ip netns exec $S python3 Scripts/lib/dns_peer.py $SIP $SIP >/dev/null 2>&1 &
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tmp/quic.key" -out "$tmp/quic.crt" \
  -days 2 -subj /CN=quic.test >/dev/null 2>&1
ip netns exec $S python3 Scripts/lib/quic_peer.py server $SIP 443 "$tmp/quic.crt" "$tmp/quic.key" >/dev/null 2>&1 &

attribution_suite() {
  mode=$1 # bpf: owners recorded by the kernel at connect time; fallback: --no-bpf
  extra=(); [ "$mode" = fallback ] && extra=(--no-bpf)
  reg=$tmp/registry-$mode.jsonl
  printf 'this is not json\n{"pid": "x"}\n' > "$reg" # garbage lines must be tolerated
  db=$tmp/calls-$mode.db
  "$bin" capture --netns $A --db "$db" --registry "$reg" --format jsonl "${extra[@]}" > "$tmp/out-$mode.jsonl" 2> "$tmp/err-$mode.log" &
  cap=$!
  sleep 1.5

  now() { date +%s.%N; }
  # 1. A registered shell and its 200 one-shot curl children (the registry line is written after the shell started).
  ip netns exec $A bash -c "sleep 0.2; echo '{\"pid\": '\$\$', \"session_id\": \"sess-one\", \"started_at\": '\$(date +%s)'}' >> $reg; sleep 0.5;
    for i in \$(seq 200); do curl -s -o /dev/null http://$SIP/one/\$i; done"
  # 2. Two sessions at once, each a registered shell running curls.
  sessions=()
  for s in red blue; do
    ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-$s\", \"started_at\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"agent\": \"$s-agent\"}' >> $reg; sleep 0.5;
      for i in \$(seq 30); do curl -s -o /dev/null http://$SIP/$s/\$i; sleep 0.02; done" &
    sessions+=($!)
  done
  wait "${sessions[@]}"
  # 2b. Two sessions at once whose connections live as long as a real API call (tens of ms): their sockets
  # are seen, so each call has its exact process and session.
  slow=()
  for s in green gold; do
    ip netns exec $A python3 - "$reg" "$s" "$SIP" <<'PY' &
import json, os, socket, sys, time
reg, name, server = sys.argv[1:]
with open(reg, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "session_id": "sess-" + name, "started_at": time.time()}) + "\n")
time.sleep(0.5)
for i in range(20):
    s = socket.create_connection((server, 80))
    time.sleep(0.03)  # the server's round trip
    s.sendall(f"GET /{name}/{i} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    while s.recv(65536):
        pass
    s.close()
PY
    slow+=($!)
  done
  wait "${slow[@]}"
  # 2c. One gateway process serving two sessions at once: a request header names the session when it is
  # there; without one, the call is ambiguous.
  ip netns exec $A python3 - "$reg" "$SIP" <<'PY'
import json, os, socket, sys, time
reg, server = sys.argv[1:]
with open(reg, "a") as f:
    for s in ("gw-a", "gw-b"):
        f.write(json.dumps({"pid": os.getpid(), "session_id": s, "started_at": time.time()}) + "\n")
time.sleep(0.5)
for i in range(10):
    c = socket.create_connection((server, 80))
    time.sleep(0.03)
    header = f"X-Session-Id: gw-{'ab'[i % 2]}\r\n" if i < 6 else ""
    c.sendall(f"GET /gw/{i} HTTP/1.0\r\nHost: x\r\n{header}\r\n".encode())
    while c.recv(65536):
        pass
    c.close()
PY
  # 3. An unregistered process (Python) keeps its pid, with no session.
  cat > "$tmp/slow_get.py" <<'PY'
# A client whose connection lives as long as a real API call: connect, wait a round trip, then ask.
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80))
time.sleep(0.03)
s.sendall(f"GET {sys.argv[2]} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
while s.recv(65536):
    pass
PY
  ip netns exec $A python3 "$tmp/slow_get.py" $SIP /unregistered
  # 4. A reused PID: the registry line names this shell's PID but another start time.
  ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-stale\", \"pid_start_time\": 1}' >> $reg; sleep 0.5;
    curl -s -o /dev/null http://$SIP/stale"
  if [ "$mode" = bpf ]; then
    # 6. Four sessions at once, each a registered shell running 50 one-shot curls.
    four=()
    for s in s1 s2 s3 s4; do
      ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"four-$s\"}' >> $reg; sleep 0.5;
        for i in \$(seq 50); do curl -s -o /dev/null http://$SIP/four-$s/\$i; done" &
      four+=($!)
    done
    wait "${four[@]}"
    # 7. DNS: a registered shell's curl resolves a name (the namespace's resolver is the test's server).
    ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-dns\"}' >> $reg; sleep 0.5;
      for i in 1 2 3; do curl -s -o /dev/null http://svc\$i.ct.test/dns/\$i; done"
    # 8. A process that exits within a millisecond of its call: it sends its request and leaves.
    ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-quick\"}' >> $reg; sleep 0.5;
      for i in 1 2 3 4 5; do python3 -c \"import socket; s = socket.create_connection(('$SIP', 80)); s.sendall(b'GET /quick/\$i HTTP/1.0\\\\r\\\\nHost: x\\\\r\\\\n\\\\r\\\\n')\"; done; sleep 0.3"
    # 9. An agent in a container's PID namespace: it registers its own PID (1 there) with pid_ns.
    ip netns exec $A unshare --pid --fork --mount-proc bash -c "echo '{\"pid\": '\$\$', \"pid_ns\": '\$(stat -L -c %i /proc/self/ns/pid)', \"session_id\": \"sess-container\"}' >> $reg; sleep 0.7;
      for i in 1 2 3; do curl -s -o /dev/null http://$SIP/container/\$i; done"
    # 10. QUIC (aioquic): a registered shell's client makes one connection.
    ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-quic\"}' >> $reg; sleep 0.5;
      timeout 10 python3 Scripts/lib/quic_peer.py client $SIP 443 > $tmp/quic-port"
  fi
  # 5. A call reaches the database within about a second.
  t0=$(now)
  ip netns exec $A curl -s -o /dev/null http://$SIP/latency
  seen=""
  for _ in $(seq 60); do
    if sqlite3 "$db" "select count(*) from calls where path='/latency'" 2>/dev/null | grep -q 1; then seen=$(now); break; fi
    python3 - "$db" <<'PY' >/dev/null 2>&1 && { seen=$(date +%s.%N); break; }
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); n = c.execute("select count(*) from calls where path='/latency'").fetchone()[0]
sys.exit(0 if n else 1)
PY
    sleep 0.05
  done
  kill -TERM $cap; wait $cap; code=$?

  qdb() { python3 - "$1" "$2" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])
PY
  }
  q() { qdb "$db" "$1"; }
  one_total=$(q "select count(*) from calls where path like '/one/%'")
  one_ok=$(q "select count(*) from calls where path like '/one/%' and session_id='sess-one'")
  one_pid=$(q "select count(*) from calls where path like '/one/%' and process='curl'")
  red_ok=$(q "select count(*) from calls where path like '/red/%' and session_id='sess-red' and agent='red-agent'")
  blue_ok=$(q "select count(*) from calls where path like '/blue/%' and session_id='sess-blue'")
  crossed=$(q "select count(*) from calls where (path like '/red/%' and session_id='sess-blue') or (path like '/blue/%' and session_id='sess-red')")
  ambiguous=$(q "select count(*) from calls where (path like '/red/%' or path like '/blue/%') and attribution='ambiguous'")
  green_ok=$(q "select count(*) from calls where path like '/green/%' and session_id='sess-green' and attribution='exact'")
  gold_ok=$(q "select count(*) from calls where path like '/gold/%' and session_id='sess-gold' and attribution='exact'")
  echo "attribution: two Python agents at once: green $green_ok/20, gold $gold_ok/20 exact"
  gw_header=$(q "select count(*) from calls where path in ('/gw/0','/gw/2','/gw/4') and session_id='gw-a'")
  gw_header_b=$(q "select count(*) from calls where path in ('/gw/1','/gw/3','/gw/5') and session_id='gw-b'")
  gw_ambiguous=$(q "select count(*) from calls where path like '/gw/%' and attribution='ambiguous'")
  echo "attribution: one process, two sessions: $((gw_header + gw_header_b))/6 decided by header, $gw_ambiguous/4 without a header ambiguous"
  echo "attribution: one-shot curls $one_ok/$one_total to their session ($one_pid with the curl process); two sessions at once: red $red_ok/30, blue $blue_ok/30, crossed $crossed, ambiguous $ambiguous"
  latency=$(python3 -c "print('%.2f' % ($seen - $t0))" 2>/dev/null || echo "?")
  echo "call reached the database after ${latency}s"

  check "SIGTERM exits 0" [ "$code" = 0 ]
  check "every one-shot curl recorded" [ "$one_total" = 200 ]
  if [ "$mode" = bpf ]; then
    check "bpf: the program loaded (said once in the log)" grep -q 'recorded by the kernel at connect time (BPF)' "$tmp/err-$mode.log"
    check "bpf: every one-shot curl with its session and the curl process ($one_ok, $one_pid of 200)" [ "$one_ok" = 200 -a "$one_pid" = 200 ]
    check "bpf: two sessions of one-shot curls 20 ms apart: 60 of 60 right, 0 ambiguous, 0 crossed" \
      [ "$((red_ok + blue_ok))" = 60 -a "$ambiguous" = 0 -a "$crossed" = 0 ]
    four_ok=0
  for s in s1 s2 s3 s4; do
    four_ok=$((four_ok + $(q "select count(*) from calls where path like '/four-$s/%' and session_id='four-$s'")))
  done
  echo "bpf: 4 sessions x 50 one-shot curls: $four_ok/200 right"
  check "bpf: four sessions x 50 one-shot processes: 200 of 200 right, none crossed or ambiguous" [ "$four_ok" = 200 \
    -a "$(q "select count(*) from calls where path like '/four-%' and (attribution='ambiguous' or session_id is null)")" = 0 ]
  check "bpf: the DNS lookups of a registered session's curl carry that session, pid and process" \
    [ "$(q "select count(*) from calls where kind='dns' and host like 'svc%.ct.test' and session_id='sess-dns' and process='curl' and pid is not null and owner_source='connect'")" -ge 3 ]
  check "bpf: the HTTP calls after those lookups too" [ "$(q "select count(*) from calls where path like '/dns/%' and session_id='sess-dns'")" = 3 ]
  check "bpf: a process gone within a millisecond of its call keeps its pid and session" \
    [ "$(q "select count(*) from calls where path like '/quick/%' and session_id='sess-quick' and process like 'python%' and pid is not null")" = 5 ]
  check "bpf: an agent in a container PID namespace: its curls carry its session" \
    [ "$(q "select count(*) from calls where path like '/container/%' and session_id='sess-container' and attribution='inherited'")" = 3 ]
  check "bpf: a QUIC flow (aioquic) carries pid, process and session" \
    [ "$(q "select count(*) from calls where kind='quic' and client_port=$(cat $tmp/quic-port 2>/dev/null || echo 0) and session_id='sess-quic' and process like 'python%' and owner_source='connect'")" = 1 ]
  check "bpf: no kernel records lost" [ "$(q "select coalesce(sum(value),0) from capture_stats where name='bpf_events_lost'")" = 0 ]
  check "bpf: those calls' owners were recorded at connect time" \
      [ "$(q "select count(*) from calls where (path like '/one/%' or path like '/red/%' or path like '/blue/%') and owner_source='connect'")" = 260 ]
  else
    check "fallback: --no-bpf is said once" grep -q 'no-bpf; using the socket table and process events' "$tmp/err-$mode.log"
    check "fallback: at least 95% of one-shot curls attributed to their session" [ "$one_ok" -ge 190 ]
    check "fallback: owners from the socket table or process events, none from the kernel" \
      [ "$(q "select count(*) from calls where owner_source='connect'")" = 0 -a "$(q "select count(*) from calls where owner_source is not null")" -gt 200 ]
  fi
  check "one process with two sessions: headers decide, the rest is ambiguous" [ "$((gw_header + gw_header_b))" = 6 -a "$gw_ambiguous" = 4 ]
  check "two concurrent agents kept apart, each call exact" [ "$green_ok" = 20 -a "$gold_ok" = 20 ]
  [ "$mode" = fallback ] && check "concurrent sessions never crossed (uncertain ones are marked ambiguous; a few may get none)" [ "$crossed" = 0 -a $((red_ok + blue_ok + ambiguous)) -ge 54 ]
  check "unregistered process kept with its pid and no session" \
    [ "$(q "select count(*) from calls where path='/unregistered' and pid is not null and process like 'python%' and session_id is null")" = 1 ]
  check "reused PID does not inherit a stale session" [ "$(q "select count(*) from calls where path='/stale' and session_id is null")" = 1 ]
  check "garbage registry lines tolerated and reported once" [ "$(grep -c 'malformed line' "$tmp/err-$mode.log")" = 1 ]
  if [ "$mode" = bpf ]; then
    check "bpf: a call reaches the database within 1 s (${latency}s)" python3 -c "import sys; sys.exit(0 if '$seen' and $seen - $t0 < 1.0 else 1)"
  else
    check "calls reach the database within about a second" python3 -c "import sys; sys.exit(0 if '$seen' and $seen - $t0 < 2.5 else 1)"
  fi
  check "capture statistics recorded per interval" [ "$(q "select count(*) from capture_stats where name='packets'")" -ge 1 ]
  check "jsonl on stdout matches the database" [ "$(wc -l < "$tmp/out-$mode.jsonl")" = "$(q "select count(*) from calls")" ]
}
attribution_suite bpf
attribution_suite fallback

# calltap run registers a command as a session; --clawmetry-jsonl writes ClawMetry's format.
"$bin" capture --netns $A --registry "$tmp/run-registry.jsonl" --clawmetry-jsonl "$tmp/claw.jsonl" --format jsonl \
  > "$tmp/run.jsonl" 2>/dev/null &
cap=$!
sleep 1.5
ip netns exec $A "$bin" run --session sess-run --registry "$tmp/run-registry.jsonl" --keylog-dir "$tmp/keys" -- \
  sh -c "curl -s -o /dev/null http://$SIP/run/1; curl -s -o /dev/null http://$SIP/run/2"
run_code=$?
sleep 1
kill -TERM $cap; wait $cap
# A command that fails: calltap run must exit with its status (3), not its own, and still end the session.
"$bin" run --session sess-fail --registry "$tmp/run-fail-registry.jsonl" -- sh -c 'exit 3'
run_fail_code=$?
check "calltap run attributes its command's calls to the session" \
  [ "$(grep '"session_id":"sess-run"' "$tmp/run.jsonl" | grep -c '"path":"/run/[12]"')" = 2 ]
check "calltap run writes started_at and ended_at and passes the exit status (0 and 3)" \
  [ "$run_code" = 0 -a "$(grep -c ended_at "$tmp/run-registry.jsonl")" = 1 \
    -a "$run_fail_code" = 3 -a "$(grep -c ended_at "$tmp/run-fail-registry.jsonl")" = 1 ]
check "--clawmetry-jsonl writes external_api_call lines" python3 - "$tmp/claw.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2, rows
for r in rows:
    assert r["type"] == "external_api_call" and r["library"] == "calltap" and r["session_id"] == "sess-run"
    assert r["method"] == "GET" and r["url"].startswith("http://") and r["status_code"] == 404 and r["latency_ms"] >= 0
PY

# The verified registration socket: calltap run registers through it; another user cannot claim PID 1
# or anyone else's process, only its own. Set with --config (registry-socket) to test that key too.
sockdir=/run/calltap-test-$$
mkdir -p "$sockdir" && chmod 755 "$sockdir"
id calltap-plant >/dev/null 2>&1 || useradd --system --no-create-home calltap-plant 2>/dev/null
printf 'netns = ["%s"]\nregistry-socket = "%s"\nformat = "jsonl"\n' $A "$sockdir/register.sock" > "$tmp/sock.toml"
"$bin" capture --config "$tmp/sock.toml" > "$tmp/sock.jsonl" 2> "$tmp/sock.err" &
cap=$!
sleep 1.5
ip netns exec $A "$bin" run --session sess-sock --registry-socket "$sockdir/register.sock" -- \
  sh -c "curl -s -o /dev/null http://$SIP/sock/1; curl -s -o /dev/null http://$SIP/sock/2"
sock_run=$?
claim() { # as the unprivileged user: a JSON request, prints the answer
  runuser -u calltap-plant -- python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b'\\n')
print(s.recv(256).decode().strip())" "$sockdir/register.sock" "$1"
}
claim_pid1=$(claim '{"pid": 1, "session_id": "stolen"}')
claim_self=$(runuser -u calltap-plant -- python3 -c "
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(('{\"pid\": %d, \"session_id\": \"plant-own\"}\\n' % os.getpid()).encode())
print(s.recv(256).decode().strip())" "$sockdir/register.sock")
ip netns exec $A sleep 5 &
stranger=$!
claim_other=$(claim "{\"pid\": $stranger, \"session_id\": \"stolen\"}")
sleep 0.5
kill -TERM $cap; wait $cap
kill $stranger 2>/dev/null
echo "registration socket: calltap run exit $sock_run; PID 1: $claim_pid1; another's process: $claim_other; itself: $claim_self"
check "--registry-socket: calltap run registers through it, its calls carry the session" \
  [ "$sock_run" = 0 -a "$(grep '"session_id":"sess-sock"' "$tmp/sock.jsonl" | grep -c '"path":"/sock/[12]"')" = 2 ]
check "--registry-socket: another user cannot claim PID 1 or someone else's process, only its own" \
  bash -c "[[ '$claim_pid1' == refused:* && '$claim_other' == refused:* && '$claim_self' == ok ]]"
check "--registry-socket: the socket is gone after the daemon stops" [ ! -e "$sockdir/register.sock" ]
rm -rf "$sockdir"

# Two targets at once, each tagged; -w writes rotating 0600 pcap files that calltap read analyses again.
ip netns add ct-cap-b 2>/dev/null
ip link add ct-capb0 type veth peer name ct-capb1
ip link set ct-capb0 netns ct-cap-b; ip link set ct-capb1 netns $S
ip -n ct-cap-b addr add 10.213.11.2/24 dev ct-capb0; ip -n $S addr add 10.213.11.1/24 dev ct-capb1
ip -n ct-cap-b link set ct-capb0 up; ip -n $S link set ct-capb1 up; ip -n ct-cap-b link set lo up
ip netns exec $S python3 -m http.server 8080 --bind 10.213.11.1 >/dev/null 2>&1 &
web_b=$!
"$bin" capture --netns $A --netns ct-cap-b -w "$tmp/pcaps" --rotate-mb 0.01 --rotate-count 3 --format jsonl \
  > "$tmp/two.jsonl" 2>/dev/null &
cap=$!
sleep 1.5
for i in $(seq 40); do ip netns exec $A curl -s -o /dev/null http://$SIP/a/$i; done
for i in $(seq 5); do ip netns exec ct-cap-b curl -s -o /dev/null http://10.213.11.1:8080/b/$i; done
sleep 1
kill -TERM $cap; wait $cap
kill $web_b 2>/dev/null
ip netns del ct-cap-b 2>/dev/null
check "two targets at once, each call tagged with its target" \
  [ "$(grep '"target":"ct-cap-b"' "$tmp/two.jsonl" | grep -c '"path":"/b/')" = 5 -a "$(grep '"target":"'$A'"' "$tmp/two.jsonl" | grep -c '"path":"/a/')" = 40 ]
check "-w rotates files, keeps the newest, creates them 0600" bash -c "
  n=\$(ls '$tmp/pcaps'/calltap-$A-*.pcap | wc -l); [ \$n -ge 2 -a \$n -le 3 ] &&
  [ -z \"\$(find '$tmp/pcaps' -name '*.pcap' ! -perm 600)\" ]"
check "-w files are read again by calltap read" bash -c "'$bin' read '$tmp'/pcaps/calltap-$A-*.pcap --format jsonl | grep -q '/a/40'"

# --cgroup: only calls of processes in a cgroup v2 made by the test, in the namespace they use.
cgmount=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
cg="$cgmount/calltap-test-$$"
if [ -n "$cgmount" ] && mkdir "$cg" 2>/dev/null; then
  # `ip netns exec` mounts its own /sys, so the shell is moved into the cgroup from outside.
  ip netns exec $A bash -c "while [ ! -e $tmp/go ]; do sleep 0.05; done;
    for i in 1 2 3; do python3 $tmp/slow_get.py $SIP /in-cgroup/\$i; done" &
  inside=$!
  sleep 0.3
  echo $inside > "$cg/cgroup.procs"
  "$bin" capture --cgroup "/calltap-test-$$" --format jsonl > "$tmp/cg.jsonl" 2>"$tmp/cg.err" &
  cap=$!
  sleep 1.5
  touch "$tmp/go"
  wait $inside
  ip netns exec $A python3 "$tmp/slow_get.py" $SIP /outside-cgroup
  sleep 0.5
  kill -TERM $cap; wait $cap
  check "--cgroup keeps only the cgroup's calls" \
    [ "$(grep -c '"path":"/in-cgroup/' "$tmp/cg.jsonl")" = 3 -a "$(grep -c outside-cgroup "$tmp/cg.jsonl")" = 0 ]
  rmdir "$cg" 2>/dev/null
else
  echo "cgroup test skipped: cannot create a cgroup v2 directory here"
fi

# --config: a TOML file keyed by the long flag names; flags given on the command line override it.
printf 'netns = ["%s"]\nformat = "table"\ndb = "%s"\nbuffer-size = 16\n' $A "$tmp/config.db" > "$tmp/calltap.toml"
capture_one_request "$tmp/config.jsonl" http://$SIP/from-config --config "$tmp/calltap.toml" --format jsonl
# jsonl on stdout shows --format overrode the file's "table"; the call in the file's own database shows
# its netns and db keys were applied.
check "--config TOML applies, flags override it" \
  [ "$(grep -c '"path":"/from-config"' "$tmp/config.jsonl")" = 1 \
    -a "$(qdb "$tmp/config.db" "select count(*) from calls where path='/from-config'" 2>/dev/null)" = 1 ]

# --config key no-bpf: the daemon says it finds owners without the kernel's records.
printf 'netns = ["%s"]\nno-bpf = true\n' $A > "$tmp/nobpf.toml"
"$bin" capture --config "$tmp/nobpf.toml" > "$tmp/nobpf.jsonl" 2> "$tmp/nobpf.err" &
cap=$!
sleep 1
kill -TERM $cap; wait $cap
check "--config no-bpf turns the kernel's connect-time records off" grep -q 'no-bpf; using the socket table' "$tmp/nobpf.err"

# --config keys of the newer flags: allow-host (with listen and token unset, the API answers that Host).
port=$((20000 + RANDOM % 20000))
printf 'netns = ["%s"]\ndb = "%s"\nlisten = "127.0.0.1:%s"\nallow-host = ["calltap.lan"]\ncors-origin = "http://127.0.0.1:8900"\n' $A "$tmp/allow.db" $port > "$tmp/allow.toml"
"$bin" capture --config "$tmp/allow.toml" > /dev/null 2>&1 &
cap=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
allowed=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: calltap.lan:$port" "http://127.0.0.1:$port/api/stats")
refused=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: evil.example" "http://127.0.0.1:$port/api/stats")
cors=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:8900" "http://127.0.0.1:$port/api/local/external-calls" | tr -d '\r' | grep -i '^access-control-allow-origin:')
kill -TERM $cap; wait $cap
check "--config allow-host: that Host is served ($allowed), another is refused ($refused)" [ "$allowed" = 200 -a "$refused" = 403 ]
check "--config cors-origin: that origin may read the API ($cors)" [ "$cors" = "Access-Control-Allow-Origin: http://127.0.0.1:8900" ]

# --listen serves the API while capturing; after kill -9 the database opens cleanly with what was written.
port=$((20000 + RANDOM % 20000))
"$bin" capture --netns $A --db "$tmp/k9.db" --listen 127.0.0.1:$port > /dev/null 2>&1 &
cap=$!
sleep 1.5
for i in $(seq 10); do ip netns exec $A curl -s -o /dev/null http://$SIP/k9/$i; done
sleep 1.5
api_count=$(curl -s "http://127.0.0.1:$port/api/external-calls?limit=1000" | python3 -c "import json,sys; print(json.load(sys.stdin)['count'])" 2>/dev/null || echo 0)
kill -9 $cap; wait $cap 2>/dev/null
check "capture --listen serves the calls as they are stored" [ "$api_count" = 10 ]
check "after kill -9 the database opens cleanly and keeps the stored calls" python3 - "$tmp/k9.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
assert c.execute("select count(*) from calls where path like '/k9/%'").fetchone()[0] == 10
PY

# -i any sees each packet twice when a veth is enslaved to a bridge: the copies are dropped and counted.
ip netns add ct-cap-br
ip link add ct-br0 type veth peer name ct-br1
ip link set ct-br0 netns ct-cap-br; ip link set ct-br1 netns $S
ip -n ct-cap-br link add br0 type bridge
ip -n ct-cap-br link set ct-br0 master br0
ip -n ct-cap-br addr add 10.213.12.2/24 dev br0
ip -n $S addr add 10.213.12.1/24 dev ct-br1
for l in lo ct-br0 br0; do ip -n ct-cap-br link set $l up; done
ip -n $S link set ct-br1 up
ip netns exec $S python3 -m http.server 8081 --bind 10.213.12.1 >/dev/null 2>&1 &
web_br=$!
sleep 0.5
"$bin" capture --netns ct-cap-br --db "$tmp/br.db" --format jsonl > "$tmp/br.jsonl" 2>/dev/null &
cap=$!
sleep 1.5
for i in 1 2 3; do ip netns exec ct-cap-br curl -s -o /dev/null http://10.213.12.1:8081/bridged/$i; done
sleep 0.5
kill -TERM $cap; wait $cap
kill $web_br 2>/dev/null
ip netns del ct-cap-br 2>/dev/null
dups=$(python3 -c "
import sqlite3; c = sqlite3.connect('$tmp/br.db')
print(c.execute(\"select coalesce(sum(value),0) from capture_stats where name='duplicate_packets'\").fetchone()[0])")
retrans=$(python3 -c "
import sqlite3; c = sqlite3.connect('$tmp/br.db')
print(c.execute(\"select coalesce(sum(value),0) from capture_stats where name='retransmitted_segments'\").fetchone()[0])")
echo "bridge: $dups duplicate packets dropped, $retrans retransmissions left"
check "-i any drops packets seen twice (veth and bridge) and counts them" \
  [ "$(grep -c '"path":"/bridged/' "$tmp/br.jsonl")" = 3 -a "$dups" -gt 10 -a "$retrans" -lt 3 ]

# --pid: the namespace of a process inside it.
# `ip netns exec` execs the command in place, so the background job's pid is the sleeper's own (a
# search by name could find someone else's sleep).
ip netns exec $A sleep 30 &
sleeper=$!
sleep 0.3
target=$sleeper
capture_one_request "$tmp/pid.jsonl" http://$SIP/by-pid --pid "$target" --format jsonl
kill $sleeper 2>/dev/null
check "--pid captures in that process's namespace" grep -q '"/by-pid"' "$tmp/pid.jsonl"
# --keylog: the daemon follows a key log written by the client after the capture started.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=secure.test" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
ip netns exec $S python3 - "$SIP" "$tmp/cert.pem" "$tmp/key.pem" 2>/dev/null <<'PY' &
import http.server, ssl, sys
server = http.server.HTTPServer((sys.argv[1], 443), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
tls_server=$!
"$bin" capture --netns $A --keylog "$tmp/keys.log" --format jsonl > "$tmp/tls.jsonl" 2>/dev/null &
cap=$!
sleep 1.5
ip netns exec $A env SSLKEYLOGFILE="$tmp/keys.log" curl -s -o /dev/null --cacert "$tmp/cert.pem" \
  --resolve secure.test:443:$SIP https://secure.test/secure
sleep 1
kill -TERM $cap; wait $cap
kill $tls_server 2>/dev/null
check "--keylog follows a growing key log and decrypts" grep -q '"path":"/secure".*"visibility":"decrypted"' "$tmp/tls.jsonl"
check "a missing namespace is a clear error" bash -c "! '$bin' capture --netns ct-does-not-exist 2>&1 | grep -q Backtrace && '$bin' capture --netns ct-does-not-exist 2>&1 | grep -q 'no network namespace'"

# Broken surroundings: each gets one clear line and the daemon goes on.
# (a) The capture interface goes away and comes back: one error, one "resumed", calls on both sides.
mkveth() {
  ip link add ct-capx0 type veth peer name ct-capx1
  ip link set ct-capx0 netns $A; ip link set ct-capx1 netns $S
  ip -n $A addr add 10.213.13.2/24 dev ct-capx0; ip -n $S addr add 10.213.13.1/24 dev ct-capx1
  ip -n $A link set ct-capx0 up; ip -n $S link set ct-capx1 up
}
mkveth
ip netns exec $S python3 -m http.server 8083 --bind 0.0.0.0 >/dev/null 2>&1 &
web_x=$!
sleep 0.5
"$bin" capture --netns $A -i ct-capx0 --format jsonl > "$tmp/gone.jsonl" 2> "$tmp/gone.err" &
cap=$!
sleep 1.5
ip netns exec $A curl -s -o /dev/null http://10.213.13.1:8083/before-gone
sleep 0.5
ip -n $A link del ct-capx0
sleep 3
mkveth
sleep 3
ip netns exec $A curl -s -o /dev/null --retry 3 http://10.213.13.1:8083/after-gone
sleep 0.5
kill -TERM $cap; wait $cap; code=$?
kill $web_x 2>/dev/null
check "interface gone: one error, resumed when it is back, calls before and after, exit 0" \
  [ "$(grep -c 'capture stopped' "$tmp/gone.err")" = 1 -a "$(grep -c 'capture resumed' "$tmp/gone.err")" = 1 \
    -a "$(grep -c -e '/before-gone' -e '/after-gone' "$tmp/gone.jsonl")" = 2 -a "$code" = 0 ]
check "interface gone: no stack trace" bash -c "! grep -qi -e backtrace -e 'fatal error' '$tmp/gone.err'"

# (b) The database's disk fills up during capture: the error is logged once, calls are held and stored
# once there is room again; nothing is lost.
mkdir -p "$tmp/small"
mount -t tmpfs -o size=2m tmpfs "$tmp/small"
"$bin" capture --netns $A --db "$tmp/small/c.db" --format none 2> "$tmp/full.err" &
cap=$!
sleep 1.5
for i in $(seq 5); do ip netns exec $A curl -s -o /dev/null http://$SIP/full/$i; done
sleep 0.6
dd if=/dev/zero of="$tmp/small/filler" bs=4k 2>/dev/null
for i in $(seq 6 60); do ip netns exec $A curl -s -o /dev/null http://$SIP/full/$i; done
sleep 1
rm -f "$tmp/small/filler"
sleep 1
kill -TERM $cap; wait $cap
full_count=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from calls where path like '/full/%'\").fetchone()[0])" "$tmp/small/c.db" 2>/dev/null || echo 0)
umount "$tmp/small"
check "disk full: one error, then every held call stored ($full_count of 60)" \
  [ "$(grep -c 'cannot write to database' "$tmp/full.err")" = 1 -a "$(grep -c 'writable again' "$tmp/full.err")" = 1 -a "$full_count" = 60 ]

# (c) A read-only disk for the database: one line naming the reason, exit 4.
mkdir -p "$tmp/ro"
mount -t tmpfs -o size=1m tmpfs "$tmp/ro"; mount -o remount,ro "$tmp/ro"
ro_err=$("$bin" read Samples/agent-demo.pcap --db "$tmp/ro/c.db" --format none 2>&1); ro_code=$?
umount "$tmp/ro"
check "read-only database disk: exit 4 and one line" \
  [ "$ro_code" = 4 -a "$(echo "$ro_err" | wc -l)" = 1 -a -n "$(echo "$ro_err" | grep 'Read-only file system')" ]

# (d) The registry file vanishes and comes back with a new session: capture goes on, new lines count.
vreg=$tmp/vanish.jsonl
: > "$vreg"
"$bin" capture --netns $A --registry "$vreg" --format jsonl > "$tmp/vanish.out" 2> "$tmp/vanish.err" &
cap=$!
sleep 1.5
rm -f "$vreg"
ip netns exec $A curl -s -o /dev/null http://$SIP/while-gone
ip netns exec $A bash -c "echo '{\"pid\": '\$\$', \"session_id\": \"sess-back\"}' > $vreg; sleep 0.7; curl -s -o /dev/null http://$SIP/registry-back"
sleep 1
kill -TERM $cap; wait $cap; code=$?
check "registry file vanishes and returns: capture goes on, the new session is used" \
  [ "$code" = 0 -a -n "$(grep '/while-gone' "$tmp/vanish.out")" -a -n "$(grep '/registry-back' "$tmp/vanish.out" | grep sess-back)" ]

# (e) Followers of files others write stay bounded inside a running daemon: the registry replaced (by
# rename) with a 64 GiB sparse file, then a key log grown by 32 MiB with no newline. Peak RSS stays
# within --memory-mb 64 plus the daemon's fixed size, and calls keep reaching the database within 2 s.
freg=$tmp/follow-reg.jsonl fkeys=$tmp/follow.keys
echo '{"pid": 1, "session_id": "s-follow"}' > "$freg"; : > "$fkeys"
"$bin" capture --netns $A --registry "$freg" --keylog "$fkeys" --db "$tmp/follow.db" --memory-mb 64 \
  --format none 2> "$tmp/follow.err" &
cap=$!
sleep 1.5
truncate -s 64G "$tmp/sparse.jsonl" && mv "$tmp/sparse.jsonl" "$freg"
head -c $((32 << 20)) /dev/zero | tr '\0' 'a' >> "$fkeys"
late=0
for i in 1 2 3 4 5; do
  t0=$(date +%s.%N)
  ip netns exec $A curl -s -o /dev/null http://$SIP/follow/$i
  ok=""
  for _ in $(seq 40); do
    [ "$(qdb "$tmp/follow.db" "select count(*) from calls where path='/follow/$i'" 2>/dev/null)" = 1 ] && { ok=1; break; }
    sleep 0.05
  done
  [ -n "$ok" ] && python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $t0 < 2.0 else 1)" || late=$((late + 1))
  sleep 0.3
done
peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$cap/status)
kill -TERM $cap; wait $cap
echo "followers: peak RSS $((peak_kb / 1024)) MB with a 64 GiB sparse registry and a 32 MiB line in the key log; $late of 5 calls late"
check "sparse registry and newline-less key log: RSS within 64 MB + fixed size (125 MB), calls stored within 2 s" \
  [ "$peak_kb" -le $((125 * 1024)) -a "$late" = 0 ]

# Secrets planted in real traffic (headers, cookies, query, path, JSON bodies both ways, inside HTTPS
# decrypted with a key log) reach nothing calltap writes or serves: database, stdout, logs, ClawMetry
# JSON Lines, API responses, /metrics. Files for others to read are 0640 in the calltap group.
groupadd -f calltap
cat > "$tmp/secret_server.py" <<'PY'
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = b'{"access_token":"PLANTED-RESP-TOKEN-7732","ok":true}'
        self.send_response(200)
        self.send_header("Set-Cookie", "sid=PLANTED-SETCOOKIE-7731; HttpOnly")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *a): pass
http.server.HTTPServer.allow_reuse_address = True
plain = http.server.HTTPServer((sys.argv[1], 8084), H)
tls = http.server.HTTPServer((sys.argv[1], 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
import threading
threading.Thread(target=tls.serve_forever, daemon=True).start()
plain.serve_forever()
PY
ip netns exec $S python3 "$tmp/secret_server.py" $SIP "$tmp/cert.pem" "$tmp/key.pem" 2>/dev/null &
secret_server=$!
port=$((20000 + RANDOM % 20000))
"$bin" capture --netns $A --db "$tmp/sec.db" --summaries --keylog "$tmp/sec-keys.log" \
  --clawmetry-jsonl "$tmp/sec-claw.jsonl" --clawmetry-include-llm --listen 127.0.0.1:$port \
  --format jsonl > "$tmp/sec.out" 2> "$tmp/sec.err" &
cap=$!
sleep 1.5
ip netns exec $A curl -s -o /dev/null "http://$SIP:8084/v1/chat?api_key=PLANTED-QUERY-7733&model=m" \
  -H "Authorization: Bearer PLANTED-AUTH-7734" -H "Cookie: s=PLANTED-COOKIE-7735" -H "X-Api-Key: PLANTED-XKEY-7736" \
  -H "Content-Type: application/json" -d '{"password":"PLANTED-BODY-7737","prompt":"hi"}'
ip netns exec $A curl -s -o /dev/null "http://$SIP:8084/services/T000/B000/PLANTEDSLACK7738"
ip netns exec $A curl -s -o /dev/null "http://$SIP:8084/v1/keys/sk-PLANTED-PATH-77390000/usage"
ip netns exec $A env SSLKEYLOGFILE="$tmp/sec-keys.log" curl -s -o /dev/null --cacert "$tmp/cert.pem" \
  --resolve secure.test:8443:$SIP "https://secure.test:8443/v1/chat?token=PLANTED-TLSQ-7740" \
  -H "Authorization: Bearer PLANTED-TLSAUTH-7741" -H "Content-Type: application/json" -d '{"api_key":"PLANTED-TLSBODY-7742"}'
sleep 1.5
for path in "api/external-calls?limit=1000" "api/external-calls/summary" "api/sessions" "api/stats" "metrics"; do
  curl -s "http://127.0.0.1:$port/$path" >> "$tmp/sec-api.txt"; echo >> "$tmp/sec-api.txt"
done
kill -TERM $cap; wait $cap
kill $secret_server 2>/dev/null
python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print('\n'.join(c.iterdump()))" "$tmp/sec.db" > "$tmp/sec-db.sql"
# The key log's own secrets (hex) must not show up either.
awk '{print $3}' "$tmp/sec-keys.log" | sort -u > "$tmp/sec-keyhex.txt"
sinks="$tmp/sec-db.sql $tmp/sec.out $tmp/sec.err $tmp/sec-claw.jsonl $tmp/sec-api.txt"
check "planted secrets: the calls are there, redacted (decrypted HTTPS included)" \
  [ "$(grep -c 'REDACTED' "$tmp/sec.out")" -ge 4 -a -n "$(grep '"visibility":"decrypted"' "$tmp/sec.out" | grep '/v1/chat')" ]
check "planted secrets: none in the database, stdout, logs, ClawMetry, API or /metrics" \
  bash -c "! cat $sinks | grep -q PLANTED && ! cat $sinks | grep -q -F -f '$tmp/sec-keyhex.txt'"
check "database and ClawMetry file are 0640 in the calltap group" \
  [ "$(stat -c '%a %G' "$tmp/sec.db")" = "640 calltap" -a "$(stat -c '%a %G' "$tmp/sec-claw.jsonl")" = "640 calltap" ]
echo "capture: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
