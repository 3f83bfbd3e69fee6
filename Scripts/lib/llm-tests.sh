#!/usr/bin/env bash
# LLM calls from real clients (curl, Node's built-in fetch, Python's urllib) against LLM-API-like servers
# (Scripts/lib/llm_server.py: OpenAI Chat Completions and Responses, Anthropic Messages, Gemini; JSON and
# SSE; gzip and br), plain and over TLS decrypted with curl's key log, captured on loopback by tcpdump and
# read by `calltap read`: every call's provider, model, tokens, stop reason and tool calls must equal what
# the server sent, streams must have a time to first token, and the session keys on the wire
# (`session_id` header, `prompt_cache_key`) must decide the session. Needs root (tcpdump).
set -uo pipefail
bin=$1
cd "$(dirname "$0")/../.."
. Scripts/lib/setup.sh
ensure_packages tcpdump curl openssl
python3 -c "import brotli" 2>/dev/null || python3 -m pip install -q brotli 2>/dev/null
tmp=$(mktemp -d)
cleanup() {
  local p
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=llm.test" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
python3 Scripts/lib/llm_server.py 127.0.0.1 0 "$tmp/truth.jsonl" --ready "$tmp/plain.port" &
python3 Scripts/lib/llm_server.py 127.0.0.1 0 "$tmp/truth.jsonl" --tls "$tmp/cert.pem" "$tmp/key.pem" --ready "$tmp/tls.port" &
for _ in $(seq 100); do [ -s "$tmp/plain.port" ] && [ -s "$tmp/tls.port" ] && break; sleep 0.05; done
P=$(cat "$tmp/plain.port") T=$(cat "$tmp/tls.port")
tcpdump -i lo --immediate-mode -U -w "$tmp/llm.pcap" "tcp port $P or tcp port $T" 2> "$tmp/tcpdump.err" &
dump=$!
for _ in $(seq 50); do grep -q listening "$tmp/tcpdump.err" 2>/dev/null && break; sleep 0.1; done

n=0
body() { # kind stream → a request body
  case $1 in
    chat) echo "{\"model\":\"gpt-4o\",\"stream\":$2,\"messages\":[{\"role\":\"user\",\"content\":\"never stored\"}]}" ;;
    responses) echo "{\"model\":\"gpt-5\",\"stream\":$2,\"input\":\"never stored\"}" ;;
    messages) echo "{\"model\":\"claude-sonnet-4-5\",\"stream\":$2,\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"never stored\"}]}" ;;
    gemini) echo "{\"contents\":[{\"parts\":[{\"text\":\"never stored\"}]}]}" ;;
  esac
}
path() { # kind stream
  case $1 in
    chat) echo "/v1/chat/completions" ;;
    responses) echo "/v1/responses" ;;
    messages) echo "/v1/messages" ;;
    gemini) [ "$2" = true ] && echo "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&" || echo "/v1beta/models/gemini-2.5-flash:generateContent?" ;;
  esac
}
url() { # base kind stream → U: base+path with a unique id (set here, not echoed, so the count goes on)
  n=$((n + 1))
  local p; p=$(path "$2" "$3")
  case $p in *\?*) U="$1$p""n=$n" ;; *) U="$1$p?n=$n" ;; esac
}
for kind in chat responses messages gemini; do
  for stream in true false; do
    url http://127.0.0.1:$P $kind $stream
    curl -s -o /dev/null -H "Content-Type: application/json" -d "$(body $kind $stream)" "$U"
    url http://127.0.0.1:$P $kind $stream
    curl -s -o /dev/null --compressed -H "Content-Type: application/json" -d "$(body $kind $stream)" "$U"
    url https://llm.test:$T $kind $stream
    SSLKEYLOGFILE="$tmp/keys.log" curl -s -o /dev/null --compressed --cacert "$tmp/cert.pem" --resolve llm.test:$T:127.0.0.1 \
      -H "Content-Type: application/json" -d "$(body $kind $stream)" "$U"
    url http://127.0.0.1:$P $kind $stream
    python3 -c "
import sys, urllib.request
r = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={'Content-Type': 'application/json', 'Accept-Encoding': 'gzip'})
urllib.request.urlopen(r).read()" "$U" "$(body $kind $stream)"
  done
