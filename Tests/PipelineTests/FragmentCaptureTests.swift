import CallModel
import Core
import Decode
import Foundation
import Pipeline
import Source
import Testing

/// Datagrams the kernel fragmented on a veth with a low MTU (Scripts/make-frag-captures,
/// Tests/Fixtures/captures/fragments.pcap): a DNS answer of 180 A records over IPv4 in six fragments of
/// 600 bytes, one of 100 AAAA records over IPv6 in three of 1,280, and an aioquic handshake whose 1,200-byte
/// Initial packets each went in three IPv4 fragments. Read as `calltap read` reads it.
@Suite struct FragmentCaptureTests {
    static let path = Corpus.packageRoot.appendingPathComponent("Tests/Fixtures/captures/fragments.pcap").path

    @Test func largeDNSAnswersAreReassembledAndParsed() throws {
        let result = try Analyzer.analyzeFile(Self.path, options: AnalysisOptions())
        let dns = result.calls.filter { $0.kind == .dns }
        #expect(dns.map(\.dnsQtype) == ["A", "AAAA"])
        let a = try #require(dns.first), aaaa = try #require(dns.last)
        #expect(a.host == "big.frag.test" && a.outcome == .ok && a.dnsRcode == "NOERROR")
        #expect(a.serverIp == "10.215.0.53" && a.clientIp == "10.215.0.10")
        #expect(a.dnsAnswers?.count == 180)
        #expect(a.dnsAnswers?.first == "A 10.215.1.1" && a.dnsAnswers?.last == "A 10.215.1.180")
        #expect(aaaa.host == "big.frag.test" && aaaa.outcome == .ok && aaaa.serverIp == "fd00:215::53")
        #expect(aaaa.dnsAnswers?.count == 100)
        #expect(aaaa.dnsAnswers?.first == "AAAA fd00:215::1:1" && aaaa.dnsAnswers?.last == "AAAA fd00:215::1:64")
        // The answer ends with its last fragment (the capture's 7th and 11th packets).
        let times = try Self.packetTimes()
        #expect(a.endedAt == times[6] && aaaa.endedAt == times[10])
    }

    @Test func aQUICHandshakeInFragmentsIsRead() throws {
        let result = try Analyzer.analyzeFile(Self.path, options: AnalysisOptions())
        let quic = try #require(result.calls.first { $0.kind == .quic })
        #expect(quic.sni == "frag.agent.test" && quic.host == "frag.agent.test")
        #expect(quic.alpnOffered == ["h3"] && quic.ja4 == QUICCaptureTests.aioquicJA4)
        // From the server's Initial, itself in three fragments.
        #expect(quic.tlsVersion == "1.3" && quic.tlsCipher == "TLS_AES_256_GCM_SHA384")
        #expect(quic.clientPort == 40005 && quic.outcome == .ok)
    }

    @Test func fragmentCountersAreExact() throws {
        let s = try Analyzer.analyzeFile(Self.path, options: AnalysisOptions()).stats
        // 6 + 3 fragments of DNS answers, 3 × 3 of QUIC packets; 5 datagrams, each then one UDP packet.
        #expect(s.packets == 24 && s.ipFragments == 18 && s.ipDatagramsReassembled == 5)
        #expect(s.udpPackets == 24 - 18 + 5)
        let givenUp: [Int] = [s.ipFragmentsDuplicate, s.ipFragmentsOverlapping, s.ipFragmentsInvalid, s.ipFragmentsTimedOut,
                              s.ipFragmentsOverCap]
        #expect(givenUp == [0, 0, 0, 0, 0])
        #expect(s.calls == 3 && s.dnsUnanswered == 0)
        let names = s.fields.map(\.0)
        for name in ["ip_datagrams_reassembled", "ip_fragments_duplicate", "ip_fragments_overlapping",
                     "ip_fragments_invalid", "ip_fragments_timed_out", "ip_fragments_over_cap"] {
            #expect(names.contains(name))
        }
    }

    /// The same packets with the fragments of every datagram in reverse order (as a router may deliver
    /// them): the same calls.
    @Test func fragmentsInReverseOrderGiveTheSameCalls() throws {
        let reader = try PcapFileReader(path: Self.path)
        var frames: [([UInt8], Int, Nanos)] = []
        _ = reader.forEach { frame, length, ts in frames.append((Array(frame), length, ts)) }
        // Each run of fragments of one datagram, reversed: the first fragment, with the UDP header, comes last.
        var reordered: [([UInt8], Int, Nanos)] = []
        var i = 0
        while i < frames.count {
            guard let key = Self.fragmentKey(frames[i].0) else {
                reordered.append(frames[i])
                i += 1
                continue
            }
            var j = i
            while j < frames.count && Self.fragmentKey(frames[j].0) == key { j += 1 }
            reordered += frames[i..<j].reversed()
            i = j
        }
        #expect(reordered.count == frames.count)
        var calls: [CallRecord] = []
        let analyzer = Analyzer(options: AnalysisOptions()) { calls.append($0) }
        var decoder = PacketDecoder(linkType: reader.linkType)
        for (frame, length, ts) in reordered {
            frame.withUnsafeBytes { if let p = decoder.decode($0, wireLength: length, timestamp: ts) { analyzer.process(p) } }
        }
        decoder.finish()
        analyzer.finish()
        #expect(decoder.counters.fragments.reassembled == 5)
        #expect(calls.map(\.kind) == [.dns, .dns, .quic])
        #expect(calls.first?.dnsAnswers?.count == 180 && calls[1].dnsAnswers?.count == 100)
        #expect(calls.last?.sni == "frag.agent.test")
    }

    static func packetTimes() throws -> [Nanos] {
        var times: [Nanos] = []
        _ = try PcapFileReader(path: path).forEach { _, _, ts in times.append(ts) }
        return times
    }

    /// The identification of an Ethernet frame's IPv4 fragment or IPv6 Fragment header (nil for a whole packet).
    static func fragmentKey(_ f: [UInt8]) -> [UInt8]? {
        guard f.count > 62 else { return nil }
        if f[12] == 0x08 && f[13] == 0x00 && (Int(f[20]) << 8 | Int(f[21])) & 0x3FFF != 0 { return Array(f[18..<20]) }
        if f[12] == 0x86 && f[13] == 0xDD && f[20] == 44 { return Array(f[58..<62]) }
        return nil
    }
}
