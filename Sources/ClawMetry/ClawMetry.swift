import CallModel
import Core
import Crypto
import Foundation

/// Lines in ClawMetry's interceptor format (`type: external_api_call`), so its own sync
/// (`sync_intercepted_events`, which tails `$CLAWMETRY_HOME/intercepted.jsonl`) takes calltap's calls
/// unchanged. One line per external call (the kind → line table in the README):
///
/// | call | line |
/// |---|---|
/// | `http` whose request was seen (plaintext or decrypted) | its url, host, method and status |
/// | `tls` seen only encrypted (HTTPS without keys) | `https://<sni>/` (the connection: its exchanges are not visible) |
/// | `http` CONNECT a forward proxy refused or left unanswered | `https://<destination>/` (an accepted one has no line) |
/// | `quic` | `https://<host>/` (HTTP/3, encrypted) |
/// | `connect` | `tcp://<host>:<port>` (a failed connect, or a protocol calltap does not read) |
/// | `dns` that failed | `dns://<name>` |
///
/// No line for: a lookup that succeeded (not a call), an exchange estimated inside an encrypted
/// connection (the connection has its line), the `tls` record of a decrypted connection (its exchanges
/// have theirs); calls to loopback, link-local or ClawMetry's own hosts, to hosts in
/// `CLAWMETRY_INTERCEPT_HOSTS_EXCLUDE` (substrings of the url, as ClawMetry's interceptor reads it), and
/// to LLM provider hosts unless asked (ClawMetry records those itself as `llm_call`).
///
/// `ts` is the call's completion (as the interceptor writes it) and `latency_ms` its duration including
/// the connect when the call opened its connection (as the interceptor measures it). A network failure
/// has the status a gateway would report — 504 for a timeout, 499 when the client closed the
/// connection during the response, 502 for any other (refused, reset, the server closing during the
/// response, TLS, DNS, no response), also when it failed after its status arrived — so ClawMetry counts
/// it as an error; `outcome` and `error` say what happened.
/// `url` and `host` are never null: without a name, the server's address and port stand in.
public struct ClawMetryLines {
    static let llmHosts = [
        "api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.mistral.ai", "api.cohere.ai",
        "api.cohere.com", "api.groq.com", "openrouter.ai", "api.together.xyz", "api.deepseek.com", "api.x.ai",
        "api.perplexity.ai", "api.fireworks.ai", "openai.azure.com", "bedrock-runtime.amazonaws.com",
    ]
    /// ClawMetry's own endpoints, which its interceptor leaves out too.
    static let clawmetryHosts = ["clawmetry.com"]

    public var includeLLM = false
    /// Lower-case substrings of urls to leave out (`CLAWMETRY_INTERCEPT_HOSTS_EXCLUDE`, comma-separated).
    public var excludes: [String] = []

