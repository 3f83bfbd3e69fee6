// A gateway-like agent host for the tests: ONE Node.js process serving two sessions at once, as the
// OpenClaw gateway does, with Node's built-in fetch only. Each session runs turns: an LLM request (OpenAI
// Responses, Anthropic Messages or Gemini, as pi-ai sends them), a web_fetch the model asked for (the
// headers, manual redirects, module-wide cache and result details of OpenClaw's web_fetch), and a second
// LLM request carrying the tool result. LLM calls to one provider go one at a time, so both sessions share
// one keep-alive connection. The transcripts are written as pi's SessionManager writes them (version 3
// JSON Lines, nothing until the first assistant message), with the gateway's own timestamps, under
// STATE/agents/main/sessions/, with sessions.json mapping session keys to ids.
//
// Every request carries `x-fixture-session` (ground truth for the test's servers; calltap never reads it).
//
// usage: node gateway.mjs STATE SCENARIO   (SCENARIO: full | anthropic)
//   full:      OpenAI, Anthropic and Gemini, a W3C traceparent on provider calls (diagnostics on)
//   anthropic: Anthropic only, no traceparent (diagnostics off)
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { randomUUID, randomBytes } from "node:crypto";

const [state, scenario] = process.argv.slice(2);
const dir = `${state}/agents/main/sessions`;
mkdirSync(dir, { recursive: true });
const otel = scenario === "full";

const hosts = {
  openai: "https://api.openai.test/v1/responses",
  anthropic: "https://api.anthropic.test/v1/messages",
  gemini: "https://generativelanguage.test/v1beta/models/gemini-2.5-flash",
};

// One request at a time per provider: the pool keeps one connection, reused by both sessions.
const lanes = {};
function inLane(name, work) {
  const before = lanes[name] ?? Promise.resolve();
  const run = before.then(work, work);
  lanes[name] = run.catch(() => {});
  return run;
}

class Transcript {
  constructor(id, key) {
    this.id = id;
    this.file = `${dir}/${id}.jsonl`;
    this.pending = [{ type: "session", version: 3, id, timestamp: new Date().toISOString(), cwd: "/srv/agent" }];
    this.flushed = false;
    this.last = null;
    this.key = key;
  }
  append(entry) {
    const e = { ...entry, id: randomBytes(4).toString("hex"), parentId: this.last, timestamp: new Date().toISOString() };
    this.last = e.id;
    this.pending.push(e);
    // pi persists nothing until the first assistant message, then everything so far, then line by line.
    if (!this.flushed && !(entry.type === "message" && entry.message.role === "assistant")) return;
    this.flushed = true;
    appendFileSync(this.file, this.pending.map((x) => JSON.stringify(x) + "\n").join(""));
    this.pending = [];
  }
}

async function readSSE(res, onEvent) {
  const text = await res.text();
  for (const block of text.split("\n\n")) {
    const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    if (data) onEvent(JSON.parse(data));
  }
}

