import CallModel
import Core
import Decode
import Source
import Foundation
import Pipeline
import Testing

/// The bundled capture, recorded with real clients in network namespaces (Scripts/make-sample).
@Suite struct SampleCaptureTests {
    static let sample = Corpus.packageRoot.appendingPathComponent("Samples/agent-demo.pcap").path

    @Test func everyKindOfFailureIsACall() throws {
        let calls = try Analyzer.analyzeFile(Self.sample).calls
        func find(_ kind: CallKind, _ where: (CallRecord) -> Bool) -> CallRecord? { calls.first { $0.kind == kind && `where`($0) } }

        let models = find(.http) { $0.path == "/v1/models" && $0.host == "api.agent.test" }
        #expect(models?.outcome == .ok && models?.statusCode == 200 && models?.method == "GET")
        #expect(models?.url == "http://api.agent.test/v1/models")
        #expect(find(.http) { $0.path == "/v1/models?api_key=REDACTED" } != nil)
        #expect(find(.http) { $0.path == "/missing" }?.outcome == .httpError)
        #expect(find(.http) { $0.path?.hasPrefix("/v1/chat/completions?limited") == true }?.statusCode == 429)
        let slow = try #require(find(.http) { $0.path == "/slow" })
        #expect((slow.latencyMicros ?? 0) >= 400_000)
        let stream = try #require(find(.http) { $0.path == "/stream" })
        #expect(stream.responseContentType == "text/event-stream" && stream.responseBodyBytes == 3 * 15)
        #expect(find(.http) { $0.path == "/reset" }?.outcome == .reset)
        let post = try #require(find(.http) { $0.method == "POST" && $0.statusCode == 200 })
        #expect(post.requestContentType == "application/json" && (post.requestBodyBytes ?? 0) > 0)

        let tls = calls.filter { $0.kind == .tls }
        #expect(tls.count == 2)
        #expect(tls.allSatisfy { $0.sni == "secure.agent.test" && $0.tlsVersion == "1.3" && $0.ja4?.hasPrefix("t13d") == true })
        #expect(tls.contains { $0.outcome == .ok && $0.tlsHandshakeMicros != nil })
        #expect(tls.contains { $0.outcome == .tlsFailed && $0.error?.hasPrefix("unknown_ca") == true })

        #expect(find(.connect) { $0.serverPort == 9 }?.outcome == .refused)
        #expect(find(.connect) { $0.serverIp == "10.213.7.3" }?.outcome == .timeout)
        #expect(find(.dns) { $0.host == "typo-api.agent.test" }?.outcome == .dnsFailed)
        #expect(find(.dns) { $0.host == "api.agent.test" && $0.dnsQtype == "AAAA" }?.outcome == .ok) // NODATA beside A
        #expect(!calls.contains { $0.host?.hasSuffix("cluster.local") == true }) // search-list noise folded
        #expect(calls.map(\.ts) == calls.map(\.ts).sorted())
    }

    @Test func sessionTagAndHostExclusion() throws {
        var options = AnalysisOptions()
        options.sessionId = "s-42"
        options.excludeHosts = ["agent.test"]
        let calls = try Analyzer.analyzeFile(Self.sample, options: options).calls
        #expect(!calls.isEmpty && calls.allSatisfy { $0.sessionId == "s-42" })
        #expect(!calls.contains { $0.host?.hasSuffix("agent.test") == true })
    }
}

/// Outcomes built from hand-made packets through the whole pipeline.
@Suite struct OutcomeTests {
    final class Feed {
        var calls: [CallRecord] = []
        var analyzer: Analyzer!
        var time: Nanos = 1_700_000_000_000_000_000
        let client = IPAddress(v4: 0x0A00_0002), server = IPAddress(v4: 0xC633_6407)

        init() { analyzer = Analyzer { [unowned self] in calls.append($0) } }

        func tcp(_ toServer: Bool, seq: UInt32, flags: TCPFlags = [.ack], _ payload: [UInt8] = [], dt: Nanos = 1_000_000) {
            time += dt
            payload.withUnsafeBytes { raw in
                analyzer.process(DecodedPacket(timestamp: time, src: toServer ? client : server, dst: toServer ? server : client,
                                               srcPort: toServer ? 41000 : 443, dstPort: toServer ? 443 : 41000,
                                               transport: .tcp, flags: flags, seq: seq, payload: raw, wireLength: payload.count))
            }
        }

        static func record(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { [type, 3, 3, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body }
    }

    static func clientHello() -> [UInt8] {
        let name = Array("api.example.com".utf8)
        let sni: [UInt8] = [0, 0, 0, UInt8(name.count + 5), 0, UInt8(name.count + 3), 0, 0, UInt8(name.count)] + name
        let sv: [UInt8] = [0, 0x2B, 0, 3, 2, 3, 4]
        let exts = sni + sv
        let body: [UInt8] = [3, 3] + Array(repeating: 1, count: 32) + [0, 0, 2, 0x13, 0x01, 1, 0, 0, UInt8(exts.count)] + exts
        return [1, 0, 0, UInt8(body.count)] + body
    }

    static func serverHello13() -> [UInt8] {
        let body: [UInt8] = [3, 3] + Array(repeating: 2, count: 32) + [0, 0x13, 0x01, 0, 0, 6, 0, 0x2B, 0, 2, 3, 4]
        return [2, 0, 0, UInt8(body.count)] + body
    }

    @Test func tls13ClosedAfterServerHelloIsAnEncryptedAlert() {
        let f = Feed()
        f.tcp(true, seq: 0, flags: [.syn])
        f.tcp(false, seq: 0, flags: [.syn, .ack])
        let ch = Feed.record(22, Self.clientHello())
        f.tcp(true, seq: 1, ch)
        let sh = Feed.record(22, Self.serverHello13()) + Feed.record(20, [1]) + Feed.record(23, Array(repeating: 0, count: 60))
        f.tcp(false, seq: 1, sh)
        let alert = Feed.record(23, Array(repeating: 0, count: 19)) // an encrypted alert looks like any record
        f.tcp(true, seq: 1 + UInt32(ch.count), flags: [.ack, .fin], alert)
        f.tcp(false, seq: 1 + UInt32(sh.count), flags: [.ack, .fin])
        f.analyzer.finish()
        let r = f.calls.first { $0.kind == .tls }
        #expect(r?.outcome == .tlsFailed && r?.error == "encrypted alert")
        #expect(r?.sni == "api.example.com" && r?.tlsVersion == "1.3" && r?.visibility == .encrypted)
        #expect(r?.connectMicros == 1000)
    }

    @Test func resetDuringTheHandshakeAndCaptureEndingMidRequest() {
        let f = Feed()
        f.tcp(true, seq: 0, flags: [.syn])
        f.tcp(false, seq: 0, flags: [.syn, .ack])
        f.tcp(true, seq: 1, Feed.record(22, Self.clientHello()))
        f.tcp(false, seq: 1, flags: [.rst, .ack])
        f.analyzer.finish()
        #expect(f.calls.first?.outcome == .tlsFailed)
        #expect(f.calls.first?.error?.contains("reset") == true)
    }
}
