import CallModel

/// Calls as OTLP spans: one span of kind CLIENT per exported call, named and attributed as the
/// OpenTelemetry HTTP semantic conventions say (https://opentelemetry.io/docs/specs/semconv/http/http-spans/),
/// with calltap's own facts under `calltap.*`.
///
/// | kind | span name | exported |
/// |---|---|---|
/// | `http` | the method (`GET`), `HTTP` when unknown or not a standard method | always; estimated HTTPS exchanges too, with `calltap.estimated` |
/// | `dns` | `dns` | always |
/// | `connect` | `connect` | always (failed connects, unknown protocols) |
/// | `tls` | `tls` | when its exchanges were not decrypted (the decrypted connection's exchanges are the spans) |
/// | `quic` | `quic` | always |
public enum OTLPSpans {
    /// Whether a call becomes a span: everything but the connection record of a decrypted TLS
    /// connection, whose calls are exported themselves.
    public static func isExported(_ r: CallRecord) -> Bool {
        !(r.kind == .tls && r.visibility == .decrypted)
    }

    /// The standard methods (RFC 9110 and PATCH): any other is `_OTHER`, as the conventions say.
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]

    public static func name(_ r: CallRecord) -> String {
        switch r.kind {
        case .http:
            if let m = r.method, knownMethods.contains(m) { return m }
            return "HTTP"
        case .dns: return "dns"
        case .connect: return "connect"
        case .tls: return "tls"
        case .quic: return "quic"
        }
    }

    /// `error.type`: the status code for an HTTP error, the outcome's name for any other failure
    /// (`reset`, `client_closed` and `server_closed` included: the response did not finish), nil for a
    /// success and for `incomplete` (a gap in the capture, not a failure of the call).
    public static func errorType(_ r: CallRecord) -> String? {
        switch r.outcome {
        case .ok, .incomplete: return nil
        case .httpError: return r.statusCode.map(String.init) ?? r.outcome.rawValue
        default: return r.outcome.rawValue
        }
    }

    /// Span status: Error for every failure of a client span (status ≥ 400 included), unset otherwise.
    static func isError(_ r: CallRecord) -> Bool { errorType(r) != nil }

    /// `network.protocol.version` as the conventions write it: `1.0`, `1.1`, `2` (an h2c upgrade is `2`).
    static func protocolVersion(_ r: CallRecord) -> String? {
        guard let v = r.httpVersion else { return nil }
        return v.hasSuffix("2") ? "2" : v
    }

    /// `server.address`: the host the call named (its SNI, else its IP; through a forward proxy the
    /// destination); for a DNS lookup, the resolver.
    static func serverAddress(_ r: CallRecord) -> String? {
        r.kind == .dns ? r.serverIp : r.host ?? r.sni ?? r.serverIp
    }

    /// The method as the conventions want it: a standard one as it is, anything else (or none) `_OTHER`.
    static func method(_ r: CallRecord) -> String {
        if let m = r.method, knownMethods.contains(m) { return m }
        return "_OTHER"
    }

    /// Start and end in nanoseconds since the epoch: the call's own times; a call without an end ends
    /// at its start plus its latency, or at its start.
    /// Times are whole microseconds, as the database keeps them, so a call exported by `read` and by
    /// `capture` (from the database) is the same span.
    public static func times(_ r: CallRecord) -> (start: UInt64, end: UInt64) {
        let start = max(r.ts, 0) / 1000 * 1000
        var end = (r.endedAt.map { $0 / 1000 * 1000 }) ?? r.latencyMicros.map { start &+ $0 &* 1000 } ?? start
        if end < start { end = start }
        return (UInt64(start), UInt64(end))
    }

    public static func attributes(_ r: CallRecord) -> [OTLPAttribute] {
        var a: [OTLPAttribute] = []
        a.reserveCapacity(32)
        func s(_ key: String, _ value: String?) { if let value { a.append(OTLPAttribute(key, .string(value))) } }
        func i(_ key: String, _ value: Int?) { if let value { a.append(OTLPAttribute(key, .int(Int64(value)))) } }
        func ms(_ key: String, _ micros: Int64?) { if let micros { a.append(OTLPAttribute(key, .double(Double(micros) / 1000))) } }
        func list(_ key: String, _ value: [String]?) { if let value, !value.isEmpty { a.append(OTLPAttribute(key, .strings(value))) } }

        if r.kind == .http {
            s("http.request.method", method(r))
            if let m = r.method, !knownMethods.contains(m) { s("http.request.method_original", m) }
            i("http.response.status_code", r.statusCode)
            s("url.full", r.url)
            s("url.scheme", r.scheme)
            s("network.protocol.name", "http")
            s("network.protocol.version", protocolVersion(r))
        }
        if r.kind == .dns {
            s("dns.question.name", r.host)
            s("calltap.dns.qtype", r.dnsQtype)
            s("calltap.dns.rcode", r.dnsRcode)
            list("calltap.dns.answers", r.dnsAnswers)
        }
        // Through a forward proxy, `server.*` is the destination and `network.peer.*` the proxy (the
        // endpoint on the wire).
        s("server.address", serverAddress(r))
        i("server.port", r.destinationPort)
        s("network.peer.address", r.serverIp)
        i("network.peer.port", r.serverPort)
        s("network.local.address", r.clientIp)
        i("network.local.port", r.clientPort)
        s("network.transport", r.kind == .dns ? "udp" : r.kind == .quic ? "quic" : "tcp")
        s("error.type", errorType(r))
        // An LLM API exchange, as the GenAI conventions name it
        // (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/).
        if let provider = r.llmProvider {
            s("gen_ai.provider.name", provider == "gemini" ? "gcp.gemini" : provider)
            s("gen_ai.operation.name", "chat")
            s("gen_ai.request.model", r.llmModel)
            s("gen_ai.response.model", r.llmModel)
            i("gen_ai.usage.input_tokens", r.llmInputTokens)
            i("gen_ai.usage.output_tokens", r.llmOutputTokens)
            i("gen_ai.usage.cache_read.input_tokens", r.llmCacheReadTokens)
            if let stop = r.llmStopReason { a.append(OTLPAttribute("gen_ai.response.finish_reasons", .strings([stop]))) }
            ms("calltap.llm_ttft_ms", r.llmTtftMicros)
            list("calltap.llm_tool_calls", r.llmToolCalls)
        }
        // Who made it.
        s("session.id", r.sessionId)
        i("process.pid", r.pid)
        s("process.executable.name", r.process)
        s("process.executable.path", r.exe)
        // TLS, as the conventions name it where they do.
        if r.tlsVersion != nil || r.sni != nil {
            s("tls.protocol.name", "tls")
            s("tls.protocol.version", r.tlsVersion)
            s("tls.cipher", r.tlsCipher)
            s("calltap.sni", r.sni)
            s("tls.next_protocol", r.alpn)
            s("tls.server.subject", r.certSubject)
        }
        // calltap's own facts.
        s("calltap.kind", r.kind.rawValue)
        s("calltap.outcome", r.outcome.rawValue)
        s("calltap.error", r.error)
        s("calltap.attribution", r.attribution?.rawValue)
        s("calltap.attribution_key", r.attributionKey?.rawValue)
        s("calltap.owner_source", r.ownerSource?.rawValue)
        s("calltap.visibility", r.visibility?.rawValue)
        if r.estimated { a.append(OTLPAttribute("calltap.estimated", .bool(true))) }
        s("calltap.community_id", r.connectionId)
        i("calltap.stream_id", r.streamId)
        s("calltap.ja4", r.ja4)
        list("calltap.alpn_offered", r.alpnOffered)
        list("calltap.cert_san", r.certSan)
        s("calltap.agent", r.agent)
        s("calltap.cgroup", r.cgroup)
        s("calltap.target", r.target)
        s("calltap.host", r.host)
        s("calltap.path", r.path)
        s("calltap.request_content_type", r.requestContentType)
        s("calltap.response_content_type", r.responseContentType)
        i("calltap.request_body_bytes", r.requestBodyBytes)
        i("calltap.response_body_bytes", r.responseBodyBytes)
        s("calltap.request_summary", r.requestSummary)
        s("calltap.response_summary", r.responseSummary)
        ms("calltap.latency_ms", r.latencyMicros)
        ms("calltap.connect_ms", r.connectMicros)
        ms("calltap.tls_handshake_ms", r.tlsHandshakeMicros)
        ms("calltap.ttfb_ms", r.ttfbMicros)
        list("calltap.weirds", r.weirds)
        if r.missedBytes > 0 { i("calltap.missed_bytes", r.missedBytes) }
        i("calltap.bytes_sent", r.bytesSent)
        i("calltap.bytes_received", r.bytesReceived)
        return a
    }

    /// A span event: its time and name, and how long the step took.
    public struct Event: Equatable, Sendable {
        public var time: UInt64
        public var name: String
        public var durationMs: Double
    }

    /// Connect, TLS handshake and first byte as events. A connection record (`tls`, `connect`, `quic`)
    /// starts at its SYN, so the connect ends at start + connect_ms and the handshake after it; an
    /// exchange starts at its request, so its connect (first exchange of a connection) is marked at its
    /// start and its first byte at start + ttfb_ms.
    public static func events(_ r: CallRecord) -> [Event] {
        let (start, end) = times(r)
        var out: [Event] = []
        // Inside the span, whatever the timings say.
        func at(_ micros: Int64) -> UInt64 { min(start &+ UInt64(max(micros, 0)) &* 1000, end) }
        let connectionRecord = r.kind == .tls || r.kind == .connect || r.kind == .quic
        if let c = r.connectMicros {
            out.append(Event(time: connectionRecord ? at(c) : start, name: "connect", durationMs: Double(c) / 1000))
        }
        if let h = r.tlsHandshakeMicros {
            let t = connectionRecord ? at((r.connectMicros ?? 0) + h) : start
            out.append(Event(time: t, name: "tls_handshake", durationMs: Double(h) / 1000))
        }
        if let f = r.ttfbMicros, r.kind == .http {
            out.append(Event(time: at(f), name: "first_byte", durationMs: Double(f) / 1000))
        }
        return out
    }
}

