import Foundation

/// A `web_fetch` the agent made, from its tool result: the URLs asked for and reached, and the network
/// window `[fetchedAt − tookMs, fetchedAt]` (nanoseconds since the epoch). A cache hit sent nothing.
public struct TranscriptFetch: Sendable, Equatable {
    public var sessionId: String
    public var toolCallId: String
    /// `url` and `finalUrl`, normalised (`TranscriptIndex.normalised`).
    public var urls: [String]
    /// Their hosts, lowercased: the only thing an undecrypted HTTPS call can be matched on.
    public var hosts: [String]
    public var start: Int64
    public var end: Int64
    public var cached: Bool
}

/// An assistant message: one LLM exchange as the agent recorded it.
public struct TranscriptTurn: Sendable, Equatable {
    public var sessionId: String
    public var model: String?
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var cacheReadTokens: Int?
    /// The message's `timestamp`: taken before the request was sent.
    public var startedAt: Int64
}

/// What the agents' transcripts say that ties a call to a session: tool-call ids, web_fetch windows,
/// assistant turns, and session keys. Fed entry by entry (`add`), bounded by `limits` (the oldest
/// fetches and turns go first, counted), safe to read from another thread.
public final class TranscriptIndex: @unchecked Sendable {
    public struct Limits: Sendable {
        public var toolCallIds: Int
        public var fetches: Int
        public var turns: Int
        /// The defaults are the 256 MB budget's (`AnalysisOptions.scaleCaps` sets them from `--memory-mb`).
        public init(toolCallIds: Int = 65_536, fetches: Int = 16_384, turns: Int = 32_768) {
            self.toolCallIds = toolCallIds
            self.fetches = fetches
            self.turns = turns
        }
    }

    public let limits: Limits
    private let lock = NSLock()
    private var toolCalls: [String: String] = [:]
    private var toolCallOrder: [String] = []
    private var toolCallHead = 0
    private var fetchesByURL: [String: [TranscriptFetch]] = [:]
    private var fetchesByHost: [String: [TranscriptFetch]] = [:]
    private var fetchCount = 0
    private var turnsByModel: [String: [TranscriptTurn]] = [:]
    private var turnCount = 0
    private var sessions: Set<String> = []
    private var sessionKeys: [String: String] = [:]
    private var changes = 0
    private var dropped = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Bumped by every addition: a join that found nothing tries again only after a change.
    public var version: Int { lock.withLock { changes } }
    /// Entries let go because a cap was reached.
    public var droppedEntries: Int { lock.withLock { dropped } }
    public var sessionCount: Int { lock.withLock { sessions.count } }

    // MARK: Lookups

    /// The session of a tool call, by its id as the wire shows it (OpenAI's `call_id` alone is enough
    /// for a transcript id `call_id|item_id`).
    public func session(toolCallId id: String) -> String? {
        lock.withLock { toolCalls[id] }
    }

    /// The transcript session a wire session key stands for: the id itself when a transcript has it,
    /// the current session of an OpenClaw session key (`agent:main:main`), else nil.
    public func session(forKey key: String) -> String? {
        lock.withLock { sessions.contains(key) ? key : sessionKeys[key] }
    }

    public func isKnownSession(_ id: String) -> Bool { lock.withLock { sessions.contains(id) } }

    /// Fetches of a normalised URL.
    public func fetches(url: String) -> [TranscriptFetch] { lock.withLock { fetchesByURL[url] ?? [] } }
    /// Fetches to a host (lowercased).
    public func fetches(host: String) -> [TranscriptFetch] { lock.withLock { fetchesByHost[host] ?? [] } }
    /// Assistant turns of a model ("" for those that named none).
    public func turns(model: String) -> [TranscriptTurn] { lock.withLock { turnsByModel[model] ?? [] } }

    // MARK: Feeding

    public func addSessionKey(_ key: String, session: String) {
        guard key.utf8.count <= 256 else { return }
        lock.withLock {
            if sessionKeys.count < limits.toolCallIds || sessionKeys[key] != nil { sessionKeys[key] = session }
            changes += 1
        }
    }

