import Foundation
import Analysers
import CallModel
import Capture
import Reassembly
import X509

/// A value kept on the heap, for large and rarely present state.
final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// What a TCP stream turned out to carry, decided from its first bytes.
enum StreamProtocol {
    case undecided
    case http
    case http2
    case tls
    case unknown
}

/// The analysis of one TCP connection: protocol detection by content, the HTTP/1 and TLS analysers
/// (re-detecting after CONNECT or an Upgrade), and the call records built from their results.
final class ConnectionAnalysis: TCPStreamHandler {
    private unowned let owner: Analyzer
    private var proto: StreamProtocol = .undecided
    private var http: HTTP1Analyser?
    private var tls: TLSAnalyser?
    /// Set while the HTTP analyser has handed the stream over (CONNECT/101) and detection runs again.
    private var afterSwitch = false
    /// Client bytes held while undecided: a request line too damaged to recognise is still HTTP
    /// when the server answers with a status line.
    private var heldClientBytes: [UInt8] = []
    /// Bytes of `heldClientBytes` counted in the shared parser budget.
    private var heldCharged = 0
    private static let maxHeldClientBytes = 8192
    private var httpCalls = 0
    /// HTTP/2 in the clear: prior knowledge, or after an Upgrade: h2c.
    private var h2: HTTP2Analyser?
    /// The last HTTP/1 exchange that switched protocols (its Upgrade decides what follows).
    /// Boxed: an exchange is over 400 bytes and almost no connection switches.
    private var switchedExchange: Box<HTTPExchange>?
    /// HTTP/2 inside decrypted TLS.
    private var innerHTTP2: HTTP2Analyser?
    /// HTTP/1 inside decrypted TLS.
    private var innerHTTP: HTTP1Analyser?
    private var innerUnknown = false
    private var unknownBytes = 0
    /// Made when the first call is built: a SYN flood's connections never need one.
    private lazy var communityID = CommunityID.v1(connection.client, connection.clientPort, connection.server,
                                                  connection.serverPort, proto: 6)
    /// The endpoints as text, made once per connection rather than once per call.
    private lazy var clientText = connection.client.description
    private lazy var serverText = connection.server.description
    private unowned let connection: TCPConnection

    /// The shared parser budget, held strongly so the bytes held here are given back however the
    /// connection ends.
    private let budget: ParserBudget

    deinit { budget.release(heldCharged) }

    /// The bytes held for detection are done with (handed to a parser, or the stream was decided).
    private func releaseHeld() {
        heldClientBytes = []
        budget.release(heldCharged)
        heldCharged = 0
    }

    init(owner: Analyzer, connection c: TCPConnection) {
        self.owner = owner
        budget = owner.parserBudget
        connection = c
        // Who opened it is looked up by the attribution stage, off this thread, while the socket still exists.
        owner.options.connectionOpened?(c.client, c.clientPort, c.server, c.serverPort, c.firstSeen)
    }

    // MARK: TCPStreamHandler

    func deliver(_ c: TCPConnection, _ direction: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        var data = data
        if proto == .undecided {
            detect(c, direction, data)
            if proto == .undecided { return } // held until the other side speaks
        }
        switch proto {
        case .http:
            guard let http else { return }
            let used = http.deliver(direction == .toServer ? .client : .server, data, at: time)
            emitHTTP(c)
            if http.switched {
                // The rest of the stream is another protocol (TLS in a CONNECT tunnel, WebSocket, h2c…).
                let held = http.heldClientBytes
                proto = .undecided
                afterSwitch = true
                if let x = switchedExchange?.value, x.request?.upgrade?.contains("h2c") == true, x.response?.status == 101 {
                    let a = HTTP2Analyser(budget: owner.parserBudget)
                    a.adoptUpgradedRequest(method: x.request?.method, path: x.request?.target, authority: x.request?.host,
                                           start: x.requestStart, end: x.requestEnd)
                    h2 = a
                    proto = .http2
                }
                if !held.isEmpty {
                    held.withUnsafeBytes { deliver(c, .toServer, $0, at: time) }
                }
                if used < data.count {
                    data = UnsafeRawBufferPointer(rebasing: data[used...])
                    deliver(c, direction, data, at: time)
                }
            }
        case .tls:
            tls?.deliver(fromClient: direction == .toServer, data, at: time)
        case .http2:
            h2?.deliver(fromClient: direction == .toServer, data, at: time)
            emitHTTP2(c, h2, tls: nil)
        case .unknown, .undecided:
            unknownBytes += data.count
        }
    }