    public init(includeLLM: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.includeLLM = includeLLM
        excludes = (environment["CLAWMETRY_INTERCEPT_HOSTS_EXCLUDE"] ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
    }

    static func isLLMHost(_ host: String?) -> Bool {
        guard let h = host?.lowercased() else { return false }
        return llmHosts.contains { h == $0 || h.hasSuffix("." + $0) }
            || (h.hasPrefix("bedrock-runtime.") && h.hasSuffix(".amazonaws.com"))
    }

    static func isClawMetryHost(_ host: String?) -> Bool {
        guard let h = host?.lowercased() else { return false }
        return clawmetryHosts.contains { h == $0 || h.hasSuffix("." + $0) }
    }

    /// Loopback, link-local, unspecified: never an external call. A call that names a host is judged by
    /// the name (a local proxy carries calls to the world); the address decides only without one.
    static func isLocal(_ host: String?, ip: String?) -> Bool {
        var address = ip
        if let h = host?.lowercased() {
            if h == "localhost" || h.hasSuffix(".localhost") { return true }
            address = h.hasPrefix("[") && h.hasSuffix("]") ? String(h.dropFirst().dropLast()) : h
        }
        guard let address, let a = IPAddress(parsing: address) else { return false }
        return a.isLocal || a.isUnspecified
    }

    /// `host` or, without one, the server's address (bracketed when IPv6).
    static func hostOrAddress(_ r: CallRecord) -> String? {
        if let h = r.host ?? r.sni { return h }
        guard let ip = r.serverIp else { return nil }
        return ip.contains(":") ? "[\(ip)]" : ip
    }

    /// The url of a call's line, nil when the call has no line. Written as `CallURL` writes a call's
    /// url: an IPv6 address in brackets, the scheme's default port left out.
    static func url(_ r: CallRecord) -> String? {
        guard let host = hostOrAddress(r) else { return nil }
        switch r.kind {
        case .http:
            guard !r.estimated, r.method != nil else { return nil }
            if r.method == "CONNECT" {
                // A tunnel the proxy opened has its own lines (its exchanges, or its `tls` record); one it
                // refused, or never answered, is the destination's failure.
                if r.outcome == .ok, let status = r.statusCode, (200..<300).contains(status) { return nil }
                return "https://\(CallURL.authority(scheme: "https", host: host, port: r.destinationPort))/"
            }
            if let u = r.url { return u }
            // No url of its own (no host, or a target that is not a path: `*`): the server's root stands in.
            let scheme = r.scheme ?? "http"
            return CallURL.make(scheme: scheme, host: host, port: r.destinationPort, path: r.path ?? "/")
                ?? "\(scheme)://\(CallURL.authority(scheme: scheme, host: host, port: r.destinationPort))/"
        case .tls:
            guard r.visibility != .decrypted else { return nil }
            // Through a forward proxy: the destination (its SNI), whose port the record does not hold.
            return "https://\(CallURL.authority(scheme: "https", host: host, port: r.destinationPort))/"
        case .quic:
            return "https://\(CallURL.authority(scheme: "https", host: host, port: r.serverPort))/"
        case .connect:
            return "tcp://\(CallURL.authority(scheme: "tcp", host: host, port: r.serverPort ?? 0))"
        case .dns:
            guard r.outcome == .dnsFailed, let name = r.host else { return nil }
            return "dns://\(name)"
        }
    }

    /// The status of a line: the response's, unless the call failed on the network (even after its
    /// status arrived: a reset mid-response), then what a gateway would report for the failure.
    static func status(_ r: CallRecord) -> Int? {
        switch r.outcome {
        case .ok, .httpError, .incomplete: return r.statusCode
        case .timeout: return 504
        case .clientClosed: return 499
        case .refused, .reset, .serverClosed, .tlsFailed, .dnsFailed, .noResponse: return 502
        }
    }

    /// What a line and a row of the read route share: nil when the call makes no line.
    public struct Fields: Sendable {
        public var ts: String
        public var url: String
        public var host: String?
        public var method: String
        public var statusCode: Int?
        public var latencyMicros: Int64?
        public var source: String
        /// ClawMetry's row id: the first 32 hex digits of SHA-256 over ts, url and library, as its own
        /// ingest makes it, so a row served here and the same line ingested from the file are one row.
        public var id: String {
            let digest = SHA256.hash(data: Data((ts + url + Self.library).utf8))
            return digest.prefix(16).map { String(format: "%02x", $0) }.joined()
        }
        public static let library = "calltap"
    }

    public func fields(_ r: CallRecord, source: String) -> Fields? {
        guard let url = Self.url(r) else { return nil }
        let host = r.kind == .dns ? r.host : Self.hostOrAddress(r)
        if Self.isLocal(host, ip: r.kind == .dns ? nil : r.serverIp) || Self.isClawMetryHost(host) { return nil }
        if !includeLLM && Self.isLLMHost(host) { return nil }
        let lower = url.lowercased()
        if excludes.contains(where: { lower.contains($0) }) { return nil }
        let end = r.endedAt ?? r.latencyMicros.map { r.ts + $0 * 1000 } ?? r.ts
        // The interceptor's latency includes the connect; calltap's starts at the request.
        let connect = r.kind == .http ? (r.connectMicros ?? 0) : 0
        return Fields(ts: Timestamps.iso8601(end), url: url, host: host, method: r.method ?? "", statusCode: Self.status(r),
                      latencyMicros: r.latencyMicros.map { $0 + connect }, source: r.agent ?? source)
    }

    public func line(_ r: CallRecord, source: String) -> String? {
        guard let f = fields(r, source: source) else { return nil }
        var w = JSONObjectWriter()
        w.string("type", "external_api_call")
        w.string("ts", f.ts)
        w.string("url", f.url)
        w.string("host", f.host)
        w.string("method", f.method)
        w.int("status_code", f.statusCode)
        w.millis("latency_ms", f.latencyMicros)
        w.string("library", Fields.library)
        w.string("source", f.source)
        w.string("session_id", r.sessionId)
        if r.llmProvider != nil {
            // ClawMetry's own columns for LLM calls.
            w.string("model", r.llmModel)
            w.int("input_tokens", r.llmInputTokens)
            w.int("output_tokens", r.llmOutputTokens)
        }
        // How the session and the process were found, and the rest: ClawMetry keeps keys it does not
        // know as extra data.
        w.string("kind", r.kind.rawValue)
        w.string("attribution", r.attribution?.rawValue)
        w.string("attribution_key", r.attributionKey?.rawValue)
        w.string("owner_source", r.ownerSource?.rawValue)
        w.string("trace_id", r.traceId)
        w.string("parent_span_id", r.parentSpanId)
        if r.llmProvider != nil {
            w.string("llm_provider", r.llmProvider)
            w.int("llm_cache_read_tokens", r.llmCacheReadTokens)
            w.millis("llm_ttft_ms", r.llmTtftMicros)
            w.string("llm_stop_reason", r.llmStopReason)
            w.strings("llm_tool_calls", r.llmToolCalls)
        }
        w.string("outcome", r.outcome.rawValue)
        w.string("error", r.error)
        return w.finish()
    }

    /// The `source` of a call's line or row (the agent's name wins over it): `calltap:<target>` for a live
    /// capture's calls, `calltap:read` for a capture file's.
    public static func defaultSource(_ r: CallRecord) -> String { "calltap:\(r.target ?? "read")" }

    /// A row as ClawMetry's `query_external_calls` answers it (its fourteen columns).
    public func row(_ r: CallRecord, source: String) -> String? {
        guard let f = fields(r, source: source) else { return nil }
        var w = JSONObjectWriter()
        w.string("id", f.id)
        w.string("node_id", "")
        w.string("ts", f.ts)
        w.string("host", f.host)
        w.string("url", f.url)
        w.string("method", f.method)
        w.int("status_code", f.statusCode)
        w.millis("latency_ms", f.latencyMicros)
        w.string("library", Fields.library)
        w.string("source", f.source)
        w.raw("cost_usd", "null")
        w.int("input_tokens", r.llmProvider != nil ? r.llmInputTokens : nil)
        w.int("output_tokens", r.llmProvider != nil ? r.llmOutputTokens : nil)
        w.string("model", r.llmProvider != nil ? r.llmModel : nil)
        // Beyond ClawMetry's columns: what calltap knows that its time window cannot.
        w.string("session_id", r.sessionId)
        w.string("outcome", r.outcome.rawValue)
        w.string("error", r.error)
        return w.finish()
    }
}

/// Calls appended to ClawMetry's file, one line per external call (see `ClawMetryLines`).
public final class ClawMetrySink: CallSink {
    public let sinkName = "clawmetry file"
    private let handle: FileHandle
    private let lines: ClawMetryLines
    private let source: (CallRecord) -> String
    public private(set) var written = 0

    public init(handle: FileHandle, includeLLM: Bool, source: @escaping (CallRecord) -> String) {
        self.handle = handle
        lines = ClawMetryLines(includeLLM: includeLLM)
        self.source = source
    }

    public func write(_ calls: [CallRecord]) throws {
        let out = calls.compactMap { lines.line($0, source: source($0)) }
        if !out.isEmpty {
            try handle.write(contentsOf: Data((out.joined(separator: "\n") + "\n").utf8))
            written += out.count
        }
    }

    public func flush() {}
}
