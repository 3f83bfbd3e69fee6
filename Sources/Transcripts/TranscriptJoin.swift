import CallModel
import Foundation

/// Decides the session of calls that one agent process made for many sessions (the OpenClaw gateway),
/// from what the agents' transcripts say, strongest key first:
/// 1. a session the request named itself (`session_id` header, `prompt_cache_key`, …), mapped to the
///    transcript's session id when it is an OpenClaw session key;
/// 2. `tool_call_id`: an LLM call asked for, or sent back the result of, a tool call a transcript holds;
/// 3. `web_fetch`: the call fetched a URL a transcript's web_fetch fetched (`url` or `finalUrl`; the host
///    alone for HTTPS that was not decrypted; a redirect hop by its host) inside that fetch's network
///    window, to within `margin` at both ends. Cache hits made no request and are never matched; each
///    fetched URL matches one call, the closest fit;
/// 4. `transcript_turn`: an LLM call with no tool-call id, equal to one transcript's assistant message
///    (model, token counts, started within two seconds before the call);
/// 5. `trace_id`: a call whose W3C trace another call of a decided session shares.
/// Otherwise the call keeps what the registry rules said. Calls that a later transcript entry or call
/// could still decide are held back at most `hold` (a bounded wait in the attribution stage, never on
/// the packet thread), then released as they are. Not thread-safe: one attribution thread owns it.
public final class TranscriptJoin {
    public let index: TranscriptIndex
    /// How long an undecided call waits for the transcripts to catch up (nanoseconds).
    public let hold: Int64
    /// Slack on each side of a web_fetch window (nanoseconds).
    public let margin: Int64
    public let maxHeld: Int

    public struct Counters: Sendable, Equatable {
        public var decided: [AttributionKey: Int] = [:]
        /// Released undecided after the hold.
        public var undecided = 0
        /// Released early because more calls were held than `maxHeld`.
        public var heldOverflow = 0
        public init() {}

        /// Into the capture statistics.
        public func fill(_ s: inout CaptureStats) {
            s.sessionByToolCallId = decided[.toolCallId] ?? 0
            s.sessionByWebFetch = decided[.webFetch] ?? 0
            s.sessionByTraceId = decided[.traceId] ?? 0
            s.sessionByTranscriptTurn = decided[.transcriptTurn] ?? 0
            s.transcriptUndecided = undecided + heldOverflow
        }
    }
    public private(set) var counters = Counters()

    private struct Held {
        var record: CallRecord
        var deadline: Int64
        var triedAt: Int
    }
    private var held: [Held] = []
    private var traceSessions: [String: String] = [:]
    private var traceVersion = 0
    /// Pids whose LLM calls a transcript key decided: the gateways.
    private var gateways = Set<Int>()
    /// Fetch URLs already matched to a call: "toolCallId url".
    private var claimed = Set<String>()

    public init(index: TranscriptIndex, hold: Int64 = 3_000_000_000, margin: Int64 = 250_000_000, maxHeld: Int = 20_000) {
        self.index = index
        self.hold = hold
        self.margin = margin
        self.maxHeld = maxHeld
    }

    public var heldCount: Int { held.count }

    /// The join's and the transcripts' counters, in the capture statistics.
    public func fill(_ s: inout CaptureStats, source: TranscriptSource.Counters?) {
        counters.fill(&s)
        if let source {
            s.transcriptEntries = source.entries
            s.transcriptEntriesSkipped = source.skipped + source.refused + index.droppedEntries
        }
    }

    /// Takes a call whose session the earlier rules decided (or not); returns the calls ready to go on,
    /// this one included when nothing more can be learnt for it. `now`: the wall clock live, the capture's
    /// own clock (the newest time seen) when reading a file.
    public func add(_ record: CallRecord, now: Int64) -> [CallRecord] {
        var r = record
        let before = traceVersion
        if decide(&r, final: false) || !worthHolding(r) {
            var out = [r]
            if traceVersion != before { out += retry(now: now) }
            return out
        }
        held.append(Held(record: r, deadline: now > Int64.max - hold ? Int64.max : now + hold, triedAt: index.version &+ traceVersion))
        var out: [CallRecord] = []
        if traceVersion != before { out += retry(now: now) }
        while held.count > maxHeld {
            counters.heldOverflow += 1
            out.append(held.removeFirst().record)
        }
        return out
    }

    /// Held calls that a new entry decided, and those whose wait is over.
    public func due(now: Int64) -> [CallRecord] { retry(now: now) }

    /// Everything held (the end of a file, shutdown).
    public func finish() -> [CallRecord] {
        let out = retry(now: Int64.max)
        return out
    }

    private func retry(now: Int64) -> [CallRecord] {
        var out: [CallRecord] = []
        var keep: [Held] = []
        var changed = true
        // A decision can teach a trace another held call shares: go round until nothing changes.
        while changed {
            changed = false
            keep.removeAll(keepingCapacity: true)
            let version = index.version &+ traceVersion
            for var h in held {
                let final = h.deadline <= now
                if h.triedAt != version || final {
                    h.triedAt = version
                    let before = traceVersion
                    if decide(&h.record, final: final) {
                        out.append(h.record)
                        if traceVersion != before { changed = true }
                        continue
                    }
                }
                if final {
                    counters.undecided += 1
                    out.append(h.record)
                } else {
                    keep.append(h)
                }
            }
            held = keep
        }
        return out
    }

