import Core

/// The parts of an HTTP/1.x message head that calls are built from. Header values that carry
/// credentials are never kept: only the fields named here are extracted.
public struct HTTPHead: Sendable {
    public var isRequest: Bool
    public var method = ""
    public var target = ""
    /// "1.0" or "1.1" (the digits after "HTTP/").
    public var version = ""
    public var status = 0
    public var host: String?
    public var contentType: String?
    /// `Content-Encoding`, lower case (LLM bodies are decoded from it).
    public var contentEncoding: String?
    public var contentLength: Int?
    public var chunked = false
    public var connectionClose = false
    public var connectionUpgrade = false
    public var upgrade: String?
    public var expectContinue = false
    /// Values of headers that may name an agent session (`baggage`, `x-session-id`), for attribution, and
    /// the W3C `traceparent`.
    public var sessionHints: [String: String] = [:]
    public var weirds: [Weird] = []

    public init(isRequest: Bool) { self.isRequest = isRequest }
}

/// One request and its response on an HTTP/1 connection, as far as they were seen.
public struct HTTPExchange: Sendable {
    public var request: HTTPHead?
    public var response: HTTPHead?
    /// 1xx statuses seen before the final response.
    public var interimStatuses: [Int] = []
    public var requestStart: Nanos?
    public var requestEnd: Nanos?
    public var responseStart: Nanos?
    public var responseEnd: Nanos?
    public var requestBodyBytes = 0
    public var responseBodyBytes = 0
    /// Bytes of this exchange lost to capture gaps.
    public var missedBytes = 0
    public var weirds: [Weird] = []
    /// Leading body bytes, kept only when summaries are on.
    public var requestBodyPrefix: [UInt8] = []
    public var responseBodyPrefix: [UInt8] = []
    public var requestComplete = false
    public var responseComplete = false
    /// The connection switched protocols after this exchange (CONNECT tunnel or 101).
    public var switchedProtocols = false
    /// The bodies of an LLM API exchange, read for its facts (`HTTPLimits.llmBodyBytes` > 0).
    public var llm: LLMCapture?

    public init() {}
}

public struct HTTPLimits: Sendable {
    /// Largest message head kept while waiting for its end.
    public var maxHeadBytes = 64 * 1024
    /// Requests waiting for responses on one connection; beyond it the oldest is given up (counted).
    public var maxPendingRequests = 1024
    /// Body bytes kept per message for summaries (0 = off).
    public var summaryBytes = 0
    /// Body bytes of an LLM API exchange held while it is read (0 = not read); SSE holds one line.
    public var llmBodyBytes = 0
    /// Bytes held from the client after a CONNECT/Upgrade request while its answer is awaited.
    public var maxHeldBytes = 64 * 1024
    public init() {}
}