// One LLM exchange; returns { toolCall: {id, url} | null, usage, model }.
async function llm(provider, session, turn, history, trace) {
  const headers = { "content-type": "application/json", "x-fixture-session": session.id };
  if (trace) headers.traceparent = `00-${trace}-${randomBytes(8).toString("hex")}-01`;
  const started = Date.now();
  let call = null, usage = {}, model;
  if (provider === "openai") {
    model = "gpt-5";
    const input = [{ role: "user", content: turn.prompt }];
    for (const h of history) {
      const [callId, itemId] = h.id.split("|");
      input.push({ type: "function_call", id: itemId, call_id: callId, name: "web_fetch", arguments: JSON.stringify({ url: h.url }) });
      input.push({ type: "function_call_output", call_id: callId, output: h.output });
    }
    const body = { model, input, stream: true, prompt_cache_key: session.id };
    const res = await inLane(provider, () => fetch(hosts.openai, { method: "POST", headers, body: JSON.stringify(body) }).then(async (r) => {
      await readSSE(r, (e) => {
        if (e.type === "response.output_item.done" && e.item.type === "function_call") call = { id: `${e.item.call_id}|${e.item.id}` };
        if (e.type === "response.completed") {
          const u = e.response.usage;
          const cached = u.input_tokens_details?.cached_tokens ?? 0;
          usage = { input: u.input_tokens - cached, output: u.output_tokens, cacheRead: cached, cacheWrite: 0 };
        }
      });
      return r;
    }));
    void res;
  } else if (provider === "anthropic") {
    model = "claude-sonnet-4-5";
    const messages = [{ role: "user", content: turn.prompt }];
    for (const h of history) {
      messages.push({ role: "assistant", content: [{ type: "tool_use", id: h.id, name: "web_fetch", input: { url: h.url } }] });
      messages.push({ role: "user", content: [{ type: "tool_result", tool_use_id: h.id, content: h.output }] });
    }
    const body = { model, max_tokens: 1024, stream: true, messages };
    await inLane(provider, () => fetch(hosts.anthropic, { method: "POST", headers, body: JSON.stringify(body) }).then((r) =>
      readSSE(r, (e) => {
        if (e.type === "content_block_start" && e.content_block.type === "tool_use") call = { id: e.content_block.id };
        if (e.type === "message_start") usage = { input: e.message.usage.input_tokens, cacheRead: e.message.usage.cache_read_input_tokens ?? 0, cacheWrite: 0 };
        if (e.type === "message_delta") usage.output = e.usage.output_tokens;
      })));
  } else {
    model = "gemini-2.5-flash";
    const contents = [{ role: "user", parts: [{ text: turn.prompt }] }];
    for (const h of history) {
      contents.push({ role: "model", parts: [{ functionCall: { name: "web_fetch", args: { url: h.url } } }] });
      contents.push({ role: "user", parts: [{ functionResponse: { name: "web_fetch", response: { output: h.output } } }] });
    }
    // The first request streams, the one with the tool result does not (and its answer comes compressed).
    const stream = history.length === 0;
    const url = `${hosts.gemini}:${stream ? "streamGenerateContent?alt=sse" : "generateContent"}`;
    const take = (o) => {
      for (const c of o.candidates ?? []) for (const p of c.content?.parts ?? []) {
        // Gemini names no ids: the client makes one, as pi does.
        if (p.functionCall) call = { id: `${p.functionCall.name}_${Date.now()}_${randomBytes(3).toString("hex")}` };
      }
      if (o.usageMetadata) {
        const u = o.usageMetadata, cached = u.cachedContentTokenCount ?? 0;
        usage = { input: u.promptTokenCount - cached, output: u.candidatesTokenCount, cacheRead: cached, cacheWrite: 0 };
      }
    };
    await inLane(provider, () => fetch(url, { method: "POST", headers, body: JSON.stringify({ contents }) }).then(async (r) => {
      if (stream) await readSSE(r, take); else take(await r.json());
    }));
  }
  return { call, usage, model, started };
}

// OpenClaw's web_fetch: its headers, manual redirects (at most 3), the module-wide cache, its details.
const cache = new Map();
async function webFetch(session, url, delay) {
  const key = `fetch:${url}:markdown:50000`;
  const hit = cache.get(key);
  if (hit) return { ...hit, cached: true };
  const start = Date.now();
  let current = url, res;
  for (let hop = 0; hop <= 3; hop++) {
    res = await fetch(current, {
      redirect: "manual",
      headers: {
        Accept: "text/markdown, text/html;q=0.9, */*;q=0.1",
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_2) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        "Accept-Language": "en-US,en;q=0.9",
        "x-fixture-session": session.id,
        "x-fixture-delay": String(delay),
      },
    });
    if (res.status >= 300 && res.status < 400 && res.headers.get("location")) {
      await res.arrayBuffer();
      current = new URL(res.headers.get("location"), current).toString();
      continue;
    }
    break;
  }
  const text = await res.text();
  const payload = {
    url, finalUrl: current, status: res.status, contentType: "text/html", title: "t", extractMode: "markdown",
    extractor: "readability", externalContent: { untrusted: true, source: "web_fetch", wrapped: true },
    truncated: false, length: text.length, rawLength: text.length, wrappedLength: text.length,
    fetchedAt: new Date().toISOString(), tookMs: Date.now() - start, text: text.slice(0, 200),
  };
  cache.set(key, payload);
  return payload;
}

