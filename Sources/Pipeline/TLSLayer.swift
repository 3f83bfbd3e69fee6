import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly
import X509

/// TLS over a stream: the handshake facts as one `kind: tls` call per connection, and — with keys — the
/// protocol inside, detected on the first decrypted bytes and driven through the same four calls as a
/// plaintext stream (data, gaps, the end of the stream, the end of the connection). Without keys,
/// HTTP/1.1 exchanges are estimated from the encrypted records.
final class TLSLayer: StreamLayer {
    private unowned let conn: ConnectionAnalysis
    let analyser: TLSAnalyser
    /// The protocol inside, once the first decrypted bytes said which.
    private var inner: StreamLayer?
    private var innerHTTP2: HTTP2Layer?
    private var innerUnknown = false

    init(_ conn: ConnectionAnalysis) {
        self.conn = conn
        analyser = TLSAnalyser(keyLog: conn.options.keyLog, budget: conn.budget)
        if conn.options.keyLog != nil {
            analyser.onPlaintext = { [unowned self] direction, data, time in
                self.decrypted(direction, data, at: time)
            }
        }
    }

    func deliver(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) -> Int? {
        analyser.deliver(d, data, at: t)
        return nil
    }

    func gap(_ d: Direction, length: Int, at t: Nanos) {
        analyser.gap(d, length: length)
        // What the lost records carried is lost to the protocol inside too.
        inner?.gap(d, length: length, at: t)
    }

    func endOfStream(_ d: Direction, at t: Nanos) {
        // A close-delimited response inside TLS ends with the connection too.
        inner?.endOfStream(d, at: t)
    }

    /// Keys that arrived late release held records (and their calls) before anything is handed out.
    func releaseHeldRecords() { analyser.finishWaitingForKeys() }

    /// HTTP/2 inside is finished with the connection's other HTTP/2 (see `ConnectionAnalysis.finish`).
    func finishInnerHTTP2(_ reason: FinishReason) { innerHTTP2?.finish(reason) }

    func finish(_ reason: FinishReason) {
        conn.stats.undecryptableRecords += analyser.droppedWhileWaitingForKeys
        if let inner, !(inner is HTTP2Layer) { inner.finish(reason) }
        conn.stats.decryptedRecords += analyser.decryptedRecords
        conn.stats.undecryptableRecords += analyser.undecryptableRecords
        if !analyser.weirds.isEmpty { conn.stats.parseErrors += analyser.weirds.filter { $0 != .tlsGap }.count }
        conn.emit(record(reason), countsAsHTTP: false)
        if !analyser.isDecrypting && analyser.isHTTP1OnlyConnection { emitEstimated(reason) }
    }

    /// Decrypted application data: the protocol inside is detected on its first bytes, then fed.
    private func decrypted(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) {
        if inner == nil && !innerUnknown {
            let looksHTTP = d == .toServer ? HTTPDetector.looksLikeRequest(data) : HTTPDetector.looksLikeResponse(data)
            let alpn = analyser.serverHello?.alpn ?? analyser.encryptedALPN
            if HTTPDetector.looksLikeHTTP2Preface(data) || alpn == "h2" {
                let h2 = HTTP2Layer(conn, parser: HTTP2Analyser(limits: conn.http2Limits, expectPreface: true, budget: conn.budget), inside: self)
                innerHTTP2 = h2
                inner = h2
            } else if looksHTTP {
                inner = HTTP1Layer(conn, inside: self)
            } else {
                innerUnknown = true
            }
        }
        _ = inner?.deliver(d, data, at: t)
    }

    /// A call read from decrypted TLS carries its connection's TLS facts; the handshake time goes on the
    /// connection's first call only.
    func stampDecrypted(_ r: inout CallRecord) {
        let tls = analyser
        r.scheme = "https"
        r.visibility = .decrypted
        r.sni = tls.clientHello?.serverName
        r.alpn = tls.serverHello?.alpn ?? tls.encryptedALPN
        r.alpnOffered = tls.clientHello.map { $0.alpnNames.isEmpty ? nil : $0.alpnNames } ?? nil
        r.tlsVersion = tls.serverHello.map { TLSNames.version($0.version) }
        r.tlsCipher = tls.serverHello.map { TLSNames.cipher($0.cipherSuite) }
        if conn.httpCalls == 0, let ch = tls.clientHelloTime, let done = tls.handshakeDoneTime, done >= ch {
            r.tlsHandshakeMicros = done.micros(since: ch)
        }
        if r.host == nil { r.host = ConnectionAnalysis.hostName(r.sni) ?? conn.tunnelHost }
        r.url = conn.url(r)
    }

    /// Without keys: one estimated call per request/response exchange seen in the encrypted records.
    private func emitEstimated(_ reason: FinishReason) {
        let c = conn.connection, t = analyser
        for (i, x) in t.estimatedExchanges.enumerated() {
            var r = conn.base(kind: .http, ts: x.start)
            r.estimated = true
            r.visibility = .encrypted
            r.scheme = "https"
            r.httpVersion = "1.1"
            r.sni = t.clientHello?.serverName
            r.alpn = t.serverHello?.alpn
            r.tlsVersion = t.serverHello.map { TLSNames.version($0.version) }
            r.host = ConnectionAnalysis.hostName(r.sni) ?? conn.tunnelHost ?? conn.dnsName(for: c.server)
            r.bytesSent = x.requestBytes
            r.bytesReceived = x.responseBytes
            if i == 0 {
                r.connectMicros = conn.connectMicros
                if let ch = t.clientHelloTime, let done = t.handshakeDoneTime, done >= ch { r.tlsHandshakeMicros = done.micros(since: ch) }
            }
            if let first = x.responseStart { r.ttfbMicros = first.micros(since: x.start) }
            if let end = x.responseEnd {
                r.endedAt = end
                r.latencyMicros = end.micros(since: x.start)
            } else if let t = c.resetTime {
                r.set((.reset, "\(CallOutcome.reset(c).1) before a response"))
                r.endedAt = t
                r.latencyMicros = t.micros(since: x.start)
            } else {
                r.set(CallOutcome.noResponse(reason))
            }
            conn.emit(r, countsAsHTTP: false)
        }
    }

    private func record(_ reason: FinishReason) -> CallRecord {
        let c = conn.connection, t = analyser
        let start = c.synTime ?? c.firstSeen
        var r = conn.base(kind: .tls, ts: start)
        r.visibility = .encrypted
        r.scheme = "https"
        if let ch = t.clientHello {
            r.sni = ch.serverName
            r.alpnOffered = ch.alpn.isEmpty ? nil : ch.alpnNames
            r.ja4 = JA4.fingerprint(ch)
        }
        r.host = ConnectionAnalysis.hostName(r.sni) ?? conn.tunnelHost ?? conn.dnsName(for: c.server)
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
        r.connectMicros = conn.connectMicros
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

}
