import Analysers
import Core
import Decode
import Source
import CallModel
import Foundation
import Pipeline
import Testing

/// Real clients writing their TLS secrets (curl, Python httpx, Node fetch) against nginx, recorded by
/// Scripts/make-https-sample: TLS 1.2 and 1.3, HTTP/1.1 and HTTP/2, AES-GCM and ChaCha20.
@Suite struct HTTPSSampleTests {
    static let prefix = Corpus.packageRoot.appendingPathComponent("Samples/https-demo").path

    static func expected() throws -> [[String: Any]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: prefix + ".expected.jsonl"))
        return try data.split(separator: 0x0A).filter { !$0.isEmpty }.map {
            try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] ?? [:]
        }
    }

    @Test func everyCallIsDecryptedWithMethodHostPathAndStatus() throws {
        let keyLog = KeyLog()
        keyLog.add(text: try String(contentsOfFile: Self.prefix + ".keylog", encoding: .utf8))
        #expect(keyLog.malformedLines == 0)
        var options = AnalysisOptions()
        options.keyLog = keyLog
        let calls = try Analyzer.analyzeFile(Self.prefix + ".pcap", options: options).calls
        var http = calls.filter { $0.kind == .http }
        let want = try Self.expected()
        #expect(want.count == 11)
        for row in want {
            guard let i = http.firstIndex(where: {
                $0.method == row.str("method") && $0.path == row.str("path") && $0.statusCode == row.int("status")
                    && $0.httpVersion == row.str("http_version") && $0.tlsVersion == row.str("tls")
            }) else {
                Issue.record("no decrypted call for \(row)")
                continue
            }
            let c = http.remove(at: i)
            #expect(c.host == "api.tls.test" && c.sni == "api.tls.test" && c.visibility == .decrypted && c.scheme == "https")
            #expect(c.url?.hasPrefix("https://api.tls.test/") == true)
            #expect((c.statusCode ?? 0) >= 400 ? c.outcome == .httpError : c.outcome == .ok)
        }
        #expect(http.isEmpty, "unexpected calls: \(http.map { "\($0.method ?? "") \($0.path ?? "")" })")
        let tls = calls.filter { $0.kind == .tls }
        #expect(tls.allSatisfy { $0.visibility == .decrypted && $0.outcome == .ok })
        #expect(Set(tls.compactMap(\.tlsCipher)).isSuperset(of: ["TLS_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]))
        // The leaf certificate: decrypted in TLS 1.3 (a resumed session shows none).
        let certified = tls.filter { $0.certSubject == "CN=api.tls.test" && $0.certSan == ["api.tls.test"] }
        #expect(certified.count >= tls.count - 1)
        // Secrets never reach a record.
        #expect(!calls.map(CallJSON.line).joined().contains("sk-demo"))
    }

    @Test func withoutKeysHostTimingAndFailuresRemain() throws {
        let calls = try Analyzer.analyzeFile(Self.prefix + ".pcap").calls
        let tls = calls.filter { $0.kind == .tls }
        #expect(tls.count == 9)
        #expect(tls.allSatisfy { $0.host == "api.tls.test" && $0.visibility == .encrypted && $0.tlsHandshakeMicros != nil
            && $0.connectMicros != nil && $0.outcome == .ok })
        // TLS 1.2 sends its certificate in the clear.
        #expect(tls.filter { $0.tlsVersion == "1.2" }.allSatisfy { $0.certSubject == "CN=api.tls.test" })
        #expect(tls.filter { $0.tlsVersion == "1.3" }.allSatisfy { $0.certSubject == nil })
        // HTTP/1.1-only connections get estimated exchanges; HTTP/2-capable ones only their connection record.
        let estimated = calls.filter { $0.kind == .http && $0.estimated }
        #expect(estimated.count == 6)
        #expect(estimated.allSatisfy { $0.method == nil && $0.ttfbMicros != nil && $0.latencyMicros != nil })
    }

    /// Keys that show up after the handshake (a daemon following a key log) still decrypt: records
    /// wait, bounded, until the key log grows.
    @Test func keysArrivingLateStillDecrypt() throws {
        let keyText = try String(contentsOfFile: Self.prefix + ".keylog", encoding: .utf8)
        let keyLog = KeyLog() // empty at first
        var options = AnalysisOptions()
        options.keyLog = keyLog
        var calls: [CallRecord] = []
        let analyzer = Analyzer(options: options) { calls.append($0) }
        let reader = try PcapFileReader(path: Self.prefix + ".pcap")
        var decoder = PacketDecoder(linkType: reader.linkType)
        var packets = 0
        _ = reader.forEach { frame, len, ts in
            packets += 1
            // Each connection's secrets appear a little after its handshake: here, every 40 packets.
            if packets % 40 == 0 { keyLog.add(text: keyText) }
            if let p = decoder.decode(frame, wireLength: len, timestamp: ts) { analyzer.process(p) }
        }
        keyLog.add(text: keyText)
        analyzer.finish()
        let decrypted = calls.filter { $0.kind == .http && $0.visibility == .decrypted }
        #expect(decrypted.count == 11)
    }
}

