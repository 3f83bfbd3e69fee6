import Analysers
import CallModel
import Foundation
import Pipeline
import Testing

/// QUIC handshakes between aioquic peers, recorded by Scripts/make-quic-capture
/// (Tests/Fixtures/captures/quic-initials.pcap): SNI, offered ALPN and JA4 from the client's Initial
/// packets, the TLS version and cipher from the server's.
@Suite struct QUICCaptureTests {
    static func calls() throws -> [CallRecord] {
        let path = Corpus.packageRoot.appendingPathComponent("Tests/Fixtures/captures/quic-initials.pcap").path
        return try Analyzer.analyzeFile(path, options: AnalysisOptions()).calls.filter { $0.kind == .quic }
    }

    /// aioquic's ClientHello: TLS 1.3 only, three cipher suites, seven extensions, ALPN h3 first.
    static let aioquicJA4 = "q13d0307h3_55b375c5d22e_1cecd519fee8"

    @Test func everyHandshakeIsRead() throws {
        let calls = try Self.calls()
        #expect(calls.map(\.sni) == ["api.agent.test", "big.agent.test", "retry.agent.test", "again.agent.test"])
        for call in calls {
            #expect(call.host == call.sni)
            #expect(call.ja4 == Self.aioquicJA4, "\(call.sni ?? "")")
            #expect(call.tlsVersion == "1.3", "\(call.sni ?? "")")
            #expect(call.tlsCipher == "TLS_AES_256_GCM_SHA384", "\(call.sni ?? "")")
            #expect(call.outcome == .ok)
            #expect(call.visibility == .encrypted)
            // The client's first Initial to its first Handshake packet, within the flow.
            let handshake = try #require(call.tlsHandshakeMicros)
            #expect(handshake > 0 && handshake <= call.latencyMicros!)
        }
    }

    /// A ClientHello of 91 ALPN names, in CRYPTO frames over two Initial packets.
    @Test func aClientHelloOverTwoInitialPackets() throws {
        let big = try #require(try Self.calls().first { $0.sni == "big.agent.test" })
        let offered = try #require(big.alpnOffered)
        #expect(offered.count == 91)
        #expect(offered.first == "h3")
        #expect(offered.last == "agent-protocol-089")
        #expect(big.clientPort == 40002)
    }

    /// The server at 10.217.0.12 answers with a Retry; the client's next Initial uses the Retry's id.
    @Test func afterARetry() throws {
        let retried = try #require(try Self.calls().first { $0.sni == "retry.agent.test" })
        #expect(retried.serverIp == "10.217.0.12")
        #expect(retried.alpnOffered == ["h3"])
        // aioquic's Retry carries a valid integrity tag (RFC 9001 §5.8): it is followed, not flagged.
        #expect(retried.weirds.isEmpty)
        #expect(retried.tlsCipher != nil)
    }

    /// The same client address and port used again within the idle timeout: two calls.
    @Test func aReusedAddressStartsANewCall() throws {
        let same = try Self.calls().filter { $0.clientPort == 40001 }
        #expect(same.map(\.sni) == ["api.agent.test", "again.agent.test"])
        #expect(same[0].endedAt! <= same[1].ts)
        #expect(same[0].connectionId == same[1].connectionId)
    }
}
