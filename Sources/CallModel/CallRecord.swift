/// What kind of thing a call record describes.
public enum CallKind: String, Sendable, Codable, CaseIterable {
    case http, tls, dns, connect, quic
}

/// How a call ended. Everything but `ok` counts as a failure.
public enum Outcome: String, Sendable, Codable, CaseIterable {
    case ok
    case httpError = "http_error"
    case refused
    case timeout
    case reset
    /// The response began and the client closed the connection (FIN) before it ended.
    case clientClosed = "client_closed"
    /// The response began and the server closed the connection (FIN) before it ended.
    case serverClosed = "server_closed"
    case tlsFailed = "tls_failed"
    case dnsFailed = "dns_failed"
    case noResponse = "no_response"
    case incomplete
}

public enum Visibility: String, Sendable, Codable, CaseIterable {
    case plaintext, decrypted, encrypted
}

public enum Attribution: String, Sendable, Codable, CaseIterable {
    case exact, inherited, ambiguous, none
}

/// What decided a call's session, strongest first (the one precedence list of the README).
public enum AttributionKey: String, Sendable, Codable, CaseIterable {
    case baggage
    case xSessionId = "x-session-id"
    case sessionIdHeader = "session_id_header"
    case promptCacheKey = "prompt_cache_key"
    case toolCallId = "tool_call_id"
    case webFetch = "web_fetch"
    case traceId = "trace_id"
    case transcriptTurn = "transcript_turn"
    case registry
    case ancestor
    case cli
}

/// One call: the JSONL contract, the database row and the API object all carry these fields.
/// Times are nanoseconds since the epoch; durations are microseconds. Nil means unknown.
public struct CallRecord: Sendable, Equatable {
    // Identity and time
    public var kind: CallKind
    public var ts: Int64
    public var endedAt: Int64?
    public var latencyMicros: Int64?
    public var connectionId: String?
    public var streamId: Int?
    /// Times are lower bounds: the connection was picked up mid-stream or lost bytes.
    public var estimated = false
    /// The W3C trace context the request carried (`traceparent`): its trace id (32 hex digits) and the
    /// caller's span id (16), so the call's span nests in the agent's own trace.
    public var traceId: String?
    public var parentSpanId: String?
    // Attribution
    public var sessionId: String?
    public var attribution: Attribution?
    /// What decided the session (nil: nothing did).
    public var attributionKey: AttributionKey?
    /// How the pid was found (nil: not looked up, or not found).
    public var ownerSource: OwnerSource?
    public var pid: Int?
    public var process: String?
    public var exe: String?
    public var cgroup: String?
    public var agent: String?
    public var target: String?
    // Endpoints
    public var clientIp: String?
    public var clientPort: Int?
    public var serverIp: String?
    public var serverPort: Int?
    /// The forward proxy the call went through (`ip:port`, an IPv6 address bracketed): set when the
    /// connection is a CONNECT tunnel or carries absolute-form requests. `server_ip`/`server_port` are
    /// then the proxy's; `host` and `url` name the destination.
    public var proxy: String?
    // HTTP
    public var scheme: String?
    public var host: String?
    public var method: String?
    public var path: String?
    public var url: String?
    public var statusCode: Int?
    public var httpVersion: String?
    public var requestContentType: String?
    public var responseContentType: String?
    public var requestBodyBytes: Int?
    public var responseBodyBytes: Int?
    public var requestSummary: String?
    public var responseSummary: String?
    // LLM (requests to an LLM API, read from their bodies in memory; nil for other calls)
    public var llmProvider: String?
    public var llmModel: String?
    public var llmInputTokens: Int?
    public var llmOutputTokens: Int?
    public var llmCacheReadTokens: Int?
    /// Request start to the first SSE data event (streams), microseconds.
    public var llmTtftMicros: Int64?
    public var llmStopReason: String?
    /// Tool calls the model asked for, "name id".
    public var llmToolCalls: [String]?
    /// Ids of the tool results the request sent back. Not a field of the call: held in memory for the
    /// attribution stage to join with the agent's transcripts, never stored or written out.
    public var llmToolResultIds: [String]?
    // TLS
    public var sni: String?
    public var alpn: String?
    public var alpnOffered: [String]?
    public var tlsVersion: String?
    public var tlsCipher: String?
    public var ja4: String?
    public var certSubject: String?
    public var certSan: [String]?
    // DNS
    public var dnsQtype: String?
    public var dnsRcode: String?
    public var dnsAnswers: [String]?
    // Timings (microseconds)
    public var connectMicros: Int64?
    public var tlsHandshakeMicros: Int64?
    public var ttfbMicros: Int64?
    // Outcome
    public var outcome: Outcome = .ok
    public var error: String?
    public var weirds: [String] = []
    public var missedBytes = 0
    public var visibility: Visibility?
    // Transfer sizes on the wire (TCP payload bytes each way), for connection-level records.
    public var bytesSent: Int?
    public var bytesReceived: Int?

    public init(kind: CallKind, ts: Int64) {
        self.kind = kind
        self.ts = ts
    }

    public var isFailure: Bool { outcome != .ok }
}
