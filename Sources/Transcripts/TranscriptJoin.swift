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
    /// How long a call waits before the keys that compare it with others (web_fetch windows, turns) are
    /// tried: by then the entries of every fetch and turn around it are written, so the closest fit is
    /// chosen among all of them, live as offline (nanoseconds).
    public let settle: Int64
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
        var settledAt: Int64
        var deadline: Int64
        var triedAt: Int
        var settled = false
    }
    private var held: [Held] = []
    private var traceSessions: [String: String] = [:]
    private var traceVersion = 0
    /// Pids whose LLM calls a transcript key decided: the gateways.
    private var gateways = Set<Int>()
    /// Fetch URLs already matched to a call: "toolCallId url".
    private var claimed = Set<String>()

    public init(index: TranscriptIndex, hold: Int64 = 3_000_000_000, settle: Int64 = 1_000_000_000, margin: Int64 = 250_000_000,
                maxHeld: Int = 20_000) {
        self.index = index
        self.hold = hold
        self.settle = min(settle, hold)
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
        let holding = worthHolding(r)
        if decide(&r, phase: holding ? .immediate : .final) || !holding {
            var out = [r]
            if traceVersion != before { out += retry(now: now) }
            return out
        }
        func later(_ d: Int64) -> Int64 { now > Int64.max - d ? Int64.max : now + d }
        held.append(Held(record: r, settledAt: later(settle), deadline: later(hold), triedAt: index.version &+ traceVersion))
        var out: [CallRecord] = []
        if traceVersion != before { out += retry(now: now) }
        if held.count > maxHeld {
            let extra = held.count - maxHeld
            counters.heldOverflow += extra
            out += held.prefix(extra).map(\.record)
            held.removeFirst(extra)
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
                let settling = !h.settled && h.settledAt <= now
                if h.triedAt != version || final || settling {
                    h.triedAt = version
                    if settling { h.settled = true }
                    let before = traceVersion
                    if decide(&h.record, phase: final ? .final : (h.settled ? .settled : .immediate)) {
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
        guard placeable(r) else { return false }
        return r.llmProvider != nil || r.traceId != nil || r.kind == .http || r.kind == .tls
    }

    private func placeable(_ r: CallRecord) -> Bool {
        if let pid = r.pid, gateways.contains(pid) { return true }
        // Not placed by the registry (nor by an ancestor's entry).
        return r.attribution != .exact && r.attribution != .inherited
    }

    static let wireKeys: Set<AttributionKey> = [.baggage, .xSessionId, .sessionIdHeader, .promptCacheKey]

    /// Which keys may decide yet: the call's own ids at once; the keys that compare it with others (web_fetch
    /// windows, turns) once it settled; a shared trace, the weakest, only when its wait is over, so a
    /// stronger key whose entry lands later (a turn written once its response ended) still wins.
    enum Phase: Int, Comparable {
        case immediate, settled, final
        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    /// Decides the call's session from the strongest key there is; true when one did (the call is final).
    func decide(_ r: inout CallRecord, phase: Phase = .final) -> Bool {
        if let key = r.attributionKey, Self.wireKeys.contains(key), let s = r.sessionId {
            // The wire named the session: as a transcript knows it, when it is a session key.
            if let mapped = index.session(forKey: s) { r.sessionId = mapped }
            learn(r)
            return true
        }
        // Transcript keys decide only calls the registry did not place (or a gateway's).
        guard placeable(r) else { return false }
        if r.llmProvider != nil {
            var ids: [String] = []
            for entry in r.llmToolCalls ?? [] {
                // "name id"; an entry without an id (Gemini's calls) has nothing to join on.
                let parts = entry.split(separator: " ")
                if parts.count >= 2, let id = parts.last { ids.append(String(id)) }
            }
            ids += (r.llmToolResultIds ?? []).reversed()
            for id in ids {
                if let s = index.session(toolCallId: id) {
                    set(&r, s, .toolCallId)
                    remember(gateway: r.pid)
                    learn(r)
                    return true
                }
            }
            if phase >= .settled, let s = turnMatch(r) {
                set(&r, s, .transcriptTurn)
                remember(gateway: r.pid)
                learn(r)
                return true
            }
        } else if phase >= .settled, r.kind == .http || r.kind == .tls, let (s, claim) = fetchMatch(r) {
            if claimed.count >= 100_000 { claimed.removeAll(keepingCapacity: true) }
            claimed.insert(claim)
            set(&r, s, .webFetch)
            learn(r)
            return true
        }
        if phase == .final, let t = r.traceId, let s = traceSessions[t] {
            set(&r, s, .traceId)
            return true
        }
        return false
    }

    private func remember(gateway pid: Int?) {
        guard let pid else { return }
        if gateways.count >= 4096 { gateways.removeAll(keepingCapacity: true) }
        gateways.insert(pid)
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
                // A turn says its model and both token counts, and they must agree with the call's.
                guard t.outputTokens == out, t.startedAt <= r.ts + margin, t.startedAt >= r.ts - 2_000_000_000,
                      let ti = t.inputTokens, let tm = t.model else { continue }
                if let input = r.llmInputTokens, ti != input, ti != input - (r.llmCacheReadTokens ?? 0) { continue }
                if let m = r.llmModel, !(m.hasPrefix(tm) || tm.hasPrefix(m)) { continue }
                if let f = found, f != t.sessionId { return nil }
                found = t.sessionId
            }
        }
        return found
    }
}
