import CallModel
import Foundation
import Pipeline
import Testing

/// Accuracy at scale: a capture from ../shared/benchdata/gen_pcap.py (--mb 20) against its ground truth.
@Suite struct GeneratedCaptureTests {
    struct Generated {
        var pcap: String
        var truth: [[String: Any]]
    }

    /// Tests of this suite run in parallel: the capture is generated once, under a lock, into a private
    /// directory and moved into place only when complete, so no test reads a half-written file.
    static let generation = NSLock()

    static func generate() throws -> Generated {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-gen-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let prefix = dir.appendingPathComponent("s20").path
        try generation.withLock {
            guard !FileManager.default.fileExists(atPath: prefix + ".truth.jsonl") else { return }
            let work = dir.appendingPathComponent("partial-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let generator = Corpus.root.deletingLastPathComponent().appendingPathComponent("benchdata/gen_pcap.py").path
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", generator, "--mb", "20", "--seed", "1", "--out", work.appendingPathComponent("s20").path]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "gen_pcap.py failed")
            // The truth file last: its presence means both are complete.
            try FileManager.default.moveItem(atPath: work.appendingPathComponent("s20.pcap").path, toPath: prefix + ".pcap")
            try FileManager.default.moveItem(atPath: work.appendingPathComponent("s20.truth.jsonl").path, toPath: prefix + ".truth.jsonl")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: prefix + ".truth.jsonl"))
        let truth = try data.split(separator: 0x0A).filter { !$0.isEmpty }.map {
            try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] ?? [:]
        }
        return Generated(pcap: prefix + ".pcap", truth: truth)
    }

    static func micros(_ v: Any?) -> Int64? {
        (v as? NSNumber).map { Int64(($0.doubleValue * 1_000_000).rounded()) }
    }

    /// "10.20.0.15:37171" or "[fd00::15]:37171" → (address, port).
    static func endpoint(_ s: String?) -> (String, Int) {
        guard let s, let colon = s.lastIndex(of: ":") else { return ("", 0) }
        var host = String(s[..<colon])
        if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
        return (host, Int(s[s.index(after: colon)...]) ?? 0)
    }

    static func key(_ client: String?, _ server: String?) -> String {
        let c = endpoint(client), s = endpoint(server)
        return "\(c.0)|\(c.1)|\(s.0)|\(s.1)"
    }

    static func key(_ r: CallRecord) -> String {
        "\(r.clientIp ?? "")|\(r.clientPort ?? 0)|\(r.serverIp ?? "")|\(r.serverPort ?? 0)"
    }

    @Test func everyTruthRecordMatches() throws {
        let gen = try Self.generate()
        let result = try Analyzer.analyzeFile(gen.pcap)
        #expect(result.read.damage == nil)
        var http = result.calls.filter { $0.kind == .http && !$0.estimated } // estimates are checked below
        var tls = result.calls.filter { $0.kind == .tls }
        var dns = result.calls.filter { $0.kind == .dns }
        var failedConnects = result.calls.filter { $0.kind == .connect }
        var counts = [String: (matched: Int, total: Int)]()
        func tally(_ type: String, _ ok: Bool) {
            var e = counts[type] ?? (0, 0)
            e.total += 1
            if ok { e.matched += 1 }
            counts[type] = e
        }
        for row in gen.truth {
            switch row.str("type") {
            case "http":
                let k = Self.key(row.str("client"), row.str("server"))
                let start = Self.micros(row["ts_start"])
                let path = Redaction.target(row.str("path") ?? "")
                guard let i = http.firstIndex(where: {
                    Self.key($0) == k && $0.ts / 1000 == start && $0.method == row.str("method") && $0.path == path
                })
                else {
                    Issue.record("http: no call for \(row.str("method") ?? "") \(path) at \(start ?? 0) on \(k)")
                    tally("http", false)
                    continue
                }
                let c = http.remove(at: i)
                var ok = c.path == path
                ok = ok && c.host == (row.str("host").map { String($0.split(separator: ":")[0]) })
                if let status = row.int("status") {
                    ok = ok && c.statusCode == status && c.outcome == (status >= 400 ? .httpError : .ok)
                    ok = ok && c.requestBodyBytes == row.int("req_body_bytes") && c.responseBodyBytes == row.int("resp_body_bytes")
                    ok = ok && c.endedAt.map { $0 / 1000 } == Self.micros(row["ts_end"])
                    ok = ok && c.ttfbMicros == Self.micros(row["ts_resp_start"]).map { $0 - start! }
                } else {
                    ok = ok && c.outcome == .reset && c.statusCode == nil
                }
                #expect(ok, "http: \(row) vs \(CallJSON.line(c))")
                tally("http", ok)
            case "tls":
                let k = Self.key(row.str("client"), row.str("server"))
                guard let i = tls.firstIndex(where: { Self.key($0) == k && $0.ts / 1000 == Self.micros(row["ts_start"]) }) else {
                    Issue.record("tls: no record on \(k)")
                    tally("tls", false)
                    continue
                }
                let c = tls.remove(at: i)
                var ok = c.sni == row.str("sni") && c.tlsVersion == row.str("version") && c.outcome == .ok
                ok = ok && c.alpnOffered == (row["alpn_offered"] as? [String]) && c.alpn == row.str("alpn")
                ok = ok && c.endedAt.map { $0 / 1000 } == Self.micros(row["ts_end"])
                ok = ok && c.bytesSent == row.int("bytes_c2s") && c.bytesReceived == row.int("bytes_s2c")
                if let ch = Self.micros(row["ts_client_hello"]), let done = Self.micros(row["ts_handshake_done"]) {
                    ok = ok && c.tlsHandshakeMicros == done - ch
                }
                #expect(ok, "tls: \(row) vs \(CallJSON.line(c))")
                tally("tls", ok)
            case "dns":
                let k = Self.key(row.str("client"), row.str("server"))
                let name = row.str("name") ?? ""
                let found = dns.firstIndex { Self.key($0) == k && $0.host == name && $0.ts / 1000 == Self.micros(row["ts"]) }
                let rcode = row.str("rcode")
                // Search-list expansion (name.<search domain>) NXDOMAINs fold into the final lookup.
                let searchNoise = rcode == "NXDOMAIN" && name.hasSuffix("cluster.local")
                if searchNoise {
                    #expect(found == nil, "dns: search-list NXDOMAIN \(name) should be folded")
                    tally("dns (folded noise)", found == nil)
                    continue
                }
                guard let i = found else {
                    Issue.record("dns: no record for \(name) on \(k)")
                    tally("dns", false)
                    continue
                }
                let c = dns.remove(at: i)
                let answers = (row["answers"] as? [[String: Any]]) ?? []
                var ok = c.dnsRcode == rcode && c.dnsQtype == row.str("qtype")
                ok = ok && (c.dnsAnswers ?? []) == answers.map { "\($0.str("type") ?? "") \($0.str("data") ?? "")" }
                ok = ok && c.endedAt.map { $0 / 1000 } == Self.micros(row["ts_response"])
                let expectFailure = rcode == "NXDOMAIN"
                    || (answers.isEmpty && !gen.truth.contains { o in
                        o.str("type") == "dns" && o.str("name") == name && o.str("qtype") != row.str("qtype")
                            && !((o["answers"] as? [Any])?.isEmpty ?? true)
                    })
                ok = ok && c.outcome == (expectFailure ? .dnsFailed : .ok)
                #expect(ok, "dns: \(row) vs \(CallJSON.line(c))")
                tally("dns", ok)
            case "connect_failed":
                let k = Self.key(row.str("client"), row.str("server"))
                guard let i = failedConnects.firstIndex(where: { Self.key($0) == k }) else {
                    Issue.record("connect_failed: no record on \(k)")
                    tally("connect_failed", false)
                    continue
                }
                let c = failedConnects.remove(at: i)
                let ok = c.outcome.rawValue == row.str("kind") && c.ts / 1000 == Self.micros(row["ts"])
                #expect(ok, "connect_failed: \(row) vs \(CallJSON.line(c))")
                tally("connect_failed", ok)
            default:
                break
            }
        }
        #expect(http.isEmpty, "extra http calls: \(http.prefix(3).map(CallJSON.line))")
        #expect(tls.isEmpty, "extra tls records: \(tls.count)")
        #expect(dns.isEmpty, "extra dns records: \(dns.prefix(3).map(CallJSON.line))")
        #expect(failedConnects.isEmpty, "extra connect records: \(failedConnects.prefix(3).map(CallJSON.line))")
        for (type, c) in counts.sorted(by: { $0.key < $1.key }) {
            print("gen_pcap --mb 20: \(type) \(c.matched)/\(c.total)")
            #expect(c.matched == c.total, "\(type): \(c.matched)/\(c.total)")
        }
        #expect((counts["http"]?.total ?? 0) > 800)
    }

    /// Without keys, HTTP/1.1-only TLS connections get one estimated call per exchange.
    @Test func estimatedExchangesOverTLSWithoutKeys() throws {
        let gen = try Self.generate()
        let calls = try Analyzer.analyzeFile(gen.pcap).calls.filter { $0.kind == .http && $0.estimated }
        #expect(calls.allSatisfy { $0.visibility == .encrypted && $0.method == nil && $0.statusCode == nil && $0.scheme == "https" })
        var perConnection: [String: Int] = [:]
        for c in calls { perConnection["\(c.clientIp ?? "")|\(c.clientPort ?? 0)", default: 0] += 1 }
        var exact = 0, total = 0
        for row in gen.truth where row.str("type") == "tls" {
            let offered = row["alpn_offered"] as? [String]
            let http1Only = row.str("alpn").map { $0 == "http/1.1" } ?? !(offered?.contains("h2") ?? false)
            guard http1Only else { continue }
            let c = Self.endpoint(row.str("client"))
            total += 1
            if perConnection["\(c.0)|\(c.1)"] == row.int("requests") { exact += 1 }
        }
        print("gen_pcap --mb 20: estimated exchanges exact on \(exact)/\(total) HTTP/1.1-only TLS connections")
        #expect(total > 40 && Double(exact) >= 0.95 * Double(total))
    }
}

