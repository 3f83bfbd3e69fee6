import Foundation
import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

/// A value kept on the heap, for large and rarely present state.
final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The analysis of one TCP connection, as wiring: it detects the protocol from the first bytes, hands the
/// stream to that protocol's layer (`HTTP1Layer`, `HTTP2Layer`, `TLSLayer`; see `StreamLayer`), follows a
/// switch (CONNECT, 101) to whatever comes next, and reports a `connect` call for a connection with no
/// calls of its own. The layers build the calls; this holds what they share (endpoints, the Community ID,
/// the connect time, how many HTTP calls the connection has had).
final class ConnectionAnalysis: TCPStreamHandler {
    private unowned let owner: Analyzer
    unowned let connection: TCPConnection
    /// The shared parser budget, held strongly so the bytes held here are given back however the
    /// connection ends.
    let budget: ParserBudget
    var options: AnalysisOptions { owner.options }
    var stats: CaptureStats {
        get { owner.stats }
        _modify { yield &owner.stats }
    }

    private enum State { case undecided, layer, opaque }
    private var state = State.undecided
    /// Where bytes go now.
    private var active: StreamLayer?
    /// The connection's layers, kept for the end of the connection (a switch leaves the first one behind).
    private var http: HTTP1Layer?
    private var h2: HTTP2Layer?
    private var tls: TLSLayer?
    private var dns: DNSLayer?
    /// Set after a switch (CONNECT/101): what follows is TLS, or inside a CONNECT tunnel also HTTP;
    /// anything else is opaque.
    private var afterSwitch = false
    /// The stream switched on a CONNECT the proxy accepted: the rest is the destination's.
    private var inTunnel = false
    /// The HTTP/1 layer that carried the CONNECT, when HTTP/1 inside the tunnel took its place.
    private var tunnelOuter: HTTP1Layer?
    /// Client bytes held while undecided: a request line too damaged to recognise is still HTTP when the
    /// server answers with a status line. Counted in the shared budget.
    private var heldClientBytes: [UInt8] = []
    private var heldCharged = 0
    private static let maxHeldClientBytes = 8192
    /// The connection goes to a forward proxy: it carried a CONNECT or absolute-form requests. Its calls
    /// then name the proxy (`proxy`) while `host` and `url` name the destination.
    private(set) var proxied = false
    /// The destination of the CONNECT tunnel the stream switched to (host and port of its authority-form
    /// target): the calls inside name it, not the proxy.
    private(set) var tunnelHost: String?
    private(set) var tunnelPort: Int?
    /// The proxy as `proxy` writes it: `ip:port`, an IPv6 address bracketed. Made once per connection.
    private(set) lazy var proxyText = "\(CallURL.host(serverText)):\(connection.serverPort)"
    /// HTTP calls reported so far (the first carries the connect and handshake times).
    private(set) var httpCalls = 0
    /// Made when the first call is built: a SYN flood's connections never need one.
    private lazy var communityID = CommunityID.v1(connection.client, connection.clientPort, connection.server,
                                                  connection.serverPort, proto: 6)
    /// The endpoints as text, made once per connection rather than once per call.
    private lazy var clientText = connection.client.description
    private lazy var serverText = connection.server.description

    init(owner: Analyzer, connection c: TCPConnection) {
        self.owner = owner
        budget = owner.parserBudget
        connection = c
        // Who opened it is looked up by the attribution stage, off this thread, while the socket still exists.
        owner.options.connectionOpened?(c.client, c.clientPort, c.server, c.serverPort, c.firstSeen)
    }

    deinit { budget.release(heldCharged) }

    // MARK: TCPStreamHandler

    func deliver(_ c: TCPConnection, _ direction: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        if state == .undecided {
            detect(c, direction, data)
            if state == .undecided { return } // held until the other side speaks
        }
        guard state == .layer, let layer = active else { return }
        guard let used = layer.deliver(direction, data, at: time) else { return }
        switched(from: layer, direction, UnsafeRawBufferPointer(rebasing: data[used...]), at: time)
    }

    func gap(_ c: TCPConnection, _ direction: Direction, length: Int, at time: Nanos) {
        if state == .layer { active?.gap(direction, length: length, at: time) }
    }

