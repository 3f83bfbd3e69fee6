#!/usr/bin/env bash
# OTLP export against a receiver that decodes with the official opentelemetry-proto package (PyPI):
# `read` of the bundled samples checked span by span, metrics, the standard environment variables, a
# decrypted request carrying traceparent (nginx over TLS, curl with HTTP/1.1 and HTTP/2), exit 5 when
# the endpoint is down; and `capture` in real network namespaces through a 10 s collector outage and a
# kill -9 with a batch in flight, where every call must arrive.
# Needs root. Skips when namespaces cannot be made, except under CI=true, where that is a failure.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
. Scripts/lib/setup.sh
. Scripts/lib/livecheck.sh
ensure_packages nginx-light tcpdump curl iproute2
python3 -c "import opentelemetry.proto" 2>/dev/null || python3 -m pip install -q opentelemetry-proto 2>/dev/null
A=ct-otlp-agent S=ct-otlp-svc
AIP=10.213.40.2 SIP=10.213.40.1
tmp=$(mktemp -d)
cleanup() {
  stop_jobs
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  ip netns del $A 2>/dev/null; ip netns del $S 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

# A receiver in its own directory; sets $port and $rdir.
receiver_n=0
start_receiver() {
  receiver_n=$((receiver_n + 1))
  rdir="$tmp/r$receiver_n"
  mkdir -p "$rdir"
  python3 Scripts/lib/otlp_receiver.py 127.0.0.1 0 "$rdir/spans.jsonl" "$rdir/metrics.jsonl" \
    --fail-file "$rdir/fail" --slow-file "$rdir/slow" --ready "$rdir/port" 2> "$rdir/err" &
  receiver_pid=$!
  for _ in $(seq 100); do [ -s "$rdir/port" ] && break; sleep 0.05; done
  port=$(cat "$rdir/port")
}

# --- read: the bundled samples, span by span, and the metrics ---
start_receiver
"$bin" read Samples/agent-demo.pcap Samples/https-demo.pcap Samples/tls-gap.pcap --keylog Samples/https-demo.keylog \
  --session sess-otlp --otlp-endpoint "http://127.0.0.1:$port" --format jsonl > "$rdir/calls.jsonl" 2> "$rdir/read.err"
rc=$?
check "read --otlp-endpoint exits 0 ($rc) and leaves stderr empty" test $rc -eq 0 -a ! -s "$rdir/read.err"
check "every call of the samples is one span: name, kind, times, attributes, resource; the request-duration histogram counts every HTTP call" \
  python3 Scripts/lib/otlp_check.py "$rdir/spans.jsonl" "$rdir/calls.jsonl" --metrics "$rdir/metrics.jsonl" \
  --resource service.name=calltap --resource "host.name=$(hostname)"
check "no request body was refused by the official decoder" test ! -e "$rdir/spans.jsonl.bad"
kill $receiver_pid

# --- the standard environment variables ---
start_receiver
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port/" OTEL_EXPORTER_OTLP_HEADERS="x-test=a%20b,other=1" \
  OTEL_SERVICE_NAME=agents-eu OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test,service.name=ignored" \
  "$bin" read Samples/agent-demo.pcap --format jsonl > "$rdir/calls.jsonl" 2> "$rdir/read.err"
check "OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS (percent-decoded), OTEL_SERVICE_NAME over OTEL_RESOURCE_ATTRIBUTES" \
  python3 Scripts/lib/otlp_check.py "$rdir/spans.jsonl" "$rdir/calls.jsonl" --resource service.name=agents-eu \
  --resource deployment.environment=test --header-x-test "a b"
kill $receiver_pid

# --- read: an endpoint that is down exits 5 with one line; a bad endpoint is a usage error ---
start_receiver
touch "$rdir/fail"
start=$(date +%s.%N)
"$bin" read Samples/agent-demo.pcap --format none --otlp-endpoint "http://127.0.0.1:$port" --otlp-timeout 2 2> "$rdir/down.err"
rc=$?
took=$(python3 -c "import time; print(round(time.time() - $start, 1))")
echo "read with the collector answering 503: exit $rc after ${took}s: $(cat "$rdir/down.err")"
check "read exits 5 when the endpoint answers 503 past --otlp-timeout, with one line saying why" \
  bash -c "[ $rc -eq 5 ] && [ \$(wc -l < '$rdir/down.err') -eq 1 ] && grep -q 'HTTP 503' '$rdir/down.err' && python3 -c 'import sys; sys.exit(0 if $took < 6 else 1)'"
rm -f "$rdir/fail"
start=$(date +%s.%N)
"$bin" read Samples/agent-demo.pcap --format none --otlp-endpoint "http://127.0.0.1:$port/wrong-path" 2> "$rdir/404.err"
rc=$?
took=$(python3 -c "import time; print(round(time.time() - $start, 1))")
check "a wrong endpoint path (404) exits 5 at once (${took}s), not after the timeout: $(cat "$rdir/404.err")" \
  bash -c "[ $rc -eq 5 ] && grep -q 'answered HTTP 404' '$rdir/404.err' && python3 -c 'import sys; sys.exit(0 if $took < 5 else 1)'"
kill $receiver_pid
"$bin" read Samples/agent-demo.pcap --format none --otlp-endpoint "http://127.0.0.1:1" --otlp-timeout 1 2> "$tmp/refused.err"
rc=$?
check "read exits 5 when the endpoint refuses connections ($(cat "$tmp/refused.err"))" \
  bash -c "[ $rc -eq 5 ] && grep -q 'refused' '$tmp/refused.err'"
"$bin" read Samples/agent-demo.pcap --format none --otlp-endpoint "ftp://example" 2> "$tmp/usage.err"
rc=$?
check "a non-HTTP endpoint is a usage error (exit $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'http:// or https://' '$tmp/usage.err'"
"$bin" read Samples/agent-demo.pcap --format none --otlp-endpoint "http://127.0.0.1:1" --otlp-header "bad" 2> "$tmp/usage.err"
rc=$?
check "--otlp-header without = is a usage error (exit $rc)" test $rc -eq 1

# --- a decrypted request carrying traceparent: HTTP/1.1 and HTTP/2 through nginx over TLS ---
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=otlp.test" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat > "$tmp/nginx.conf" <<EOF
worker_processes 1;
user root;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events {}
http {
  access_log off;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp; uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  server {
    listen 127.0.0.1:18443 ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location / { return 200 "ok\n"; }
  }
}
EOF
nginx -c "$tmp/nginx.conf"
tcpdump -i lo --immediate-mode -U -w "$tmp/tp.pcap" tcp port 18443 2>/dev/null &
dump=$!
sleep 1
T1=4bf92f3577b34da6a3ce929d0e0e4736 P1=00f067aa0ba902b7 T2=0af7651916cd43dd8448eb211c80319c P2=b7ad6b7169203331
SSLKEYLOGFILE="$tmp/tp.keys" curl -sk --http1.1 -H "traceparent: 00-$T1-$P1-01" -o /dev/null https://127.0.0.1:18443/tp/h1
SSLKEYLOGFILE="$tmp/tp.keys" curl -sk --http2 -H "traceparent: 00-$T2-$P2-01" -o /dev/null https://127.0.0.1:18443/tp/h2
SSLKEYLOGFILE="$tmp/tp.keys" curl -sk --http1.1 -H "traceparent: 00-$T1-0000000000000000-01" -o /dev/null https://127.0.0.1:18443/tp/bad
sleep 0.5
kill $dump; wait $dump 2>/dev/null
start_receiver
"$bin" read "$tmp/tp.pcap" --keylog "$tmp/tp.keys" --include-local --format jsonl --otlp-endpoint "http://127.0.0.1:$port" \
  > "$rdir/calls.jsonl" 2> "$rdir/read.err"
check "decrypted requests with traceparent: the spans take its trace id and parent (HTTP/1.1 and HTTP/2); an all-zero parent is ignored" \
  python3 - "$rdir/spans.jsonl" "$rdir/calls.jsonl" "$T1" "$P1" "$T2" "$P2" <<'PY'
import json, sys
spans = [json.loads(l) for l in open(sys.argv[1])]
calls = [json.loads(l) for l in open(sys.argv[2])]
t1, p1, t2, p2 = sys.argv[3:7]
by_path = {s["attributes"].get("calltap.path"): s for s in spans if s["name"] == "GET"}
ok = True
for path, t, p, version in (("/tp/h1", t1, p1, "1.1"), ("/tp/h2", t2, p2, "2")):
    s = by_path.get(path)
    c = [c for c in calls if c["path"] == path]
    good = s and s["trace_id"] == t and s["parent_span_id"] == p and s["attributes"].get("network.protocol.version") == version \
        and s["attributes"].get("calltap.visibility") == "decrypted" and c and c[0]["trace_id"] == t and c[0]["parent_span_id"] == p
    print(f"  {path}: span trace {s and s['trace_id']} parent {s and s['parent_span_id']}")
    ok = ok and bool(good)
bad = by_path.get("/tp/bad")
ok = ok and bad is not None and bad["parent_span_id"] == "" and bad["trace_id"] != t1
sys.exit(0 if ok else 1)
PY
check "...and every span of that capture checks out field by field" \
  python3 Scripts/lib/otlp_check.py "$rdir/spans.jsonl" "$rdir/calls.jsonl" --metrics "$rdir/metrics.jsonl"
kill $receiver_pid

# --- capture: a 10 s collector outage, then kill -9 with a batch in flight; every call arrives ---
if ! veth_pair $A $S ct-otlpa0 ct-otlps0 $AIP $SIP; then
  cannot_run "otlp capture tests"
  echo "otlp tests: $pass passed, $fail failed"
  [ $fail -eq 0 ]; exit
fi
ip netns exec $S python3 -m http.server 80 --bind $SIP >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec $A curl -s -o /dev/null http://$SIP/ && break; sleep 0.1; done

start_receiver
db="$tmp/otlp.db"
"$bin" capture --netns $A --db "$db" --otlp-endpoint "http://127.0.0.1:$port" --format none --listen 127.0.0.1:18478 \
  2> "$tmp/cap1.err" &
cap=$!
sleep 1.5
# The client: a call every 50 ms for 18 s; the collector is down from 3 s to 13 s.
ip netns exec $A python3 - $SIP "$tmp/client.txt" 18 <<'PY' &
import http.client, sys, time
out = open(sys.argv[2], "a", buffering=1)
end = time.time() + float(sys.argv[3]); i = 0
while time.time() < end:
    i += 1
    c = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
    try:
        c.request("GET", f"/otlp/{i}"); c.getresponse().read(); out.write(f"/otlp/{i}\n")
    except Exception:
        pass
    finally:
        c.close()
    time.sleep(0.05)
PY
client=$!
sleep 3; touch "$rdir/fail"
sleep 10; rm -f "$rdir/fail"
wait $client
sleep 3
metrics=$(curl -s http://127.0.0.1:18478/metrics | grep '^calltap_export_')
echo "$metrics" | sed 's/^/  /'
check "/metrics shows the outage's failures, the spans exported and no lag once it is over" \
  bash -c "echo '$metrics' | grep -qE 'calltap_export_failures\{exporter=\"otlp\"\} [1-9]' &&
           echo '$metrics' | grep -qE 'calltap_export_exported_spans\{exporter=\"otlp\"\} [1-9]' &&
           echo '$metrics' | grep -qE 'calltap_export_lag_calls\{exporter=\"otlp\"\} 0'"
# A batch in flight when the daemon is killed: the receiver has it but the daemon never heard back.
touch "$rdir/slow"
for i in $(seq 20); do ip netns exec $A curl -s -o /dev/null http://$SIP/otlp/killed-$i && echo "/otlp/killed-$i" >> "$tmp/client.txt"; done
before=$(wc -l < "$rdir/spans.jsonl")
for _ in $(seq 60); do [ "$(wc -l < "$rdir/spans.jsonl")" -gt "$before" ] && break; sleep 0.1; done
sleep 0.3
kill -9 $cap; wait $cap 2>/dev/null
rm -f "$rdir/slow"
"$bin" capture --netns $A --db "$db" --otlp-endpoint "http://127.0.0.1:$port" --format none 2> "$tmp/cap2.err" &
cap=$!
sleep 1.5
for i in $(seq 10); do ip netns exec $A curl -s -o /dev/null http://$SIP/otlp/after-$i && echo "/otlp/after-$i" >> "$tmp/client.txt"; done
sleep 4
kill -TERM $cap; wait $cap
"$bin" calls --db "$db" --format jsonl > "$tmp/stored.jsonl"
check "after the outage and kill -9: every stored call arrived as a span, resends identical (same span id)" \
  python3 Scripts/lib/otlp_check.py "$rdir/spans.jsonl" "$tmp/stored.jsonl" --allow-duplicates
check "every request the client made is stored and exported" python3 - "$tmp/client.txt" "$rdir/spans.jsonl" <<'PY'
import json, sys
made = [l.strip() for l in open(sys.argv[1]) if l.strip()]
got = {json.loads(l)["attributes"].get("calltap.path") for l in open(sys.argv[2])}
missing = [p for p in made if p not in got]
print(f"  client made {len(made)} calls; {len(made) - len(missing)} arrived as spans" + (f"; missing: {missing[:10]}" if missing else ""))
sys.exit(1 if missing or len(made) < 200 else 0)
PY
echo "  capture logs: $(grep -h 'OTLP' "$tmp/cap1.err" "$tmp/cap2.err" | sed 's/.*OTLP/OTLP/' | sort | uniq -c | tr -s ' ' | tr '\n' ';')"

# The flags as --config keys: otlp-endpoint, otlp-header (a list), otlp-timeout.
printf 'netns = ["%s"]\ndb = "%s"\nformat = "none"\notlp-endpoint = "http://127.0.0.1:%s"\notlp-header = ["x-test=from-config"]\notlp-timeout = 5\n' \
  $A "$tmp/config.db" $port > "$tmp/otlp.toml"
"$bin" capture --config "$tmp/otlp.toml" 2> "$tmp/config.err" &
cap=$!
sleep 1.5
ip netns exec $A curl -s -o /dev/null http://$SIP/otlp/from-config
sleep 1.5
kill -TERM $cap; wait $cap
check "otlp-endpoint, otlp-header and otlp-timeout as --config keys" \
  python3 -c "import json, sys; sys.exit(0 if any(json.loads(l)['attributes'].get('calltap.path') == '/otlp/from-config' and json.loads(l)['header_x_test'] == 'from-config' for l in open('$rdir/spans.jsonl')) else 1)"

"$bin" capture --netns $A --otlp-endpoint "http://127.0.0.1:$port" --format none 2> "$tmp/nodb.err"
rc=$?
check "capture --otlp-endpoint without --db is a usage error (exit $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'needs --db' '$tmp/nodb.err'"

echo "otlp tests: $pass passed, $fail failed"
[ $fail -eq 0 ]