    func gap(_ c: TCPConnection, _ direction: Direction, length: Int, at time: Nanos) {
        switch proto {
        case .http: http?.gap(direction == .toServer ? .client : .server, length: length, at: time)
        case .tls:
            tls?.gap(fromClient: direction == .toServer, length: length)
            // What the lost records carried is lost to the protocol inside too.
            innerHTTP2?.gap(fromClient: direction == .toServer, length: length)
            if let inner = innerHTTP {
                inner.gap(direction == .toServer ? .client : .server, length: length, at: time)
                emitInnerHTTP(c)
            }
        case .http2: h2?.gap(fromClient: direction == .toServer, length: length)
        default: break
        }
    }

    func endOfStream(_ c: TCPConnection, _ direction: Direction, at time: Nanos) {
        if proto == .http, let http {
            http.endOfStream(direction == .toServer ? .client : .server, at: time)
            emitHTTP(c)
        }
        // A close-delimited response inside TLS ends with the connection too.
        if proto == .tls, let inner = innerHTTP {
            inner.endOfStream(direction == .toServer ? .client : .server, at: time)
            emitInnerHTTP(c)
        }
    }

    func finish(_ c: TCPConnection, reason: FinishReason) {
        // Keys that arrived late release held records (and their calls) before anything is handed out.
        tls?.finishWaitingForKeys()
        for a in [h2, innerHTTP2].compactMap({ $0 }) {
            a.finish()
            emitHTTP2(c, a, tls: a === innerHTTP2 ? tls : nil, finishing: reason)
            owner.stats.http2StreamsDropped += a.droppedStreams
            owner.stats.http2PushedStreams += a.pushedStreams
            owner.stats.parseErrors += a.hpackErrors
        }
        if let http {
            http.finish()
            emitHTTP(c, finishing: reason)
            owner.stats.parseErrors += http.malformedMessages
            owner.stats.httpPendingDropped += http.droppedPendingRequests
        }
        if let tls {
            owner.stats.undecryptableRecords += tls.droppedWhileWaitingForKeys
            if let inner = innerHTTP {
                inner.finish()
                emitInnerHTTP(c, finishing: reason)
                owner.stats.parseErrors += inner.malformedMessages
            }
            owner.stats.decryptedRecords += tls.decryptedRecords
            owner.stats.undecryptableRecords += tls.undecryptableRecords
            if !tls.weirds.isEmpty { owner.stats.parseErrors += tls.weirds.filter { $0 != .tlsGap }.count }
            owner.emit(tlsRecord(c, tls, reason: reason))
            if !tls.isDecrypting && tls.isHTTP1OnlyConnection { emitEstimated(c, tls, reason: reason) }
        } else if (http == nil && h2 == nil) || httpCalls == 0 {
            if let r = connectRecord(c, reason: reason) { owner.emit(r) }
        }
        owner.options.connectionClosed?(c.client, c.clientPort, c.server, c.serverPort)
    }

    // MARK: Detection

