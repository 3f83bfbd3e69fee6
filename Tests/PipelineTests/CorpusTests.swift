import Analysers
import Crypto
import CallModel
import Core
import Decode
import Source
import Foundation
import Pipeline
import Reassembly
import Testing

/// End-to-end: the analyser against results written by Zeek and tshark for public captures.
@Suite struct CorpusTests {
    static func options() -> AnalysisOptions {
        var o = AnalysisOptions()
        o.includeLocal = true // some corpus traces run over loopback
        return o
    }

    static func tuple(_ r: [String: Any]) -> String {
        "\(r.str("orig_h") ?? "")|\(r.int("orig_p") ?? 0)|\(r.str("resp_h") ?? "")|\(r.int("resp_p") ?? 0)"
    }

    static func tuple(_ c: CallRecord) -> String {
        "\(c.clientIp ?? "")|\(c.clientPort ?? 0)|\(c.serverIp ?? "")|\(c.serverPort ?? 0)"
    }

    static func normalizedHost(_ h: String?) -> String? {
        guard var h = h?.lowercased(), !h.isEmpty else { return nil }
        if let colon = h.lastIndex(of: ":"), !h.hasPrefix("[") { h = String(h[..<colon]) }
        return h
    }

    @Test func corpusIsPresent() throws {
        let entries = try Corpus.entries()
        #expect(entries.count >= 41, "expected the 41 captures of ../shared/corpus, found \(entries.count)")
    }

    /// Every plaintext HTTP request (Zeek baseline and tshark) is a call with the same method, target,
    /// host and status. Requests inside TLS with keys belong to decryption and are not checked here.
    /// The corpus key files of a capture, as one key log (nil when it has none).
    static func keyLog(_ entry: Corpus.Entry) throws -> KeyLog? {
        let files = (entry.meta["key_files"] as? [[String: Any]] ?? []).compactMap { $0.str("file") }
        guard !files.isEmpty else { return nil }
        let log = KeyLog()
        for f in files {
            log.add(text: try String(contentsOf: entry.capture.deletingLastPathComponent().appendingPathComponent(f), encoding: .utf8))
        }
        return log
    }