    /// Whether more entries could still decide the call: LLM calls, calls with a URL or host from a
    /// process the registry did not place (or from a gateway), and calls with a trace id.
    func worthHolding(_ r: CallRecord) -> Bool {
        if r.llmProvider != nil || r.traceId != nil { return true }
        guard r.kind == .http || r.kind == .tls else { return false }
        return placeable(r)
    }

    private func placeable(_ r: CallRecord) -> Bool {
        if let pid = r.pid, gateways.contains(pid) { return true }
        return r.attribution != .exact && r.attribution != .inherited || r.attributionKey == nil
    }

    static let wireKeys: Set<AttributionKey> = [.baggage, .xSessionId, .sessionIdHeader, .promptCacheKey]

    /// Decides the call's session from the strongest key there is; true when one did (the call is final).
    /// A shared trace is the weakest key: it is taken only when the call's wait is over (`final`), so a
    /// stronger key whose entry lands later (a turn written once its response ended) still wins, live as
    /// offline.
    func decide(_ r: inout CallRecord, final: Bool = true) -> Bool {
        if let key = r.attributionKey, Self.wireKeys.contains(key), let s = r.sessionId {
            // The wire named the session: as a transcript knows it, when it is a session key.
            if let mapped = index.session(forKey: s) { r.sessionId = mapped }
            learn(r)
            return true
        }
        if r.llmProvider != nil {
            var ids: [String] = []
            for entry in r.llmToolCalls ?? [] {
                if let id = entry.split(separator: " ").last { ids.append(String(id)) }
            }
            ids += (r.llmToolResultIds ?? []).reversed()
            for id in ids {
                if let s = index.session(toolCallId: id) {
                    set(&r, s, .toolCallId)
                    if let pid = r.pid { gateways.insert(pid) }
                    learn(r)
                    return true
                }
            }
            if let s = turnMatch(r) {
                set(&r, s, .transcriptTurn)
                if let pid = r.pid { gateways.insert(pid) }
                learn(r)
                return true
            }
        } else if (r.kind == .http || r.kind == .tls) && placeable(r), let (s, claim) = fetchMatch(r) {
            claimed.insert(claim)
            set(&r, s, .webFetch)
            learn(r)
            return true
        }
        if final, let t = r.traceId, let s = traceSessions[t] {
            set(&r, s, .traceId)
            return true
        }
        return false
    }

    private func set(_ r: inout CallRecord, _ session: String, _ key: AttributionKey) {
        r.sessionId = session
        r.attribution = .exact
        r.attributionKey = key
        counters.decided[key, default: 0] += 1
    }

    private func learn(_ r: CallRecord) {
        guard let t = r.traceId, let s = r.sessionId, traceSessions[t] == nil else { return }
        if traceSessions.count >= 100_000 { traceSessions.removeAll(keepingCapacity: true) }
        traceSessions[t] = s
        traceVersion &+= 1
    }

    /// The web_fetch this call was, if one fits: closest fit first, each fetched URL claimed once.
    func fetchMatch(_ r: CallRecord) -> (String, String)? {
        let start = r.ts
        let end = r.endedAt ?? r.ts
        var candidates: [(TranscriptFetch, String)] = []
        if let u = r.url, let n = TranscriptIndex.normalised(u) {
            candidates = index.fetches(url: n).map { ($0, n) }
        }
        // HTTPS not decrypted shows only its host; a redirect hop is a URL the transcript never names.
        let redirect = (r.statusCode ?? 0) >= 300 && (r.statusCode ?? 0) < 400
        if candidates.isEmpty && (r.url == nil || redirect), let h = (r.host ?? r.sni)?.lowercased() {
            let hop = r.url.flatMap(TranscriptIndex.normalised) ?? ("host " + h)
            candidates = index.fetches(host: h).map { ($0, hop) }
        }
        var best: (TranscriptFetch, String, Int64)?
        for (f, u) in candidates where !f.cached {
            guard !claimed.contains(f.toolCallId + " " + u) else { continue }
            guard start >= f.start - margin, end <= f.end + margin else { continue }
            let fit = abs(start - f.start) + abs(end - f.end)
            if best == nil || fit < best!.2 { best = (f, u, fit) }
        }
        guard let best else { return nil }
        return (best.0.sessionId, best.0.toolCallId + " " + best.1)
    }

    /// The one session whose assistant message this LLM call is.
    func turnMatch(_ r: CallRecord) -> String? {
        guard let out = r.llmOutputTokens else { return nil }
        var lists = [index.turns(model: "")]
        if let m = r.llmModel { lists.append(index.turns(model: m)) }
        var found: String?
        for list in lists {
            for t in list {
                guard t.outputTokens == out, t.startedAt <= r.ts + margin, t.startedAt >= r.ts - 2_000_000_000 else { continue }
                if let input = r.llmInputTokens, let ti = t.inputTokens, ti != input, ti != input - (r.llmCacheReadTokens ?? 0) { continue }
                if let m = r.llmModel, let tm = t.model, !(m.hasPrefix(tm) || tm.hasPrefix(m)) { continue }
                if let f = found, f != t.sessionId { return nil }
                found = t.sessionId
            }
        }
        return found
    }
}