    private func detect(_ c: TCPConnection, _ direction: Direction, _ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        if direction == .toServer && heldClientBytes.isEmpty && data[0] == 0x16 && data.count >= 3
            && data[1] == 0x03 && data[2] <= 0x04 {
            proto = .tls
            if tls == nil { startTLS(c) }
            return
        }
        if afterSwitch {
            // Inside a tunnel only TLS is analysed for now; anything else is counted as opaque bytes.
            proto = .unknown
            return
        }
        if direction == .toServer {
            if heldClientBytes.isEmpty && HTTPDetector.looksLikeHTTP2Preface(data) {
                h2 = HTTP2Analyser(budget: owner.parserBudget)
                proto = .http2
            } else if heldClientBytes.isEmpty && HTTPDetector.looksLikeRequest(data) {
                startHTTP()
            } else if heldClientBytes.count + data.count <= Self.maxHeldClientBytes && data[0] >= 0x20
                        && budget.reserve(heldClientBytes.count + data.count - heldCharged) {
                heldClientBytes.append(contentsOf: data) // wait for the server's answer to decide
                heldCharged = heldClientBytes.count
            } else {
                proto = .unknown
                releaseHeld()
            }
            return
        }
        if heldClientBytes.isEmpty && HTTPDetector.looksLikeHTTP2Settings(data) {
            h2 = HTTP2Analyser(budget: owner.parserBudget)
            proto = .http2
            return
        }
        guard HTTPDetector.looksLikeResponse(data) else {
            proto = .unknown
            releaseHeld()
            return
        }
        startHTTP()
        if !heldClientBytes.isEmpty, let http {
            heldClientBytes.withUnsafeBytes { _ = http.deliver(.client, $0, at: c.firstDataTime[0] ?? c.firstSeen) }
        }
        releaseHeld()
    }

    private func startTLS(_ c: TCPConnection) {
        let t = TLSAnalyser(keyLog: owner.options.keyLog, budget: owner.parserBudget)
        if owner.options.keyLog != nil {
            t.onPlaintext = { [unowned self, unowned c] fromClient, data, time in
                self.decrypted(c, fromClient: fromClient, data, at: time)
            }
        }
        tls = t
    }

    /// Decrypted application data: detected, then analysed like plaintext HTTP/1.
    private func decrypted(_ c: TCPConnection, fromClient: Bool, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        if innerHTTP == nil && innerHTTP2 == nil && !innerUnknown {
            let looksHTTP = fromClient ? HTTPDetector.looksLikeRequest(data) : HTTPDetector.looksLikeResponse(data)
            let alpn = tls?.serverHello?.alpn ?? tls?.encryptedALPN
            if HTTPDetector.looksLikeHTTP2Preface(data) || alpn == "h2" {
                innerHTTP2 = HTTP2Analyser(expectPreface: true, budget: owner.parserBudget)
                owner.stats.http2Connections += 1
            } else if looksHTTP {
                var limits = owner.options.http
                if owner.options.summaries { limits.summaryBytes = owner.options.summaryBytes }
                innerHTTP = HTTP1Analyser(limits: limits, budget: owner.parserBudget)
            } else {
                innerUnknown = true
            }
        }
        if let inner2 = innerHTTP2 {
            inner2.deliver(fromClient: fromClient, data, at: time)
            emitHTTP2(c, inner2, tls: tls)
            return
        }
        guard let inner = innerHTTP else { return }
        inner.deliver(fromClient ? .client : .server, data, at: time)
        emitInnerHTTP(c)
    }

