@testable import Decode
import Source
import Core
import Foundation
import Testing

@Suite struct PacketDecoderTests {
    let client: [UInt8] = [10, 0, 0, 1]
    let server: [UInt8] = [93, 184, 216, 34]

    func decode(_ frame: [UInt8], link: LinkType = .ethernet, wireLength: Int? = nil) -> (DecodedPacket?, DecodeCounters, [UInt8]) {
        var d = PacketDecoder(linkType: link)
        var payload: [UInt8] = []
        let p = frame.withUnsafeBytes { raw -> DecodedPacket? in
            let p = d.decode(raw, wireLength: wireLength ?? frame.count, timestamp: 1)
            if let p { payload = Array(p.payload) }
            return p
        }
        return (p, d.counters, payload)
    }

    @Test func ethernetIPv4TCPWithPaddingTrimmed() {
        let tcp = PacketBuilder.tcp(srcPort: 40000, dstPort: 80, seq: 7, flags: 0x18, payload: Array("GET".utf8))
        // Ethernet pads short frames to 60 bytes: the IP length, not the frame, bounds the payload.
        let frame = PacketBuilder.ethernet(0x0800, PacketBuilder.ipv4(src: client, dst: server, proto: 6, payload: tcp))
            + Array(repeating: 0, count: 6)
        let (p, counters, payload) = decode(frame)
        #expect(p?.srcPort == 40000 && p?.dstPort == 80 && p?.seq == 7)
        #expect(p?.flags == [.psh, .ack])
        #expect(payload == Array("GET".utf8))
        #expect(p?.src.description == "10.0.0.1" && p?.dst.description == "93.184.216.34")
        #expect(counters.decoded == 1)
    }

    @Test func ipv4OptionsAndQinQ() {
        let tcp = PacketBuilder.tcp(srcPort: 1, dstPort: 2, seq: 0, flags: 0x02, payload: [])
        let ip = PacketBuilder.ipv4(src: client, dst: server, proto: 6, payload: tcp, options: [1, 1, 1, 0])
        let (p, _, _) = decode(PacketBuilder.ethernet(0x0800, ip, vlan: [100, 200]))
        #expect(p?.dstPort == 2 && p?.flags == [.syn])
    }

    @Test func ipv6WithHopByHopHeader() {
        let tcp = PacketBuilder.tcp(srcPort: 5000, dstPort: 443, seq: 1, flags: 0x10, payload: [0x16, 0x03, 0x01])
        let hopByHop: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0] // next header TCP, 8 bytes
        let src: [UInt8] = [0xFD, 0] + Array(repeating: 0, count: 13) + [0x15]
        let dst: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1]
        let (p, _, payload) = decode(PacketBuilder.ethernet(0x86DD, PacketBuilder.ipv6(src: src, dst: dst, next: 0, payload: hopByHop + tcp)))
        #expect(p?.dstPort == 443)
        #expect(payload == [0x16, 0x03, 0x01])
        #expect(p?.src.description == "fd00::15" && p?.dst.description == "2001:db8::1")
    }

    @Test func fragmentsAndTruncationAreCountedNotDecoded() {
        let tcp = PacketBuilder.tcp(srcPort: 1, dstPort: 2, seq: 0, flags: 0x10, payload: [1, 2, 3])
        let fragment = PacketBuilder.ethernet(0x0800, PacketBuilder.ipv4(src: client, dst: server, proto: 6, payload: tcp, fragment: 0x2000))
        let (p1, c1, _) = decode(fragment)
        #expect(p1 == nil && c1.count(.ipFragment) == 1)
        let (p2, c2, _) = decode(Array(fragment.prefix(20)))
        #expect(p2 == nil && c2.count(.truncatedHeader) == 1)
        let (p3, c3, _) = decode(PacketBuilder.ethernet(0x0806, [0, 1, 2]))
        #expect(p3 == nil && c3.count(.notIP) == 1)
    }

    @Test func snaplenCutPayloadKeepsWireLength() {
        let tcp = PacketBuilder.tcp(srcPort: 1, dstPort: 2, seq: 0, flags: 0x10, payload: Array(repeating: 7, count: 100))
        let frame = PacketBuilder.ethernet(0x0800, PacketBuilder.ipv4(src: client, dst: server, proto: 6, payload: tcp))
        let (p, counters, payload) = decode(Array(frame.prefix(frame.count - 60)), wireLength: frame.count)
        #expect(payload.count == 40)
        #expect(p?.wireLength == 100)
        #expect(counters.snapTruncated == 1)
    }

    @Test func addressFormattingFollowsRFC5952() {
        #expect(IPAddress(high: 0x2001_0DB8_0000_0000, low: 0x0000_0000_0000_0001).description == "2001:db8::1")
        #expect(IPAddress(high: 0, low: 1).description == "::1")
        #expect(IPAddress(high: 0x2001_0DB8_0000_0001, low: 0x0000_0000_0001_0000).description == "2001:db8:0:1::1:0")
        #expect(IPAddress(v4: 0x7F00_0001).isLocal)
        #expect(IPAddress(high: 0xFE80_0000_0000_0000, low: 5).isLocal)
        #expect(!IPAddress(v4: 0x0A00_0001).isLocal)
    }
}