    func endOfStream(_ c: TCPConnection, _ direction: Direction, at time: Nanos) {
        if state == .layer { active?.endOfStream(direction, at: time) }
    }

    func finish(_ c: TCPConnection, reason: FinishReason) {
        // In this order, as calls of equal start leave the ordering buffer in the order they came: keys
        // that arrived late release held records first, then HTTP/2 (in the clear, then inside TLS),
        // HTTP/1, and TLS with what it carried.
        tls?.releaseHeldRecords()
        h2?.finish(reason)
        tls?.finishInnerHTTP2(reason)
        http?.finish(reason)
        tunnelOuter?.finish(reason)
        if let tls {
            tls.finish(reason)
        } else if let dns, dns.messages > 0 {
            // DNS over TCP: the lookups are the calls (the tracker emits them).
        } else if (http == nil && h2 == nil) || httpCalls == 0 {
            if let r = connectRecord(c, reason: reason) { owner.emit(r) }
        }
        owner.options.connectionClosed?(c.client, c.clientPort, c.server, c.serverPort)
    }

    // MARK: Detection and switching

    /// The rest of the stream is another protocol (TLS in a CONNECT tunnel, WebSocket, h2c…): bytes the
    /// HTTP/1 parser held from the client go first, then the rest of this segment.
    private func switched(from layer: StreamLayer, _ direction: Direction, _ rest: UnsafeRawBufferPointer, at time: Nanos) {
        guard let http = layer as? HTTP1Layer else { return }
        let held = http.parser.heldClientBytes
        state = .undecided
        active = nil
        afterSwitch = true
        if let x = http.switchedExchange?.value, let req = x.request, req.method == "CONNECT" {
            // The proxy accepted the tunnel: what follows is the destination's.
            proxied = true
            inTunnel = true
            tunnelHost = Self.hostName(req.target) ?? Self.hostName(req.host)
            tunnelPort = CallURL.port(ofAuthority: req.target)
        }
        if let x = http.switchedExchange?.value, x.request?.upgrade?.contains("h2c") == true, x.response?.status == 101 {
            let a = HTTP2Analyser(limits: http2Limits, budget: budget)
            a.adoptUpgradedRequest(method: x.request?.method, path: x.request?.target, authority: x.request?.host,
                                   start: x.requestStart, end: x.requestEnd)
            start(HTTP2Layer(self, parser: a))
        }
        if !held.isEmpty {
            held.withUnsafeBytes { deliver(connection, .toServer, $0, at: time) }
        }
        if !rest.isEmpty { deliver(connection, direction, rest, at: time) }
    }

    private func start(_ layer: StreamLayer) {
        state = .layer
        active = layer
        if let l = layer as? HTTP1Layer { http = l }
        if let l = layer as? HTTP2Layer { h2 = l }
        if let l = layer as? TLSLayer { tls = l }
        if let l = layer as? DNSLayer { dns = l }
    }