    /// Without keys: one estimated call per request/response exchange seen in the encrypted records.
    private func emitEstimated(_ c: TCPConnection, _ t: TLSAnalyser, reason: FinishReason) {
        for (i, x) in t.estimatedExchanges.enumerated() {
            var r = base(c, kind: .http, ts: x.start)
            r.estimated = true
            r.visibility = .encrypted
            r.scheme = "https"
            r.httpVersion = "1.1"
            r.sni = t.clientHello?.serverName
            r.alpn = t.serverHello?.alpn
            r.tlsVersion = t.serverHello.map { TLSNames.version($0.version) }
            r.host = Self.hostName(r.sni) ?? owner.dnsName(for: c.server)
            r.bytesSent = x.requestBytes
            r.bytesReceived = x.responseBytes
            if i == 0 {
                r.connectMicros = connectMicros(c)
                if let ch = t.clientHelloTime, let done = t.handshakeDoneTime, done >= ch { r.tlsHandshakeMicros = done.micros(since: ch) }
            }
            if let first = x.responseStart { r.ttfbMicros = first.micros(since: x.start) }
            if let end = x.responseEnd {
                r.endedAt = end
                r.latencyMicros = end.micros(since: x.start)
            } else if c.resetTime != nil {
                r.outcome = .reset
                r.error = "connection reset before a response"
            } else {
                r.outcome = .noResponse
                r.error = reason == .endOfCapture ? "capture ended before a response" : "connection closed without a response"
            }
            owner.emit(r)
        }
    }

    /// A call read from decrypted TLS carries its connection's TLS facts; the handshake time goes on
    /// the connection's first call only.
    private func stampDecrypted(_ r: inout CallRecord, _ c: TCPConnection, _ tls: TLSAnalyser) {
        r.scheme = "https"
        r.visibility = .decrypted
        r.sni = tls.clientHello?.serverName
        r.alpn = tls.serverHello?.alpn ?? tls.encryptedALPN
        r.alpnOffered = tls.clientHello.map { $0.alpnNames.isEmpty ? nil : $0.alpnNames } ?? nil
        r.tlsVersion = tls.serverHello.map { TLSNames.version($0.version) }
        r.tlsCipher = tls.serverHello.map { TLSNames.cipher($0.cipherSuite) }
        if httpCalls == 0, let ch = tls.clientHelloTime, let done = tls.handshakeDoneTime, done >= ch {
            r.tlsHandshakeMicros = done.micros(since: ch)
        }
        if r.host == nil { r.host = Self.hostName(r.sni) }
        r.url = Self.url(r, port: c.serverPort)
    }

    /// scheme://host[:port]path, the port only when it is not the scheme's default.
    static func url(_ r: CallRecord, port: UInt16) -> String? {
        guard let path = r.path, let host = r.host, let scheme = r.scheme else { return nil }
        let defaultPort = (scheme == "https" && port == 443) || (scheme == "http" && port == 80)
        return "\(scheme)://\(host)\(defaultPort ? "" : ":\(port)")\(path)"
    }

    /// One call per finished HTTP/2 stream.
    private func emitHTTP2(_ c: TCPConnection, _ a: HTTP2Analyser?, tls: TLSAnalyser?, finishing: FinishReason? = nil) {
        guard let a else { return }
        for st in a.takeCompleted() {
            var r = http2Record(c, st, finishing: finishing)
            if let tls { stampDecrypted(&r, c, tls) }
            if r.url == nil { r.url = Self.url(r, port: c.serverPort) }
            if httpCalls == 0 { r.connectMicros = connectMicros(c) } else { r.connectMicros = nil }
            r.weirds += a.weirds.map(\.rawValue)
            owner.emit(r)
            httpCalls += 1
        }
    }