/// Trace and span ids. A call that carried a `traceparent` keeps its trace id and parent; otherwise
/// its trace id is derived from the call, as its span id always is, so the same call exported twice
/// (a resend after an outage, `read` run again) has the same ids.
public enum OTLPIds {
    /// FNV-1a, 64 bits, over the fields that identify a call, seeded so the three ids differ.
    static func hash(_ r: CallRecord, seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        func byte(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        func mix(_ s: String?) {
            if var s { s.withUTF8 { for b in $0 { byte(b) } } }
            byte(0xff)
        }
        func mix(_ v: Int64) { for k in 0..<8 { byte(UInt8(truncatingIfNeeded: v >> (8 * Int64(k)))) } }
        mix(r.kind.rawValue)
        mix(r.ts / 1000)
        mix(r.connectionId)
        mix(Int64(r.streamId ?? -1))
        mix(r.clientIp)
        mix(Int64(r.clientPort ?? -1))
        mix(r.serverIp)
        mix(Int64(r.serverPort ?? -1))
        mix(r.method)
        mix(r.path)
        mix(r.host)
        mix(r.dnsQtype)
        // Spread the last bytes' effect over every bit.
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h == 0 ? 1 : h
    }

    static func bytes(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64(7 - $0))) } }

    public static func spanId(_ r: CallRecord) -> [UInt8] { bytes(hash(r, seed: 0x5350_414e)) }

    public static func traceId(_ r: CallRecord) -> [UInt8] {
        if let t = r.traceId, let b = hexBytes(t, count: 16) { return b }
        return bytes(hash(r, seed: 0x5452_4331)) + bytes(hash(r, seed: 0x5452_4332))
    }

    public static func parentSpanId(_ r: CallRecord) -> [UInt8]? {
        guard r.traceId != nil, let p = r.parentSpanId else { return nil }
        return hexBytes(p, count: 8)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexBytes(_ s: String, count: Int) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count == count * 2 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for k in 0..<count {
            guard let hi = nibble(u[2 * k]), let lo = nibble(u[2 * k + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }
}

/// The resource the spans and metrics describe: `service.name`, `host.name`, and what
/// `OTEL_RESOURCE_ATTRIBUTES` adds; each capture target becomes its own resource (`calltap.target`).
public struct OTLPResource: Sendable, Equatable {
    public var attributes: [OTLPAttribute]
    public init(attributes: [OTLPAttribute]) { self.attributes = attributes }

    func with(target: String?) -> [OTLPAttribute] {
        guard let target else { return attributes }
        return attributes + [OTLPAttribute("calltap.target", .string(target))]
    }
}

/// `ExportTraceServiceRequest` (opentelemetry/proto/collector/trace/v1/trace_service.proto).
public enum OTLPTraceRequest {
    public static let scopeName = "calltap"

    /// Encodes the exported calls among `calls`, one `ResourceSpans` per capture target. Returns the
    /// bytes and how many spans they hold.
    public static func encode(_ calls: [CallRecord], resource: OTLPResource, version: String) -> (bytes: [UInt8], spans: Int) {
        var byTarget: [String?: [Int]] = [:]
        var order: [String?] = []
        for (k, r) in calls.enumerated() where OTLPSpans.isExported(r) {
            if byTarget[r.target] == nil { order.append(r.target) }
            byTarget[r.target, default: []].append(k)
        }
        var w = ProtoWriter(capacity: calls.count * 700)
        var spans = 0
        for target in order {
            // ExportTraceServiceRequest.resource_spans = 1
            w.message(1) { rs in
                // ResourceSpans.resource = 1: Resource.attributes = 1
                rs.message(1) { res in for a in resource.with(target: target) { res.attribute(1, a) } }
                // ResourceSpans.scope_spans = 2
                rs.message(2) { ss in
                    // ScopeSpans.scope = 1: InstrumentationScope { name = 1; version = 2 }
                    ss.message(1) { scope in
                        scope.string(1, scopeName)
                        scope.string(2, version)
                    }
                    for k in byTarget[target] ?? [] {
                        ss.message(2) { span in encodeSpan(calls[k], into: &span) }
                        spans += 1
                    }
                }
            }
        }
        return (w.bytes, spans)
    }

    /// `Span`: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8, attributes 9,
    /// events 11, status 15.
    static func encodeSpan(_ r: CallRecord, into w: inout ProtoWriter) {
        w.bytesField(1, OTLPIds.traceId(r))
        w.bytesField(2, OTLPIds.spanId(r))
        if let parent = OTLPIds.parentSpanId(r) { w.bytesField(4, parent) }
        w.string(5, OTLPSpans.name(r))
        w.uint(6, 3) // SPAN_KIND_CLIENT
        let (start, end) = OTLPSpans.times(r)
        w.fixed64(7, start)
        w.fixed64(8, end)
        for a in OTLPSpans.attributes(r) { w.attribute(9, a) }
        for e in OTLPSpans.events(r) {
            // Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
            w.message(11) { ev in
                ev.fixed64(1, e.time)
                ev.string(2, e.name)
                ev.attribute(3, OTLPAttribute("calltap.duration_ms", .double(e.durationMs)))
            }
        }
        if OTLPSpans.isError(r) {
            // Status { string message = 2; StatusCode code = 3; }, STATUS_CODE_ERROR = 2
            w.message(15) { st in
                st.string(2, r.error ?? OTLPSpans.errorType(r) ?? "")
                st.uint(3, 2)
            }
        }
    }
}