    @Test func httpMatchesZeekAndTsharkIncludingDecryptedHTTPS() throws {
        var checked = 0, extraHTTP = 0
        var decrypted = 0
        for entry in try Corpus.entries() {
            let expected = entry.rows.filter { $0.str("type") == "http" }
            guard !expected.isEmpty else { continue }
            let tlsTuples = Set(entry.rows.filter { $0.str("type") == "tls" }.map(Self.tuple))
            var options = Self.options()
            options.keyLog = try Self.keyLog(entry)
            let result = try Analyzer.analyzeFile(entry.capture.path, options: options)
            var unused = result.calls.filter { $0.kind == .http }
            let name = entry.capture.lastPathComponent
            for row in expected {
                checked += 1
                if options.keyLog != nil && tlsTuples.contains(Self.tuple(row)) { decrypted += 1 }
                let method = row.str("method")
                let uri = row.str("uri").map(Redaction.target)
                let candidates = unused.indices.filter { Self.tuple(unused[$0]) == Self.tuple(row) }
                // Zeek logs method "-" for request lines it cannot parse; then only the status is compared.
                // Zeek logs URIs percent-decoded; compare both sides decoded.
                func decoded(_ s: String?) -> String { (s ?? "").removingPercentEncoding ?? (s ?? "") }
                let match = candidates.first { i in
                    method == nil ? unused[i].method == nil : (unused[i].method == method && decoded(unused[i].path) == decoded(uri))
                } ?? (method == nil ? candidates.first : nil)
                guard let i = match else {
                    Issue.record("\(name): no call for \(method ?? "-") \(uri ?? "-") on \(Self.tuple(row)); have \(candidates.map { "\(unused[$0].method ?? "-") \(unused[$0].path ?? "-")" })")
                    continue
                }
                let call = unused.remove(at: i)
                if options.keyLog != nil && tlsTuples.contains(Self.tuple(row)) {
                    #expect(call.visibility == .decrypted && call.scheme == "https", "\(name): \(uri ?? "") decrypted")
                }
                let status = row.int("status_code")
                if status == 0 && (uri ?? "").hasSuffix("/HTTP/1.1") {
                    // methods.pcap: Zeek reads "GET /HTTP/1.1" as HTTP/0.9 and logs status 0; the server did
                    // answer with a status line (tshark: 400/403), which is what we report.
                    #expect((400...499).contains(call.statusCode ?? 0), "\(name): \(uri ?? "")")
                } else if status == 0 {
                    // Zeek logs 0 when no response was seen.
                    #expect(call.statusCode == nil, "\(name): \(uri ?? "") has no response")
                } else if let status {
                    #expect(call.statusCode == status, "\(name): status of \(method ?? "-") \(uri ?? "")")
                } else if name == "tls12-aes256gcm.pcap" {
                    // The GnuTLS test server answers "HTTP/1.0 200 OK" with a close-delimited page and the capture
                    // ends before the close: tshark reports no response; we report the status with `incomplete`.
                    #expect(call.statusCode == 200 && call.outcome == .incomplete && (call.responseBodyBytes ?? 0) > 700)
                } else {
                    #expect(call.statusCode == nil && call.outcome == .noResponse,
                            "\(name): \(method ?? "-") \(uri ?? "") has no response in the capture")
                }
                if method != nil, let host = Self.normalizedHost(row.str("host")) {
                    #expect(call.host == host, "\(name): host of \(uri ?? "")")
                }
                // http-single-conn-22.pcap: the close-delimited body is 12,630 bytes on the wire (12,649 payload
                // bytes less a 19-byte head); Zeek's log says 12,632. We report the bytes that are there.
                // pipelined-requests.pcap and x-gzip.pcap: Zeek logs the decompressed size of gzip bodies;
                // we report bytes on the wire (after de-chunking).
                if let len = row.int("response_body_len"), row.str("src") == "zeek-baseline", call.outcome == .ok,
                   !["http-single-conn-22.pcap", "pipelined-requests.pcap", "x-gzip.pcap"].contains(name) {
                    #expect(call.responseBodyBytes == len, "\(name): response body of \(uri ?? "")")
                }
            }
            // Every call we report on a connection the reference logged is one it logged too: an extra
            // or duplicated call is an error, not a pass. (Connections absent from the reference, such as
            // traffic Zeek's log leaves out, are not compared.)
            let logged = Set(expected.map(Self.tuple))
            let extra = unused.filter { logged.contains(Self.tuple($0)) && !$0.estimated }
            #expect(extra.isEmpty, "\(name): calls the reference does not have: \(extra.map { "\($0.method ?? "-") \($0.path ?? "-")" })")
            extraHTTP += extra.count
        }
        #expect(checked == 122, "checked \(checked) HTTP rows")
        #expect(extraHTTP == 0)
        print("corpus: \(checked) HTTP rows matched, \(decrypted) of them decrypted from HTTPS")
    }

    /// Every TLS connection's SNI, version and offered ALPN match.
    @Test func tlsMetadataMatches() throws {
        var checked = 0
        for entry in try Corpus.entries() {
            let expected = entry.rows.filter { $0.str("type") == "tls" }
            guard !expected.isEmpty else { continue }
            var options = Self.options()
            options.keyLog = try Self.keyLog(entry)
            let result = try Analyzer.analyzeFile(entry.capture.path, options: options)
            let name = entry.capture.lastPathComponent
            // One record per logged connection: matched records are taken from the pool, so a duplicate
            // is left over and a second row cannot match the same record.
            var pool = result.calls.filter { $0.kind == .tls }
            for row in expected {
                checked += 1
                guard let i = pool.firstIndex(where: { Self.tuple($0) == Self.tuple(row) }) else {
                    Issue.record("\(name): no tls record for \(Self.tuple(row))")
                    continue
                }
                let call = pool.remove(at: i)
                #expect(!pool.contains { Self.tuple($0) == Self.tuple(row) }, "\(name): two tls records for \(Self.tuple(row))")
                #expect(call.sni == row.str("server_name"), "\(name): SNI")
                if let v = row.str("version") {
                    let ours = "TLSv" + (call.tlsVersion ?? "").replacingOccurrences(of: ".", with: "")
                    #expect(ours == v, "\(name): version \(call.tlsVersion ?? "nil") vs \(v)")
                }
                if let offered = row["alpn_offered"] as? [String] {
                    #expect(call.alpnOffered == offered, "\(name): ALPN offered")
                }
                // The selected ALPN: from ServerHello, or (TLS 1.3) from EncryptedExtensions once decrypted.
                #expect(call.alpn == row.str("alpn") ?? row.str("next_protocol"), "\(name): ALPN selected")
                if options.keyLog != nil { #expect(call.visibility == .decrypted, "\(name): decrypted") }
            }
        }
        #expect(checked == 26)
    }

    /// Every JA4 of FoxIO's reference results: on the record for the first ClientHello of a connection,
    /// and from the analyser for every ClientHello (a second one follows a HelloRetryRequest).
    @Test func ja4MatchesFoxIO() throws {
        var checked = 0, quicRows = 0
        for entry in try Corpus.entries() where entry.capture.path.contains("/ja4/") {
            let name = entry.capture.lastPathComponent
            let hellos = try Self.clientHellos(entry.capture.path)
            let result = try Analyzer.analyzeFile(entry.capture.path, options: Self.options())
            for row in entry.rows where row.str("type") == "ja4" {
                // QUIC Initial ClientHellos (`transport: udp`, JA4 with the `q` prefix): on the quic record.
                if row.str("transport") == "udp" {
                    quicRows += 1
                    let key = Self.tuple(row)
                    let record = result.calls.first { $0.kind == .quic && Self.tuple($0) == key }
                    #expect(record?.ja4 == row.str("ja4"), "\(name) \(key) quic")
                    #expect(record?.sni == row.str("server_name"), "\(name) \(key) quic SNI")
                    #expect(record?.alpnOffered?.first == "h3", "\(name) \(key) quic ALPN")
                    continue
                }
                checked += 1
                let index = row.int("hello_index") ?? 1
                let key = Self.tuple(row)
                let seen = hellos[key] ?? []
                guard index - 1 < seen.count else {
                    Issue.record("\(name): ClientHello \(index) missing on \(key)")
                    continue
                }
                #expect(JA4.fingerprint(seen[index - 1]) == row.str("ja4"), "\(name) \(key) hello \(index)")
                if let raw = row.str("ja4_r") {
                    #expect(JA4.raw(seen[index - 1]) == raw, "\(name) \(key) hello \(index) raw")
                }
                if index == 1 {
                    let record = result.calls.first { $0.kind == .tls && Self.tuple($0) == key }
                    #expect(record?.ja4 == row.str("ja4"), "\(name) \(key) record")
                }
            }
        }
        #expect(checked == 148)
        #expect(quicRows == 3)
    }

    /// ClientHellos per connection, straight from the reassembler and the TLS analyser.
    static func clientHellos(_ path: String) throws -> [String: [ClientHello]] {
        final class Collector: TCPStreamHandler {
            let tls = TLSAnalyser()
            var onFinish: (TCPConnection, TLSAnalyser) -> Void
            init(onFinish: @escaping (TCPConnection, TLSAnalyser) -> Void) { self.onFinish = onFinish }
            func deliver(_ c: TCPConnection, _ d: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
                tls.deliver(d, data, at: time)
            }
            func gap(_ c: TCPConnection, _ d: Direction, length: Int, at time: Nanos) {
                tls.gap(d, length: length)
            }
            func endOfStream(_ c: TCPConnection, _ d: Direction, at time: Nanos) {}
            func finish(_ c: TCPConnection, reason: FinishReason) { onFinish(c, tls) }
        }
        var out: [String: [ClientHello]] = [:]
        let reassembler = Reassembler { _ in
            Collector { c, tls in
                let key = "\(c.client.description)|\(c.clientPort)|\(c.server.description)|\(c.serverPort)"
                out[key, default: []] += tls.clientHellos
            }
        }
        let reader = try PcapFileReader(path: path)
        var decoder = PacketDecoder(linkType: reader.linkType)
        _ = reader.forEach { frame, len, ts in
            if let p = decoder.decode(frame, wireLength: len, timestamp: ts), p.transport == .tcp { reassembler.process(p) }
        }
        reassembler.finishAll()
        return out
    }

    /// Every HTTP/2 stream (cleartext prior knowledge, h2c Upgrade, and over TLS 1.2/1.3 with keys) is a call
    /// with tshark's method, authority, path and status.
    @Test func http2StreamsMatchTshark() throws {
        var checked = 0
        for entry in try Corpus.entries() {
            let expected = entry.rows.filter { $0.str("type") == "http2" }
            guard !expected.isEmpty else { continue }
            var options = Self.options()
            options.keyLog = try Self.keyLog(entry)
            let result = try Analyzer.analyzeFile(entry.capture.path, options: options)
            let name = entry.capture.lastPathComponent
            for row in expected {
                checked += 1
                let stream = row.int("stream_id")
                let matches = result.calls.filter {
                    $0.kind == .http && $0.streamId == stream && $0.clientPort == row.int("orig_p") && $0.path == row.str("path")
                }
                #expect(matches.count <= 1, "\(name): \(matches.count) calls for stream \(stream ?? -1)")
                guard let call = matches.first else {
                    Issue.record("\(name): no call for stream \(stream ?? -1) \(row.str("path") ?? "")")
                    continue
                }
                #expect(call.method == row.str("method"), "\(name) stream \(stream ?? -1)")
                #expect(call.host == Self.normalizedHost(row.str("authority")), "\(name) stream \(stream ?? -1) authority")
                #expect(call.statusCode == row.int("status"), "\(name) stream \(stream ?? -1) status")
                if row.int("status") == nil { #expect(call.outcome == .noResponse) }
                #expect(call.httpVersion?.hasSuffix("2") == true)
                if options.keyLog != nil { #expect(call.visibility == .decrypted && call.scheme == "https") }
            }
        }
        #expect(checked == 11)
    }

    /// Without keys, the same HTTPS connections give one estimated call per decrypted request, starting
    /// with the record that carried it.
    @Test func estimatesWithoutKeysMatchTheDecryptedTruth() throws {
        var compared = 0
        for entry in try Corpus.entries() {
            guard let keyLog = try Self.keyLog(entry) else { continue }
            var keyed = Self.options()
            keyed.keyLog = keyLog
            let truth = try Analyzer.analyzeFile(entry.capture.path, options: keyed).calls
                .filter { $0.kind == .http && $0.visibility == .decrypted && $0.streamId == nil }
            guard !truth.isEmpty else { continue }
            let estimates = try Analyzer.analyzeFile(entry.capture.path, options: Self.options()).calls
                .filter { $0.kind == .http && $0.estimated }
            let name = entry.capture.lastPathComponent
            if name == "tls13-rfc8446.pcap" { continue } // its 0-RTT request rides in early data, before the handshake ends
            if !DecryptionSecrets.tlsKeyLogs(path: entry.capture.path).isEmpty { continue } // keys travel inside the file
            #expect(estimates.count == truth.count, "\(name)")
            #expect(estimates.map { $0.ts } == truth.map { $0.ts }, "\(name): start times")
            #expect(zip(estimates, truth).allSatisfy { $0.visibility == .encrypted && $0.sni == $1.sni && $0.connectionId == $1.connectionId },
                    "\(name): same connection, SNI")
            compared += truth.count
        }
        #expect(compared >= 20)
        print("corpus: \(compared) HTTPS requests estimated without keys, count and start time as decrypted")
    }

    /// Decrypted application data that is not HTTP, record by record, against tshark's digests.
    @Test func decryptedPayloadsMatchTshark() throws {
        var checked = 0
        for entry in try Corpus.entries() {
            let expected = entry.rows.filter { $0.str("type") == "tls_plaintext" }
            guard !expected.isEmpty, let keyLog = try Self.keyLog(entry) else { continue }
            var chunks: [String: [String]] = [:]
            let reassembler = Reassembler { _ in
                let collector = PlaintextCollector(keyLog: keyLog)
                collector.onChunk = { fromClient, digest in chunks[fromClient ? "client_to_server" : "server_to_client", default: []].append(digest) }
                return collector
            }
            let reader = try PcapFileReader(path: entry.capture.path)
            var decoder = PacketDecoder(linkType: reader.linkType)
            _ = reader.forEach { frame, len, ts in
                if let p = decoder.decode(frame, wireLength: len, timestamp: ts), p.transport == .tcp { reassembler.process(p) }
            }
            reassembler.finishAll()
            for direction in ["client_to_server", "server_to_client"] {
                let want = expected.filter { $0.str("direction") == direction }.compactMap { $0.str("sha256") }
                #expect(chunks[direction] ?? [] == want, "\(entry.capture.lastPathComponent) \(direction)")
                checked += want.count
            }
        }
        #expect(checked == 22)
    }
}

/// Feeds one connection to a TLS analyser with keys and digests each decrypted record.
final class PlaintextCollector: TCPStreamHandler {
    let tls: TLSAnalyser
    var onChunk: (Bool, String) -> Void = { _, _ in }

    init(keyLog: KeyLog) {
        tls = TLSAnalyser(keyLog: keyLog)
        tls.onPlaintext = { [unowned self] direction, data, _ in
            let fromClient = direction == .toServer
            let hex = SHA256.hash(data: Array(data)).map { String(format: "%02x", $0) }.joined()
            onChunk(fromClient, hex)
        }
    }

    func deliver(_ c: TCPConnection, _ d: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        tls.deliver(d, data, at: time)
    }
    func gap(_ c: TCPConnection, _ d: Direction, length: Int, at time: Nanos) { tls.gap(d, length: length) }
    func endOfStream(_ c: TCPConnection, _ d: Direction, at time: Nanos) {}
    func finish(_ c: TCPConnection, reason: FinishReason) {}
}