    /// One transcript entry (a JSON Lines line or a `transcript_events` row), of session `session`.
    /// Returns false when it is not a JSON object.
    @discardableResult
    public func add(entry data: Data, session: String) -> Bool {
        guard let o = (try? JSONSerialization.jsonObject(with: data, options: [])) as? [String: Any] else { return false }
        add(entry: o, session: session)
        return true
    }

    public func add(entry o: [String: Any], session: String) {
        lock.withLock {
            if sessions.count < limits.toolCallIds { sessions.insert(session) }
            changes += 1
        }
        guard o["type"] as? String == "message", let m = o["message"] as? [String: Any] else { return }
        switch m["role"] as? String {
        case "assistant":
            var ids: [String] = []
            for block in m["content"] as? [[String: Any]] ?? [] where block["type"] as? String == "toolCall" {
                if let id = block["id"] as? String, Self.isUsableId(id) { ids.append(id) }
            }
            let usage = m["usage"] as? [String: Any]
            let started = Self.int(m["timestamp"]).map { Int64($0) * 1_000_000 }
                ?? (o["timestamp"] as? String).flatMap(Self.parseISO8601)
            lock.withLock {
                for id in ids { remember(toolCall: id, session: session) }
                if let started {
                    let turn = TranscriptTurn(sessionId: session, model: (m["model"] as? String).map { String($0.prefix(200)) },
                                              inputTokens: Self.int(usage?["input"]), outputTokens: Self.int(usage?["output"]),
                                              cacheReadTokens: Self.int(usage?["cacheRead"]), startedAt: started)
                    if turnCount >= limits.turns { evictOldestTurns() }
                    turnsByModel[turn.model ?? "", default: []].append(turn)
                    turnCount += 1
                }
            }
        case "toolResult":
            guard let id = m["toolCallId"] as? String, Self.isUsableId(id) else { return }
            var fetch: TranscriptFetch?
            if m["toolName"] as? String == "web_fetch", let d = m["details"] as? [String: Any],
               let at = (d["fetchedAt"] as? String).flatMap(Self.parseISO8601) {
                // A fetch lasts at most minutes (OpenClaw's own timeout is far shorter): a longer claimed
                // window would cover every call.
                let took = Int64(min(Self.int(d["tookMs"]) ?? 0, Self.maxFetchMillis))
                let urls = [d["url"] as? String, d["finalUrl"] as? String].compactMap { $0 }.filter { $0.utf8.count <= 2048 }
                    .compactMap(Self.normalised)
                var unique: [String] = []
                for u in urls where !unique.contains(u) { unique.append(u) }
                var hosts: [String] = []
                for u in unique { if let h = Self.host(of: u), !hosts.contains(h) { hosts.append(h) } }
                if !unique.isEmpty {
                    fetch = TranscriptFetch(sessionId: session, toolCallId: id, urls: unique, hosts: hosts,
                                            start: at - took * 1_000_000, end: at, cached: d["cached"] as? Bool ?? false)
                }
            }
            lock.withLock {
                remember(toolCall: id, session: session)
                if let fetch {
                    if fetchCount >= limits.fetches { evictOldestFetches() }
                    for u in fetch.urls { fetchesByURL[u, default: []].append(fetch) }
                    for h in fetch.hosts { fetchesByHost[h, default: []].append(fetch) }
                    fetchCount += 1
                }
            }
        default:
            break
        }
    }

    /// Under the lock.
    private func remember(toolCall id: String, session: String) {
        var keys = [id]
        // OpenAI ids are kept as "call_id|item_id": the wire shows either part.
        if let bar = id.firstIndex(of: "|") {
            keys.append(String(id[..<bar]))
            keys.append(String(id[id.index(after: bar)...]))
        }
        for k in keys where !k.isEmpty && toolCalls[k] == nil {
            if toolCalls.count >= limits.toolCallIds {
                // The oldest id goes first.
                while toolCallHead < toolCallOrder.count {
                    let old = toolCallOrder[toolCallHead]
                    toolCallHead += 1
                    if toolCalls.removeValue(forKey: old) != nil { dropped += 1; break }
                }
                if toolCallHead > toolCallOrder.count / 2 {
                    toolCallOrder.removeFirst(toolCallHead)
                    toolCallHead = 0
                }
            }
            toolCalls[k] = session
            toolCallOrder.append(k)
        }
    }