    private func detect(_ c: TCPConnection, _ direction: Direction, _ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        if direction == .toServer && heldClientBytes.isEmpty && data[0] == 0x16 && data.count >= 3
            && data[1] == 0x03 && data[2] <= 0x04 {
            start(tls ?? TLSLayer(self))
            return
        }
        if !afterSwitch && c.serverPort == 53 && heldClientBytes.isEmpty {
            start(DNSLayer(self))
            return
        }
        if afterSwitch {
            // Inside a CONNECT tunnel a client may speak plain HTTP (`curl --proxytunnel`, Python's
            // `set_tunnel`): read like a direct connection to the tunnel's destination. Anything else
            // after a switch (a WebSocket after 101, an unknown protocol) is counted as opaque bytes.
            if inTunnel && tunnelOuter == nil && h2 == nil && direction == .toServer && heldClientBytes.isEmpty {
                if HTTPDetector.looksLikeHTTP2Preface(data) {
                    start(HTTP2Layer(self, parser: HTTP2Analyser(limits: http2Limits, budget: budget)))
                    return
                }
                if HTTPDetector.looksLikeRequest(data) {
                    tunnelOuter = http
                    start(HTTP1Layer(self))
                    return
                }
            }
            state = .opaque
            return
        }
        if direction == .toServer {
            if heldClientBytes.isEmpty && HTTPDetector.looksLikeHTTP2Preface(data) {
                start(HTTP2Layer(self, parser: HTTP2Analyser(limits: http2Limits, budget: budget)))
            } else if heldClientBytes.isEmpty && HTTPDetector.looksLikeRequest(data) {
                start(HTTP1Layer(self))
            } else if heldClientBytes.count + data.count <= Self.maxHeldClientBytes && data[0] >= 0x20
                        && budget.reserve(heldClientBytes.count + data.count - heldCharged) {
                heldClientBytes.append(contentsOf: data) // wait for the server's answer to decide
                heldCharged = heldClientBytes.count
            } else {
                state = .opaque
                releaseHeld()
            }
            return
        }
        if heldClientBytes.isEmpty && HTTPDetector.looksLikeHTTP2Settings(data) {
            start(HTTP2Layer(self, parser: HTTP2Analyser(limits: http2Limits, budget: budget)))
            return
        }
        guard HTTPDetector.looksLikeResponse(data) else {
            state = .opaque
            releaseHeld()
            return
        }
        let layer = HTTP1Layer(self)
        start(layer)
        if !heldClientBytes.isEmpty {
            heldClientBytes.withUnsafeBytes { _ = layer.deliver(.toServer, $0, at: c.firstDataTime[0] ?? c.firstSeen) }
        }
        releaseHeld()
    }

    /// The bytes held for detection are done with (handed to a parser, or the stream was decided).
    private func releaseHeld() {
        heldClientBytes = []
        budget.release(heldCharged)
        heldCharged = 0
    }

    // MARK: What the layers share

    /// Hands a call to the pipeline; HTTP calls count for the first-call times.
    func emit(_ r: consuming CallRecord, countsAsHTTP: Bool = true) {
        if proxied && r.proxy == nil { r.proxy = proxyText }
        owner.emit(r)
        if countsAsHTTP { httpCalls += 1 }
    }

    func dnsName(for ip: IPAddress) -> String? { owner.dnsName(for: ip) }

    /// One DNS message of a DNS-over-TCP stream, for the lookup tracker.
    func dnsMessage(_ message: UnsafeRawBufferPointer, from src: IPAddress, _ srcPort: UInt16, to dst: IPAddress, _ dstPort: UInt16,
                    at time: Nanos) {
        owner.dnsTCPMessage(message, from: src, srcPort, to: dst, dstPort, at: time)
    }

    /// A call of this connection with its identity and endpoints filled in.
    func base(kind: CallKind, ts: Nanos) -> CallRecord {
        let c = connection
        var r = CallRecord(kind: kind, ts: ts)
        r.connectionId = communityID
        r.clientIp = clientText
        r.clientPort = Int(c.clientPort)
        r.serverIp = serverText
        r.serverPort = Int(c.serverPort)
        r.estimated = c.midStream
        return r
    }

    /// HTTP/2 limits for this connection: body prefixes kept only with `--summaries`.
    var http2Limits: HTTP2Limits {
        var l = HTTP2Limits()
        if options.summaries { l.summaryBytes = options.summaryBytes }
        l.llmBodyBytes = options.llmBodyBytes
        return l
    }

    /// SYN → SYN/ACK, when both were seen.
    var connectMicros: Int64? {
        guard let syn = connection.synTime, let synAck = connection.synAckTime, synAck >= syn else { return nil }
        return synAck.micros(since: syn)
    }

    /// A session named by the request itself (`baggage: session.id=…` or `x-session-id`) decides.
    /// Puts the session a request named on its call (`exact`), when the id meets the session-id policy;
    /// an id outside it is ignored and counted (`session_ids_rejected`). Shared by HTTP/1 and HTTP/2.
    func applyRequestSession(_ hints: [String: String], to r: inout CallRecord) {
        if let tp = hints["traceparent"], let context = TraceParent.parse(tp) {
            r.traceId = context.traceId
            r.parentSpanId = context.parentSpanId
        }
        guard let (session, key) = Self.sessionFromHeaders(hints) else { return }
        decideSession(session, key: key, for: &r)
    }