/// Link types and file formats, read from the public corpus (TCP packet counts from tshark 4.0).
@Suite struct CaptureFileTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/corpus")

    static func tcpPackets(_ relative: String) throws -> (link: LinkType, tcp: Int, read: ReadOutcome) {
        let reader = try PcapFileReader(path: corpus.appendingPathComponent(relative).path)
        var d = PacketDecoder(linkType: reader.linkType)
        var tcp = 0
        let outcome = reader.forEach { frame, len, ts in
            if let p = d.decode(frame, wireLength: len, timestamp: ts), p.transport == .tcp { tcp += 1 }
        }
        return (reader.linkType, tcp, outcome)
    }

    @Test(arguments: [
        ("zeek/http/mixed-vlan-mpls.pcap", LinkType.ethernet, 47),
        ("other/suricata-verify/decode-sll2-01.pcap", .linuxSLL2, 5),
        ("other/suricata-verify/security-4710-01.pcap", .linuxSLL, 12),
        ("zeek/http/connect-with-header.pcap", .null, 58),
        ("wireshark/http-ooo.pcap", .ipv4, 16),
        ("other/fq/v6-http.cap", .ethernet, 10),
        ("zeek/http/cooper-grill-dvwa.pcapng", .ethernet, 48),
    ])
    func linkTypesDecodeEveryTCPPacket(file: String, link: LinkType, tcp: Int) throws {
        let r = try Self.tcpPackets(file)
        #expect(r.link == link)
        #expect(r.tcp == tcp)
        #expect(r.read.damage == nil)
    }

    @Test func truncatedFileReportsDamageAfterGoodPackets() throws {
        let source = Self.corpus.appendingPathComponent("zeek/http/pipelined-requests.pcap")
        let data = try Data(contentsOf: source)
        let cut = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-truncated-\(getpid()).pcap")
        try data.prefix(data.count - 100).write(to: cut)
        defer { try? FileManager.default.removeItem(at: cut) }
        let reader = try PcapFileReader(path: cut.path)
        let outcome = reader.forEach { _, _, _ in }
        #expect(outcome.packets > 40)
        #expect(outcome.damage?.contains("truncated") == true)
    }

    @Test func garbageFileIsAClearOpenError() throws {
        let junk = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-junk-\(getpid()).pcap")
        try Data("this is not a capture file at all".utf8).write(to: junk)
        defer { try? FileManager.default.removeItem(at: junk) }
        #expect(throws: CaptureError.self) { try PcapFileReader(path: junk.path) }
        #expect(throws: CaptureError.self) { try PcapFileReader(path: "/nonexistent/x.pcap") }
    }

    @Test func badFilterIsRejected() throws {
        let path = Self.corpus.appendingPathComponent("zeek/http/x-gzip.pcap").path
        #expect(throws: CaptureError.self) { try PcapFileReader(path: path, filter: "tcp port banana") }
        let reader = try PcapFileReader(path: path, filter: "tcp and port 80")
        #expect(reader.forEach { _, _, _ in }.packets == 7)
    }
}

@Suite struct CaptureTimestampTests {
    /// Found by fuzzing (FuzzTesting/FailCases/pcapfile): a pcapng record with a 64-bit timestamp whose
    /// seconds times 10^9 overflow Int64 trapped the reader. Such times are now refused, not computed.
    @Test func timestampsOutOfRangeAreRefused() {
        #expect(captureNanos(seconds: 1_764_000_000, fraction: 123) == 1_764_000_000_000_000_123)
        #expect(captureNanos(seconds: Int(Int64.max / 1_000_000_000) + 1, fraction: 0) == nil)
        #expect(captureNanos(seconds: Int(Int64.max / 1_000_000_000), fraction: 999_999_999) == nil)
        #expect(captureNanos(seconds: -5, fraction: 0) == -5_000_000_000)
    }
}