    /// Under the lock: drops the older half of the fetches.
    private func evictOldestFetches() {
        let all = fetchesByURL.values.flatMap { $0 }.map(\.end).sorted()
        guard !all.isEmpty else { return }
        let cut = all[all.count / 2]
        let before = fetchCount
        fetchesByURL = fetchesByURL.compactMapValues { l in let k = l.filter { $0.end > cut }; return k.isEmpty ? nil : k }
        fetchesByHost = fetchesByHost.compactMapValues { l in let k = l.filter { $0.end > cut }; return k.isEmpty ? nil : k }
        var seen = Set<String>()
        for l in fetchesByURL.values { for f in l { seen.insert(f.toolCallId) } }
        fetchCount = seen.count
        dropped += before - fetchCount
    }

    /// Under the lock: drops the older half of the turns.
    private func evictOldestTurns() {
        let all = turnsByModel.values.flatMap { $0 }.map(\.startedAt).sorted()
        guard !all.isEmpty else { return }
        let cut = all[all.count / 2]
        turnsByModel = turnsByModel.compactMapValues { l in let k = l.filter { $0.startedAt > cut }; return k.isEmpty ? nil : k }
        let now = turnsByModel.values.reduce(0) { $0 + $1.count }
        dropped += turnCount - now
        turnCount = now
    }

    // MARK: Shapes

    /// The longest web_fetch believed, in milliseconds.
    public static let maxFetchMillis = 300_000

    /// Tool-call ids as providers make them: 1 to 256 printable bytes.
    static func isUsableId(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 256 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    static func int(_ v: Any?) -> Int? {
        let n: Int?
        if let i = v as? Int { n = i } else if let d = v as? Double, d.isFinite, abs(d) < 1e15 { n = Int(d) } else { n = nil }
        guard let n, n >= 0, n <= 1_000_000_000_000 else { return nil }
        return n
    }

    /// A URL as calls and transcripts are compared: scheme and host lowercased, the default port and the
    /// fragment dropped, an empty path made "/". Nil for anything that is not an http(s) URL.
    public static func normalised(_ s: String) -> String? {
        guard s.utf8.count <= 8192, let c = URLComponents(string: s), let scheme = c.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty else { return nil }
        var out = scheme + "://"
        let h = host.lowercased()
        out += h.contains(":") && !h.hasPrefix("[") ? "[\(h)]" : h
        if let port = c.port, !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) { out += ":\(port)" }
        let path = c.percentEncodedPath
        out += path.isEmpty ? "/" : path
        if let q = c.percentEncodedQuery { out += "?" + q }
        return out
    }

    /// The host of a normalised URL (without brackets).
    public static func host(of url: String) -> String? {
        guard let c = URLComponents(string: url), let h = c.host else { return nil }
        return h.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }

    /// `2026-11-29T20:19:24.123Z` (or with an offset) as nanoseconds since the epoch.
    public static func parseISO8601(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count >= 20, b.count <= 40 else { return nil }
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= b.count else { return nil }
            var v = 0
            for i in from..<(from + len) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int(b[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), b[4] == 0x2D, let mo = num(5, 2), b[7] == 0x2D, let d = num(8, 2),
              b[10] == 0x54 || b[10] == 0x20, let h = num(11, 2), b[13] == 0x3A, let mi = num(14, 2), b[16] == 0x3A,
              let sec = num(17, 2), (1900...2200).contains(y), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec < 61 else { return nil }
        var i = 19
        var frac: Int64 = 0
        if i < b.count, b[i] == 0x2E {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 9 { frac = frac * 10 + Int64(b[i] - 0x30); digits += 1 }
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<9 { frac *= 10 }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == 0x5A {
            i += 1
        } else if b[i] == 0x2B || b[i] == 0x2D, let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 0x3A, let om = num(i + 4, 2) {
            offset = (oh * 60 + om) * 60 * (b[i] == 0x2B ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Days from the civil date (proleptic Gregorian).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = Int64(days) * 86_400 + Int64(h * 3600 + mi * 60 + sec) - Int64(offset)
        return seconds * 1_000_000_000 + frac
    }
}
