import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

/// HTTP/1.x over a stream (plaintext, or decrypted inside `tls`): one call per exchange.
final class HTTP1Layer: StreamLayer {
    private unowned let conn: ConnectionAnalysis
    private unowned let tls: TLSLayer?
    let parser: HTTP1Analyser
    /// The last exchange that switched protocols (its Upgrade decides what follows). Boxed: an exchange is
    /// over 400 bytes and almost no connection switches.
    private(set) var switchedExchange: Box<HTTPExchange>?

    init(_ conn: ConnectionAnalysis, inside tls: TLSLayer? = nil) {
        self.conn = conn
        self.tls = tls
        var limits = conn.options.http
        if conn.options.summaries { limits.summaryBytes = conn.options.summaryBytes }
        limits.llmBodyBytes = conn.options.llmBodyBytes
        parser = HTTP1Analyser(limits: limits, budget: conn.budget)
    }

    func deliver(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) -> Int? {
        let used = parser.deliver(d, data, at: t)
        emit(finishing: nil)
        // Inside TLS the stream is not followed past a switch (the rest is ignored, as before it).
        return parser.switched && tls == nil ? used : nil
    }

    func gap(_ d: Direction, length: Int, at t: Nanos) {
        parser.gap(d, length: length, at: t)
        emit(finishing: nil)
    }

    func endOfStream(_ d: Direction, at t: Nanos) {
        parser.endOfStream(d, at: t)
        emit(finishing: nil)
    }

    func finish(_ reason: FinishReason) {
        parser.finish()
        emit(finishing: reason)
        conn.stats.parseErrors += parser.malformedMessages
        conn.stats.httpPendingDropped += parser.droppedPendingRequests
    }

    private func emit(finishing: FinishReason?) {
        for x in parser.takeCompleted() {
            if x.switchedProtocols {
                // Kept for what runs inside the tunnel: without its bodies.
                var kept = x
                kept.llm = nil
                kept.requestBodyPrefix = []
                kept.responseBodyPrefix = []
                switchedExchange = Box(kept)
            }
            var r = record(x, finishing: finishing)
            if let tls { tls.stampDecrypted(&r) }
            conn.emit(r)
        }
    }

    private func record(_ x: HTTPExchange, finishing: FinishReason?) -> CallRecord {
        let c = conn.connection
        let start = x.requestStart ?? x.responseStart ?? c.firstSeen
        var r = conn.base(kind: .http, ts: start)
        r.visibility = .plaintext
        r.scheme = "http"
        if let req = x.request {
            r.method = req.method.isEmpty ? nil : req.method
            r.httpVersion = req.version.isEmpty ? nil : req.version
            r.requestContentType = req.contentType
            let target = req.target.isEmpty ? nil : Redaction.target(req.target)
            r.path = target.map(ConnectionAnalysis.pathPart)
            r.host = ConnectionAnalysis.hostName(req.host) ?? ConnectionAnalysis.hostFromAbsoluteTarget(req.target)
                ?? conn.dnsName(for: c.server)
            r.url = conn.url(r)
            if tls == nil {
                if req.method == "CONNECT" {
                    // A tunnel asked of a forward proxy: the target (`host:port`) is in `path`, no url.
                    conn.markProxied(&r)
                } else if let dest = ConnectionAnalysis.absoluteDestination(req.target) {
                    // Absolute form, as sent to a forward proxy: the target names the destination
                    // (before the Host header, RFC 9112 §3.2.2).
                    conn.markProxied(&r)
                    r.scheme = dest.scheme
                    r.host = dest.host
                    r.url = r.path.flatMap { CallURL.make(scheme: dest.scheme, host: dest.host, port: dest.port, path: $0) }
                }
            }
            r.requestBodyBytes = x.requestBodyBytes
            r.weirds += req.weirds.map(\.rawValue)
            conn.applyRequestSession(req.sessionHints, to: &r)
            conn.applyLLM(x.llm, target: req.target, start: start, to: &r)
        } else {
            r.host = conn.dnsName(for: c.server)
        }
        if let resp = x.response {
            r.statusCode = resp.status
            r.responseContentType = resp.contentType
            if r.httpVersion == nil { r.httpVersion = resp.version }
            r.weirds += resp.weirds.map(\.rawValue)
        }
        if x.responseComplete || x.response != nil { r.responseBodyBytes = x.responseBodyBytes }
        if let end = x.responseEnd { r.end(at: end, start: start) }
        if let first = x.responseStart { r.ttfbMicros = first.micros(since: start) }
        if conn.httpCalls == 0 { r.connectMicros = conn.connectMicros }
        r.weirds += x.weirds.map(\.rawValue)
        r.missedBytes = x.missedBytes
        if conn.options.summaries {
            r.requestSummary = Redaction.summary(contentType: x.request?.contentType, bytes: x.requestBodyPrefix,
                                                 totalBytes: x.requestBodyBytes)
            r.responseSummary = Redaction.summary(contentType: x.response?.contentType, bytes: x.responseBodyPrefix,
                                                  totalBytes: x.responseBodyBytes)
        }
        if x.responseComplete, let status = x.response?.status {
            if x.missedBytes > 0 {
                r.set((.incomplete, "\(x.missedBytes) bytes missing from the capture"))
            } else {
                r.set(CallOutcome.status(status))
            }
        } else if x.missedBytes > 0 || r.weirds.contains(Weird.gapInHeaders.rawValue) {
            r.set((.incomplete, "capture gap inside the exchange"))
        } else if x.response != nil {
            let cut = CallOutcome.cut(c, responseStart: x.responseStart, finishing: finishing)
            r.set(cut.outcome)
            if let t = cut.endedAt { r.end(at: t, start: start) }
        } else if let t = c.resetTime {
            r.set(CallOutcome.reset(c))
            r.end(at: t, start: start)
        } else if x.request != nil && c.missedBytes[Direction.toClient.rawValue] > 0 {
            // The server did send something, but it fell into a hole in the capture.
            r.set((.incomplete, "response lost in a capture gap"))
        } else if x.request != nil {
            r.set(CallOutcome.noResponse(finishing))
        }
        return r
    }
}

