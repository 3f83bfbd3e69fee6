#!/usr/bin/env bash
# The planted-secret matrix: every secret of Tests/Fixtures/planted-secrets.json, in a request target
# (query or path), a request body and a response body, over HTTP/1.1 and HTTP/2, plaintext and inside
# TLS decrypted with the client's key log, through a live `calltap capture --summaries` with every
# output on. None may reach any output: the database (every table), JSON Lines, the table of `calls` and
# of `read`, the API, the dashboard, the ClawMetry file, the OTLP spans, the logs, /metrics. The calls
# themselves must be there (so a test that lost them cannot pass), and the ordinary ids must stay.
# Needs root (network namespaces); skips without, except under CI=true.
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
. Scripts/lib/setup.sh
. Scripts/lib/livecheck.sh
ensure_packages nginx-light curl iproute2 openssl
python3 -c "import opentelemetry.proto" 2>/dev/null || python3 -m pip install -q opentelemetry-proto 2>/dev/null
A=ct-sec-agent S=ct-sec-svc
AIP=10.213.50.2 SIP=10.213.50.1
tmp=$(mktemp -d)
chmod 755 "$tmp"
cleanup() {
  stop_jobs
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  ip netns del $A 2>/dev/null; ip netns del $S 2>/dev/null
  rm -rf /etc/netns/$A
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
veth_pair $A $S ct-seca0 ct-secs0 $AIP $SIP || { cannot_run "secrets matrix"; exit 0; }
mkdir -p /etc/netns/$A && echo "$SIP api.secrets.test" > /etc/netns/$A/hosts

# The server: nginx with HTTP/1.1 (80), HTTP/2 without TLS (81, prior knowledge) and TLS with ALPN h2 or
# http/1.1 (443); /resp/N.{json,form,txt} answer with the fixture's bodies, anything else with 200.
python3 - "$tmp" <<'PY'
import json, os, sys
tmp = sys.argv[1]
f = json.load(open("Tests/Fixtures/planted-secrets.json"))
os.makedirs(f"{tmp}/www/resp", exist_ok=True)
ext = {"application/json": "json", "application/x-www-form-urlencoded": "form", "text/plain": "txt"}
for i, b in enumerate(f["bodies"]):
    open(f"{tmp}/www/resp/{i}.{ext[b['type']]}", "w").write(b["body"])
    open(f"{tmp}/body-{i}", "w").write(b["body"])
    open(f"{tmp}/type-{i}", "w").write(b["type"])
with open(f"{tmp}/targets.txt", "w") as out:
    for t in f["targets"] + f["ordinary_targets"]:
        out.write(t + "\n")
open(f"{tmp}/nbodies", "w").write(str(len(f["bodies"])))
PY
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=api.secrets.test" -addext "subjectAltName=DNS:api.secrets.test" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat > "$tmp/nginx.conf" <<EOF
worker_processes 1;
user root;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events {}
http {
  access_log off;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp; uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  types { application/json json; application/x-www-form-urlencoded form; text/plain txt; }
  default_type application/json;
  server {
    listen $SIP:80;
    listen $SIP:81 http2;
    listen $SIP:443 ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    root $tmp/www;
    location /resp/ { }
    location / { return 200 '{"ok":true}'; }
  }
}
EOF
ip netns exec $S nginx -c "$tmp/nginx.conf"

start_port=$((20000 + RANDOM % 20000))
python3 Scripts/lib/otlp_receiver.py 127.0.0.1 0 "$tmp/otlp-spans.jsonl" "$tmp/otlp-metrics.jsonl" --ready "$tmp/otlp.port" 2>/dev/null &
for _ in $(seq 100); do [ -s "$tmp/otlp.port" ] && break; sleep 0.05; done
groupadd -f calltap
"$bin" capture --netns $A --db "$tmp/sec.db" --summaries --format jsonl --listen 127.0.0.1:$start_port \
  --clawmetry-jsonl "$tmp/claw.jsonl" --clawmetry-include-llm --keylog "$tmp/keys.log" -w "$tmp/pcaps" \
  --otlp-endpoint "http://127.0.0.1:$(cat "$tmp/otlp.port")" > "$tmp/stdout.jsonl" 2> "$tmp/stderr.log" &
cap=$!
sleep 1.5

# The clients: curl, one process per transport and class, the requests chained with --next.
transports=("http://api.secrets.test:80 --http1.1" "http://api.secrets.test:81 --http2-prior-knowledge"
            "https://api.secrets.test:443 --http1.1" "https://api.secrets.test:443 --http2")
nb=$(cat "$tmp/nbodies")
for t in "${transports[@]}"; do
  read -r base flag <<< "$t"
  # --next starts each request afresh: the options go with every one.
  flag="$flag --cacert $tmp/cert.pem"
  args=()
  while IFS= read -r target; do
    [ ${#args[@]} -gt 0 ] && args+=(--next)
    args+=($flag -g -s -o /dev/null "$base$target")
  done < "$tmp/targets.txt"
  for i in $(seq 0 $((nb - 1))); do
    args+=(--next $flag -s -o /dev/null -H "Content-Type: $(cat "$tmp/type-$i")" --data-binary "@$tmp/body-$i" "$base/req/$i")
    args+=(--next $flag -s -o /dev/null "$base/resp/$i.$(case $(cat "$tmp/type-$i") in application/json) echo json;; application/x-www-form-urlencoded) echo form;; *) echo txt;; esac)")
  done
  if ! ip netns exec $A env SSLKEYLOGFILE="$tmp/keys.log" curl "${args[@]}"; then
    # A stream the server refused (nginx resets an HTTP/2 request whose :path holds "[") ends curl's
    # chain: the rest of it goes one process per request.
    segment=()
    for a in "${args[@]}" --next; do
      if [ "$a" = "--next" ]; then
        [ ${#segment[@]} -gt 0 ] && ip netns exec $A env SSLKEYLOGFILE="$tmp/keys.log" curl "${segment[@]}"
        segment=()
      else
        segment+=("$a")
      fi
    done
  fi
done
sleep 2
port=$start_port
for path in "api/external-calls?limit=1000" "api/external-calls?limit=1000&before=" "api/external-calls/summary" "api/external-calls/timeline" "api/local/external-calls?limit=2000" \
            "api/sessions" "api/stats" "metrics" "" "openapi.json"; do
  curl -s "http://127.0.0.1:$port/$path" >> "$tmp/api.txt"; echo >> "$tmp/api.txt"
done
kill -TERM $cap; wait $cap
"$bin" calls --db "$tmp/sec.db" --format table > "$tmp/calls-table.txt" 2>> "$tmp/stderr.log"
"$bin" calls --db "$tmp/sec.db" --format jsonl > "$tmp/calls.jsonl" 2>> "$tmp/stderr.log"
"$bin" read "$tmp"/pcaps/*.pcap --keylog "$tmp/keys.log" --summaries --format table > "$tmp/read-table.txt" 2>> "$tmp/stderr.log"
python3 - "$tmp/sec.db" > "$tmp/db-dump.txt" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
    for row in db.execute(f'SELECT * FROM "{name}"'):
        print(name, row)
PY

python3 - "$tmp" <<'PY'
import glob, json, os, sys
tmp = sys.argv[1]
f = json.load(open("Tests/Fixtures/planted-secrets.json"))
outputs = {
    "database (every table)": ["db-dump.txt", "sec.db", "sec.db-wal"],
    "JSON Lines": ["stdout.jsonl", "calls.jsonl"],
    "table (calls, read)": ["calls-table.txt", "read-table.txt"],
    "API, dashboard, /metrics": ["api.txt"],
    "ClawMetry file": ["claw.jsonl"],
    "OTLP spans and metrics": ["otlp-spans.jsonl", "otlp-metrics.jsonl"],
    "logs": ["stderr.log"],
}
leaks = []
for what, files in outputs.items():
    for name in files:
        path = os.path.join(tmp, name)
        if not os.path.exists(path):
            if not name.endswith("-wal"):
                leaks.append(f"{what}: {name} is missing")
            continue
        data = open(path, "rb").read()
        if b"PLANTED" in data:
            i = data.index(b"PLANTED")
            leaks.append(f"{what}: {name}: ...{data[max(0, i - 80):i + 40]!r}")
calls = [json.loads(l) for l in open(f"{tmp}/stdout.jsonl") if l.strip()]
http = [c for c in calls if c["kind"] == "http"]
by_vis = {v: sum(1 for c in http if c["visibility"] == v) for v in ("plaintext", "decrypted")}
by_version = {v: sum(1 for c in http if c["http_version"] == v) for v in ("1.1", "2")}
per_transport = len(f["targets"]) + len(f["ordinary_targets"]) + 2 * len(f["bodies"])
summaries = sum(1 for c in http if c["request_summary"] or c["response_summary"])
spans = sum(1 for l in open(f"{tmp}/otlp-spans.jsonl"))
claw = sum(1 for l in open(f"{tmp}/claw.jsonl"))
paths = {c["path"] for c in http}
missing_ordinary = [t for t in f["ordinary_targets"] if t not in paths]
print(f"secrets matrix: {len(f['targets'])} targets and {len(f['bodies'])} bodies (as request and as response) x "
      f"{{HTTP/1.1, HTTP/2}} x {{plaintext, decrypted}}: {len(http)} HTTP calls seen of {4 * per_transport} made "
      f"({by_vis['plaintext']} plaintext, {by_vis['decrypted']} decrypted; {by_version['1.1']} HTTP/1.1, {by_version['2']} HTTP/2), "
      f"{summaries} with summaries, {spans} OTLP spans, {claw} ClawMetry lines; "
      f"{len(leaks)} leaks in {sum(len(v) for v in outputs.values())} outputs")
problems = list(leaks)
if len(http) < 4 * per_transport:
    problems.append(f"only {len(http)} of {4 * per_transport} calls were seen")
if min(by_vis.values()) < 2 * per_transport or min(by_version.values()) < 2 * per_transport:
    problems.append(f"the matrix is not covered: {by_vis} {by_version}")
if summaries < 4 * len(f["bodies"]):
    problems.append(f"only {summaries} calls carry a summary")
if missing_ordinary:
    problems.append(f"ordinary ids redacted or missing: {missing_ordinary[:3]}")
for p in problems[:20]:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