    private func http2Record(_ c: TCPConnection, _ st: HTTP2Stream, finishing: FinishReason?) -> CallRecord {
        let start = st.requestStart ?? st.responseStart ?? c.firstSeen
        var r = base(c, kind: .http, ts: start)
        r.visibility = .plaintext
        r.scheme = st.scheme ?? "http"
        r.streamId = Int(st.id)
        r.httpVersion = st.upgraded ? "1.1→2" : "2"
        r.method = st.method
        r.path = st.path.map(Redaction.target)
        r.host = Self.hostName(st.authority) ?? owner.dnsName(for: c.server)
        r.statusCode = st.status
        r.requestContentType = st.requestContentType
        if let session = Self.sessionFromHeaders(st.sessionHints) {
            r.sessionId = session
            r.attribution = .exact
        }
        r.responseContentType = st.responseContentType
        r.requestBodyBytes = st.requestBodyBytes
        if st.status != nil { r.responseBodyBytes = st.responseBodyBytes }
        if let end = st.responseEnd { r.endedAt = end; r.latencyMicros = end.micros(since: start) }
        if let first = st.responseStart { r.ttfbMicros = first.micros(since: start) }
        if st.afterGap {
            r.outcome = .incomplete
            r.error = "capture gap earlier on the connection: headers unreliable"
        } else if let code = st.resetCode, !(st.responseComplete && code == 0) {
            r.outcome = .reset
            r.error = "RST_STREAM \(HTTP2Analyser.errorName(code)) from \(st.resetByClient ? "client" : "server")"
        } else if let code = st.goAwayCode {
            r.outcome = .noResponse
            r.error = "GOAWAY \(HTTP2Analyser.errorName(code)): stream not processed"
        } else if st.responseComplete, let status = st.status {
            if status >= 400 { r.outcome = .httpError; r.error = "HTTP \(status)" }
        } else if c.resetTime != nil {
            r.outcome = .reset
            r.error = "connection reset"
        } else if st.status != nil {
            r.outcome = .incomplete
            r.error = finishing == .endOfCapture ? "capture ended during the response" : "response cut short"
        } else {
            r.outcome = .noResponse
            r.error = finishing == .endOfCapture ? "capture ended before a response" : "connection closed without a response"
        }
        return r
    }

    private func emitInnerHTTP(_ c: TCPConnection, finishing: FinishReason? = nil) {
        guard let inner = innerHTTP, let tls else { return }
        for x in inner.takeCompleted() {
            var r = httpRecord(c, x, finishing: finishing)
            stampDecrypted(&r, c, tls)
            owner.emit(r)
            httpCalls += 1
        }
    }

    private func startHTTP() {
        proto = .http
        var limits = owner.options.http
        if owner.options.summaries { limits.summaryBytes = owner.options.summaryBytes }
        http = HTTP1Analyser(limits: limits, budget: owner.parserBudget)
    }

    // MARK: Records

    private func base(_ c: TCPConnection, kind: CallKind, ts: Nanos) -> CallRecord {
        var r = CallRecord(kind: kind, ts: ts)
        r.connectionId = communityID
        r.clientIp = clientText
        r.clientPort = Int(c.clientPort)
        r.serverIp = serverText
        r.serverPort = Int(c.serverPort)
        r.estimated = c.midStream
        return r
    }