async function runSession(session, turns) {
  for (const turn of turns) {
    if (turn.waitFor) while (!cache.has(`fetch:${turn.waitFor}:markdown:50000`)) await new Promise((r) => setTimeout(r, 50));
    const trace = otel ? randomBytes(16).toString("hex") : null;
    session.transcript.append({ type: "message", message: { role: "user", content: [{ type: "text", text: turn.prompt }], timestamp: Date.now() } });
    const first = await llm(turn.provider, session, turn, [], trace);
    session.transcript.append({ type: "message", message: {
      role: "assistant", content: first.call ? [{ type: "toolCall", id: first.call.id, name: "web_fetch", arguments: { url: turn.url } }] : [],
      api: turn.provider, provider: turn.provider, model: first.model, usage: first.usage,
      stopReason: first.call ? "toolUse" : "stop", timestamp: first.started } });
    if (!first.call) continue;
    const details = await webFetch(session, turn.url, turn.delay ?? 0.3);
    const output = JSON.stringify(details, null, 2);
    session.transcript.append({ type: "message", message: {
      role: "toolResult", toolCallId: first.call.id, toolName: "web_fetch", content: [{ type: "text", text: output }],
      details, isError: false, timestamp: Date.now() } });
    const second = await llm(turn.provider, session, turn, [{ id: first.call.id, url: turn.url, output: output.slice(0, 300) }], trace);
    session.transcript.append({ type: "message", message: {
      role: "assistant", content: [{ type: "text", text: "done" }], api: turn.provider, provider: turn.provider,
      model: second.model, usage: second.usage, stopReason: "stop", timestamp: second.started } });
  }
}

const A = { id: randomUUID(), key: "agent:main:main" };
const B = { id: randomUUID(), key: "agent:main:telegram:channel:42" };
for (const s of [A, B]) s.transcript = new Transcript(s.id, s.key);
writeFileSync(`${dir}/sessions.json`, JSON.stringify({
  [A.key]: { sessionId: A.id, updatedAt: Date.now() }, [B.key]: { sessionId: B.id, updatedAt: Date.now() } }, null, 2));

const p = scenario === "full" ? ["openai", "anthropic", "gemini"] : ["anthropic", "anthropic", "anthropic"];
// Both sessions fetch the same slow page at overlapping times (B 400 ms later); B's last fetch is a cache
// hit on a page A fetched, so its recorded window is A's.
const turnsA = [
  { provider: p[0], prompt: "read the page", url: "http://docs.test/page", delay: 0.9 },
  { provider: p[1], prompt: "read the story", url: "https://news.test/story", delay: 0.2 },
  { provider: p[2], prompt: "follow the link", url: "http://docs.test/redirect", delay: 0.2 },
  { provider: p[1], prompt: "read the cached page", url: "http://docs.test/cached", delay: 0.2 },
];
const turnsB = [
  { provider: p[1], prompt: "read the page too", url: "http://docs.test/page", delay: 0.9 },
  { provider: p[2], prompt: "read the story too", url: "https://news.test/story?b=1", delay: 0.2 },
  { provider: p[0], prompt: "read the cached page too", url: "http://docs.test/cached", waitFor: "http://docs.test/cached" },
];
await Promise.all([
  runSession(A, turnsA),
  new Promise((r) => setTimeout(r, 400)).then(() => runSession(B, turnsB)),
]);
console.log(JSON.stringify({ A: A.id, B: B.id }));