    /// A session the request itself named (a header, or `prompt_cache_key` in its body): `exact`, when the
    /// id meets the policy; an id outside it is ignored and counted.
    func decideSession(_ session: String, key: AttributionKey, for r: inout CallRecord) {
        guard SessionID.isValid(session) else {
            stats.sessionIdsRejected += 1
            return
        }
        r.sessionId = session
        r.attribution = .exact
        r.attributionKey = key
    }

    /// What an LLM API exchange said, read from its bodies (undoing gzip, deflate or br within a bound),
    /// and its `prompt_cache_key` as the session when no header named one.
    func applyLLM(_ capture: LLMCapture?, target: String?, start: Nanos, to r: inout CallRecord) {
        guard let capture else { return }
        var f = capture.facts
        let limit = capture.cap
        if let body = Decompression.decode(capture.requestBody, encoding: capture.requestEncoding, limit: limit) {
            LLMParsing.request(capture.api, body, target: target, into: &f)
        }
        if capture.gaveUp {
            f.unreadable = true
        } else if !capture.streaming {
            if capture.responseOverflow {
                f.unreadable = true
            } else if let body = Decompression.decode(capture.responseBody, encoding: capture.responseEncoding, limit: limit) {
                LLMParsing.response(capture.api, body, into: &f)
            } else {
                f.unreadable = true
            }
        }
        if f.unreadable || capture.requestOverflow || capture.sse.linesSkipped > 0 { stats.llmBodiesUnread += 1 }
        // A path that looks like an LLM API but answered nothing shaped like one (a survey's `/responses`)
        // is not an LLM call.
        let cutShort = capture.gaveUp || capture.requestOverflow || capture.responseOverflow
        let answered = f.inputTokens != nil || f.outputTokens != nil || f.stopReason != nil || !f.toolCalls.isEmpty
            || f.firstTokenAt != nil || cutShort
        guard answered else { return }
        r.llmProvider = capture.api.provider
        r.llmModel = f.model.map { String($0.prefix(200)) }
        r.llmInputTokens = f.inputTokens
        r.llmOutputTokens = f.outputTokens
        r.llmCacheReadTokens = f.cacheReadTokens
        r.llmStopReason = f.stopReason.map { String($0.prefix(100)) }
        r.llmToolCalls = f.toolCalls.isEmpty ? nil : f.toolCalls
        r.llmToolResultIds = f.toolResultIds.isEmpty ? nil : f.toolResultIds
        r.llmTtftMicros = f.firstTokenAt.map { $0.micros(since: start) }
        if r.attribution != .exact, let key = f.promptCacheKey { decideSession(key, key: .promptCacheKey, for: &r) }
    }