    /// A session named by the request itself (`baggage: session.id=…` or `x-session-id`) decides.
    static func sessionFromHeaders(_ hints: [String: String]) -> String? {
        if let baggage = hints["baggage"] {
            for member in baggage.split(separator: ",") {
                let kv = member.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces) == "session.id" {
                    let v = kv[1].trimmingCharacters(in: .whitespaces)
                    return v.removingPercentEncoding ?? v
                }
            }
        }
        return hints["x-session-id"]
    }

    private var connectMicros: (TCPConnection) -> Int64? = { c in
        guard let syn = c.synTime, let synAck = c.synAckTime, synAck >= syn else { return nil }
        return synAck.micros(since: syn)
    }

    private func emitHTTP(_ c: TCPConnection, finishing: FinishReason? = nil) {
        guard let http else { return }
        for x in http.takeCompleted() {
            if x.switchedProtocols { switchedExchange = Box(x) }
            owner.emit(httpRecord(c, x, finishing: finishing))
            httpCalls += 1
        }
    }

    private func httpRecord(_ c: TCPConnection, _ x: HTTPExchange, finishing: FinishReason?) -> CallRecord {
        let start = x.requestStart ?? x.responseStart ?? c.firstSeen
        var r = base(c, kind: .http, ts: start)
        r.visibility = .plaintext
        r.scheme = "http"
        if let req = x.request {
            r.method = req.method.isEmpty ? nil : req.method
            r.httpVersion = req.version.isEmpty ? nil : req.version
            r.requestContentType = req.contentType
            let target = req.target.isEmpty ? nil : Redaction.target(req.target)
            r.path = target.map(Self.pathPart)
            r.host = Self.hostName(req.host) ?? Self.hostFromAbsoluteTarget(req.target) ?? owner.dnsName(for: c.server)
            r.url = Self.url(r, port: c.serverPort)
            r.requestBodyBytes = x.requestBodyBytes
            r.weirds += req.weirds.map(\.rawValue)
            if let session = Self.sessionFromHeaders(req.sessionHints) {
                r.sessionId = session
                r.attribution = .exact
            }
        } else {
            r.host = owner.dnsName(for: c.server)
        }
        if let resp = x.response {
            r.statusCode = resp.status
            r.responseContentType = resp.contentType
            if r.httpVersion == nil { r.httpVersion = resp.version }
            r.weirds += resp.weirds.map(\.rawValue)
        }
        if x.responseComplete || x.response != nil { r.responseBodyBytes = x.responseBodyBytes }
        if let end = x.responseEnd { r.endedAt = end; r.latencyMicros = end.micros(since: start) }
        if let first = x.responseStart { r.ttfbMicros = first.micros(since: start) }
        if httpCalls == 0 {
            r.connectMicros = connectMicros(c)
        }
        r.weirds += x.weirds.map(\.rawValue)
        r.missedBytes = x.missedBytes
        if owner.options.summaries {
            r.requestSummary = Redaction.summary(contentType: x.request?.contentType, bytes: x.requestBodyPrefix,
                                                 totalBytes: x.requestBodyBytes)
            r.responseSummary = Redaction.summary(contentType: x.response?.contentType, bytes: x.responseBodyPrefix,
                                                  totalBytes: x.responseBodyBytes)
        }
        // Outcome.
        if x.responseComplete, let status = x.response?.status {
            if x.missedBytes > 0 {
                r.outcome = .incomplete
                r.error = "\(x.missedBytes) bytes missing from the capture"
            } else if status >= 400 {
                r.outcome = .httpError
                r.error = "HTTP \(status)"
            }
        } else if x.missedBytes > 0 || r.weirds.contains(Weird.gapInHeaders.rawValue) {
            r.outcome = .incomplete
            r.error = "capture gap inside the exchange"
        } else if c.resetTime != nil, let by = c.resetBy {
            r.outcome = .reset
            r.error = by == .toClient ? "connection reset by server" : "connection reset by client"
            if let t = c.resetTime { r.endedAt = t; r.latencyMicros = t.micros(since: start) }
        } else if x.response != nil {
            r.outcome = .incomplete
            r.error = finishing == .endOfCapture ? "capture ended during the response" : "response cut short"
        } else if x.request != nil && c.missedBytes[Direction.toClient.rawValue] > 0 {
            // The server did send something, but it fell into a hole in the capture.
            r.outcome = .incomplete
            r.error = "response lost in a capture gap"
        } else if x.request != nil {
            r.outcome = .noResponse
            r.error = finishing == .endOfCapture ? "capture ended before a response" : "connection closed without a response"
        }
        return r
    }

    private func tlsRecord(_ c: TCPConnection, _ t: TLSAnalyser, reason: FinishReason) -> CallRecord {
        let start = c.synTime ?? c.firstSeen
        var r = base(c, kind: .tls, ts: start)
        r.visibility = .encrypted
        r.scheme = "https"
        if let ch = t.clientHello {
            r.sni = ch.serverName
            r.alpnOffered = ch.alpn.isEmpty ? nil : ch.alpnNames
            r.ja4 = JA4.fingerprint(ch)
        }
        r.host = Self.hostName(r.sni) ?? owner.dnsName(for: c.server)
        if let sh = t.serverHello {
            r.tlsVersion = TLSNames.version(sh.version)
            r.tlsCipher = TLSNames.cipher(sh.cipherSuite)
            r.alpn = sh.alpn ?? t.encryptedALPN
        }
        if t.decryptedRecords > 0 { r.visibility = .decrypted }
        if let der = t.serverCertificate, let cert = try? Certificate(derEncoded: der) {
            r.certSubject = cert.subject.description
            let names = (try? cert.extensions.subjectAlternativeNames)??.compactMap { name -> String? in
                if case let .dnsName(n) = name { return n }
                return nil
            }
            r.certSan = names.map { Array($0.prefix(32)) }
        }
        let end = c.lastSeen
        r.endedAt = end
        r.latencyMicros = end.micros(since: start)
        r.connectMicros = connectMicros(c)
        if let ch = t.clientHelloTime, let done = t.handshakeDoneTime, done >= ch {
            r.tlsHandshakeMicros = done.micros(since: ch)
        }
        let firstData = t.firstApplicationData
        if let up = firstData[0], let down = firstData[1], down >= up { r.ttfbMicros = down.micros(since: up) }
        r.bytesSent = c.bytes[0]
        r.bytesReceived = c.bytes[1]
        r.missedBytes = c.totalMissedBytes
        r.weirds = t.weirds.map(\.rawValue)
        // Outcome.
        let closed = reason != .endOfCapture || c.wasClosed
        if let alert = t.alerts.first(where: { $0.isFatal }) {
            r.outcome = .tlsFailed
            r.error = alert.name + (alert.fromClient ? " (from client)" : " (from server)")
        } else if t.sawGap && t.handshakeDoneTime == nil {
            r.outcome = .incomplete
            r.error = "capture gap during the handshake"
        } else if t.serverHello == nil {
            if closed || c.resetTime != nil {
                r.outcome = .tlsFailed
                r.error = c.resetTime != nil ? "handshake aborted by reset before ServerHello" : "connection closed before ServerHello"
            } else {
                r.outcome = .incomplete
                r.error = "capture ended during the handshake"
            }
        } else if t.isTLS13 && !t.isDecrypting {
            // Alerts after ServerHello are encrypted: a client that sent nothing beyond its Finished
            // (or an alert in its place) and then closed, failed the handshake.
            if t.clientEncryptedRecords < 2 && closed {
                r.outcome = .tlsFailed
                r.error = "encrypted alert"
            }
        } else if t.handshakeDoneTime == nil {
            if closed {
                r.outcome = .tlsFailed
                r.error = c.resetTime != nil ? "handshake aborted by reset" : "handshake aborted"
            } else {
                r.outcome = .incomplete
                r.error = "capture ended during the handshake"
            }
        }
        return r
    }

    /// A record for a connection that carried no recognised calls: a failed connect (refused,
    /// timeout) or an established connection of an unknown protocol.
    private func connectRecord(_ c: TCPConnection, reason: FinishReason) -> CallRecord? {
        let start = c.synTime ?? c.firstSeen
        var r = base(c, kind: .connect, ts: start)
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
        r.connectMicros = connectMicros(c)
        if c.bytes[0] + c.bytes[1] == 0 && c.midStream { return nil }
        return r
    }

    // MARK: Helpers

    /// Lower-case host without port.
    static func hostName(_ raw: String?) -> String? {
        guard var h = raw?.trimmingWhitespace(), !h.isEmpty else { return nil }
        if h.hasPrefix("[") {
            if let close = h.firstIndex(of: "]") { h = String(h[h.index(after: h.startIndex)..<close]) }
        } else if let colon = h.lastIndex(of: ":"), h.firstIndex(of: ":") == colon {
            h = String(h[..<colon])
        }
        if h.hasSuffix(".") { h.removeLast() }
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
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