/// HTTP/2 over a stream (prior knowledge, after `Upgrade: h2c`, or decrypted inside `tls`): one call per stream.
final class HTTP2Layer: StreamLayer {
    private unowned let conn: ConnectionAnalysis
    private unowned let tls: TLSLayer?
    let parser: HTTP2Analyser

    init(_ conn: ConnectionAnalysis, parser: HTTP2Analyser, inside tls: TLSLayer? = nil) {
        self.conn = conn
        self.tls = tls
        self.parser = parser
        conn.stats.http2Connections += 1
    }

    func deliver(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) -> Int? {
        parser.deliver(d, data, at: t)
        emit(finishing: nil)
        return nil
    }

    func gap(_ d: Direction, length: Int, at t: Nanos) {
        parser.gap(d, length: length)
    }

    func endOfStream(_ d: Direction, at t: Nanos) {}

    func finish(_ reason: FinishReason) {
        parser.finish()
        emit(finishing: reason)
        conn.stats.http2StreamsDropped += parser.droppedStreams
        conn.stats.http2PushedStreams += parser.pushedStreams
        conn.stats.parseErrors += parser.hpackErrors
    }

    private func emit(finishing: FinishReason?) {
        for st in parser.takeCompleted() {
            var r = record(st, finishing: finishing)
            if let tls { tls.stampDecrypted(&r) }
            if r.url == nil { r.url = conn.url(r) }
            r.connectMicros = conn.httpCalls == 0 ? conn.connectMicros : nil
            r.weirds += parser.weirds.map(\.rawValue)
            conn.emit(r)
        }
    }

    private func record(_ st: HTTP2Stream, finishing: FinishReason?) -> CallRecord {
        let c = conn.connection
        let start = st.requestStart ?? st.responseStart ?? c.firstSeen
        var r = conn.base(kind: .http, ts: start)
        r.visibility = .plaintext
        r.scheme = st.scheme ?? "http"
        r.streamId = Int(st.id)
        r.httpVersion = st.upgraded ? "1.1→2" : "2"
        r.method = st.method
        r.path = st.path.map(Redaction.target)
        r.host = ConnectionAnalysis.hostName(st.authority) ?? conn.dnsName(for: c.server)
        r.statusCode = st.status
        r.requestContentType = st.requestContentType
        conn.applyRequestSession(st.sessionHints, to: &r)
        conn.applyLLM(st.llm, target: st.path, start: start, to: &r)
        r.responseContentType = st.responseContentType
        r.requestBodyBytes = st.requestBodyBytes
        if st.status != nil { r.responseBodyBytes = st.responseBodyBytes }
        if conn.options.summaries {
            r.requestSummary = Redaction.summary(contentType: st.requestContentType, bytes: st.requestBodyPrefix,
                                                 totalBytes: st.requestBodyBytes)
            r.responseSummary = Redaction.summary(contentType: st.responseContentType, bytes: st.responseBodyPrefix,
                                                  totalBytes: st.responseBodyBytes)
        }
        if let end = st.responseEnd { r.end(at: end, start: start) }
        if let first = st.responseStart { r.ttfbMicros = first.micros(since: start) }
        if st.afterGap {
            r.set((.incomplete, "capture gap earlier on the connection: headers unreliable"))
        } else if let code = st.resetCode, !(st.responseComplete && code == 0) {
            r.set((.reset, "RST_STREAM \(HTTP2Analyser.errorName(code)) from \(st.resetByClient ? "client" : "server")"))
        } else if let code = st.goAwayCode {
            r.set((.noResponse, "GOAWAY \(HTTP2Analyser.errorName(code)): stream not processed"))
        } else if st.responseComplete, let status = st.status {
            r.set(CallOutcome.status(status))
        } else if st.status != nil {
            let cut = CallOutcome.cut(c, responseStart: st.responseStart, finishing: finishing)
            r.set(cut.outcome)
            if let t = cut.endedAt { r.end(at: t, start: start) }
        } else if let t = c.resetTime {
            r.set(CallOutcome.reset(c))
            r.end(at: t, start: start)
        } else {
            r.set(CallOutcome.noResponse(finishing))
        }
        return r
    }
}

extension CallRecord {
    /// The call ended at `t`: its end, and its latency from `start`.
    mutating func end(at t: Nanos, start: Nanos) {
        endedAt = t
        latencyMicros = t.micros(since: start)
    }
}