done
# Node's built-in fetch, as a gateway would make these calls (it offers gzip, deflate and br).
if command -v node >/dev/null; then
  urls=()
  for kind in chat messages; do for stream in true false; do url http://127.0.0.1:$P $kind $stream; urls+=("$U" "$(body $kind $stream)"); done; done
  node -e '
    const a = process.argv.slice(1);
    (async () => { for (let i = 0; i < a.length; i += 2) {
      const r = await fetch(a[i], { method: "POST", headers: { "content-type": "application/json" }, body: a[i + 1] });
      await r.text(); } })();' "${urls[@]}"
fi
# The session keys on the wire: the Codex transport's session_id header, and prompt_cache_key.
curl -s -o /dev/null -H "Content-Type: application/json" -H "session_id: 3f2b8c1e-0000-4e6b-8f1a-00000000c0de" \
  -H "conversation_id: 3f2b8c1e-0000-4e6b-8f1a-00000000c0de" -d "$(body responses true)" "http://127.0.0.1:$P/backend-api/codex/responses?n=codex"
curl -s -o /dev/null -H "Content-Type: application/json" \
  -d '{"model":"gpt-5","stream":false,"prompt_cache_key":"3f2b8c1e-0000-4e6b-8f1a-0000000cac4e","input":"x"}' "http://127.0.0.1:$P/v1/responses?n=cachekey"
curl -s -o /dev/null "http://127.0.0.1:$P/not-llm" 2>/dev/null
sleep 0.5
kill $dump; wait $dump 2>/dev/null
"$bin" read "$tmp/llm.pcap" --include-local --keylog "$tmp/keys.log" --format jsonl > "$tmp/calls.jsonl" 2> "$tmp/read.err"
python3 - "$tmp/truth.jsonl" "$tmp/calls.jsonl" <<'PY'
import json, sys
truth = [json.loads(l) for l in open(sys.argv[1])]
calls = [json.loads(l) for l in open(sys.argv[2])]
http = [c for c in calls if c["kind"] == "http"]
by_path = {c["path"]: c for c in http}
problems = []
checked = streams = decrypted = compressed = 0
for t in truth:
    c = by_path.get(t["path"])
    if c is None:
        problems.append(f"no call for {t['path']}")
        continue
    provider = "anthropic" if "/v1/messages" in t["path"] else "gemini" if "/models/" in t["path"] else "openai"
    want = dict(llm_provider=provider, llm_model=t["model"], llm_input_tokens=t["input"], llm_output_tokens=t["output"],
                llm_cache_read_tokens=t["cached"], llm_stop_reason=t["stop"], llm_tool_calls=t["tools"] or None)
    for k, v in want.items():
        if c[k] != v:
            problems.append(f"{t['path']}: {k} is {c[k]!r}, sent {v!r}")
    if t["stream"]:
        streams += 1
        if c["llm_ttft_ms"] is None or not (0 < c["llm_ttft_ms"] <= c["latency_ms"]):
            problems.append(f"{t['path']}: llm_ttft_ms {c['llm_ttft_ms']} (latency {c['latency_ms']})")
    elif c["llm_ttft_ms"] is not None:
        problems.append(f"{t['path']}: a time to first token on a response that was not streamed")
    decrypted += c["visibility"] == "decrypted"
    checked += 1
    if "never stored" in json.dumps(c):
        problems.append(f"{t['path']}: the prompt reached the call")
codex = by_path.get("/backend-api/codex/responses?n=codex")
if not codex or codex["session_id"] != "3f2b8c1e-0000-4e6b-8f1a-00000000c0de" or codex["attribution_key"] != "session_id_header":
    problems.append(f"session_id header did not decide the session: {codex and (codex['session_id'], codex['attribution_key'])}")
ck = by_path.get("/v1/responses?n=cachekey")
if not ck or ck["session_id"] != "3f2b8c1e-0000-4e6b-8f1a-0000000cac4e" or ck["attribution_key"] != "prompt_cache_key":
    problems.append(f"prompt_cache_key did not decide the session: {ck and (ck['session_id'], ck['attribution_key'])}")
other = by_path.get("/not-llm")
if other is None or any(other[k] is not None for k in ("llm_provider", "llm_model", "llm_input_tokens")):
    problems.append("a call that is not to an LLM API has LLM fields")
print(f"llm: {checked} LLM calls of {len(truth)} sent checked field by field against the servers' answers "
      f"({streams} streamed, {decrypted} decrypted, JSON bodies gzip and br included); session keys: session_id header, prompt_cache_key")
for p in problems[:20]:
    print("  " + p)
sys.exit(1 if problems or checked < 34 else 0)
PY