    /// The session a request's headers name, strongest first: `baggage: session.id=…`, `x-session-id`,
    /// then the Codex transport's `session_id` (or `conversation_id`, which carries the same id).
    static func sessionFromHeaders(_ hints: [String: String]) -> (String, AttributionKey)? {
        if let baggage = hints["baggage"] {
            for member in baggage.split(separator: ",") {
                let kv = member.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces) == "session.id" {
                    let v = kv[1].trimmingCharacters(in: .whitespaces)
                    return (v.removingPercentEncoding ?? v, .baggage)
                }
            }
        }
        if let v = hints["x-session-id"] { return (v, .xSessionId) }
        if let v = hints["session_id"] ?? hints["conversation_id"] { return (v.trimmingCharacters(in: .whitespaces), .sessionIdHeader) }
        return nil
    }

    /// The call's url from its scheme, host and path and the destination's port: the connection's, or
    /// inside a CONNECT tunnel the port the tunnel was asked for (see `CallURL`).
    func url(_ r: CallRecord) -> String? {
        guard let path = r.path, let host = r.host, let scheme = r.scheme else { return nil }
        return CallURL.make(scheme: scheme, host: host, port: tunnelPort ?? Int(connection.serverPort), path: path)
    }

    /// A request sent to a forward proxy (a CONNECT, or an absolute-form target): the connection is
    /// proxied from now on, and the call names the proxy.
    func markProxied(_ r: inout CallRecord) {
        proxied = true
        r.proxy = proxyText
    }

    /// The destination of an absolute-form target (`http://host[:port]/path`, as sent to a forward
    /// proxy): its scheme, host and port (the scheme's default when it names none); nil for any other form.
    static func absoluteDestination(_ target: String) -> (scheme: String, host: String, port: Int?)? {
        guard !target.hasPrefix("/"), let schemeEnd = target.range(of: "://") else { return nil }
        let scheme = target[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        let rest = target[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let host = hostFromAbsoluteTarget(target), !host.isEmpty else { return nil }
        return (scheme, host, CallURL.port(ofAuthority: authority) ?? CallURL.defaultPort(scheme))
    }

    /// A record for a connection that carried no recognised calls: a failed connect (refused,
    /// timeout) or an established connection of an unknown protocol.
    private func connectRecord(_ c: TCPConnection, reason: FinishReason) -> CallRecord? {
        let start = c.synTime ?? c.firstSeen
        var r = base(kind: .connect, ts: start)
        r.host = owner.dnsName(for: c.server)
        r.endedAt = c.lastSeen
        r.latencyMicros = c.lastSeen.micros(since: start)
        r.bytesSent = c.bytes[0]
        r.bytesReceived = c.bytes[1]
        r.missedBytes = c.totalMissedBytes
        if c.synAckTime == nil && c.bytes[0] + c.bytes[1] == 0 {
            if c.midStream { return nil } // stray ACKs/FINs of a connection we never saw
            if c.resetTime != nil && c.resetBy == .toClient {
                r.outcome = .refused
                r.error = "connection refused (RST to SYN)"
            } else if c.resetTime != nil {
                r.outcome = .reset
                r.error = "connection reset by client during the handshake"
            } else if reason == .endOfCapture && c.synCount < 2 && owner.captureTime.minus(c.lastSeen) < 3_000_000_000 {
                // One SYN just before the capture ended: too early to call it a timeout.
                r.outcome = .incomplete
                r.error = "capture ended during the handshake"
            } else {
                r.outcome = .timeout
                r.error = "no answer to \(c.synCount) SYN\(c.synCount == 1 ? "" : "s")"
            }
            return r
        }
        r.connectMicros = connectMicros
        if c.bytes[0] + c.bytes[1] == 0 && c.midStream { return nil }
        return r
    }

    // MARK: Helpers

    /// Lower-case host without port.
    static func hostName(_ raw: String?) -> String? {
        guard var h = raw?.trimmingWhitespace(), !h.isEmpty else { return nil }
        let u = h.utf8
        if u.first == UInt8(ascii: "[") {
            if let close = u.firstIndex(of: UInt8(ascii: "]")) { h = String(h[u.index(after: u.startIndex)..<close]) }
        } else if let colon = u.lastIndex(of: UInt8(ascii: ":")), u.firstIndex(of: UInt8(ascii: ":")) == colon {
            h = String(h[..<colon])
        }
        if h.utf8.last == UInt8(ascii: ".") { h.removeLast() }
        // Most names are already lower-case ASCII: kept as they are, without a copy.
        if h.utf8.allSatisfy({ $0 < 0x80 && !($0 >= 65 && $0 <= 90) }) { return h }
        return h.lowercased()
    }

    static func hostFromAbsoluteTarget(_ target: String) -> String? {
        if target.hasPrefix("/") { return nil } // origin-form, the usual case: no scan needed
        guard let schemeEnd = target.range(of: "://") else {
            // CONNECT host:port
            return target.contains(":") && !target.hasPrefix("/") ? hostName(target) : nil
        }
        let rest = target[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@").last.map(String.init) ?? String(authority)
        return hostName(hostPort)
    }

    /// The path (with redacted query) of an origin-form or absolute-form target.
    static func pathPart(_ target: String) -> String {
        guard !target.hasPrefix("/"), let schemeEnd = target.range(of: "://") else { return target }
        let rest = target[schemeEnd.upperBound...]
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) {
            let p = String(rest[slash...])
            return p.hasPrefix("?") ? "/" + p : p
        }
        return "/"
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let u = utf8
        func space(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
        guard let f = u.first, let l = u.last, space(f) || space(l) else { return self }
        var s = Substring(self)
        while let f = s.utf8.first, space(f) { s = s.dropFirst() }
        while let l = s.utf8.last, space(l) { s = s.dropLast() }
        return String(s)
    }
}
