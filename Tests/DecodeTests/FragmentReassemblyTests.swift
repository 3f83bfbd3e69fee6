@testable import Decode
import Core
import Testing

/// IPv4 and IPv6 datagrams put back together from their fragments, with Linux's rules for duplicates,
/// overlaps, inconsistent ends and timeouts, inside the caps.
@Suite struct FragmentReassemblyTests {
    static let client: [UInt8] = [10, 0, 0, 1]
    static let server: [UInt8] = [93, 184, 216, 34]
    static let client6: [UInt8] = [0xFD, 0] + Array(repeating: 0, count: 13) + [0x15]
    static let server6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1]
    static let second: Nanos = 1_000_000_000

    /// A UDP datagram from port 53 with 3,000 bytes of payload: 3,008 bytes in fragments of 1,480.
    static let payload: [UInt8] = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
    static let udp = PacketBuilder.udp(srcPort: 53, dstPort: 40000, payload: payload)
    static let pieces = [(0, 1480), (1480, 2960), (2960, 3008)]

    /// What a decoded packet said, copied at once (its payload is only valid until the next decode).
    struct Seen: Equatable {
        var timestamp: Nanos
        var srcPort: UInt16
        var dstPort: UInt16
        var transport: TransportProtocol
        var seq: UInt32
        var payload: [UInt8]
        var wireLength: Int
        var src: String
    }

    struct Feeder {
        var decoder: PacketDecoder
        var seen: [Seen] = []

        init(limits: FragmentLimits = FragmentLimits()) {
            decoder = PacketDecoder(linkType: .ethernet, fragmentLimits: limits)
        }

        /// Decodes one frame (of which only `captured` bytes are given, when set); true when it gave a packet.
        @discardableResult
        mutating func feed(_ frame: [UInt8], at t: Nanos, captured: Int? = nil) -> Bool {
            let bytes = Array(frame.prefix(captured ?? frame.count))
            let p = bytes.withUnsafeBytes { raw -> Seen? in
                guard let p = decoder.decode(raw, wireLength: frame.count, timestamp: t) else { return nil }
                return Seen(timestamp: p.timestamp, srcPort: p.srcPort, dstPort: p.dstPort, transport: p.transport,
                            seq: p.seq, payload: Array(p.payload), wireLength: p.wireLength, src: p.src.description)
            }
            if let p { seen.append(p) }
            return p != nil
        }

        var fragments: FragmentCounters { decoder.counters.fragments }

        /// Every fragment seen is reassembled, given up for one reason, or still held.
        var balanced: Bool {
            let f = fragments
            return decoder.counters.count(.ipFragment)
                == f.fragmentsReassembled + f.duplicate + f.overlapping + f.invalid + f.timedOut + f.overCap
                + decoder.fragmentsHeld.fragments
        }
    }

    static func v4(_ from: Int, _ to: Int, of datagram: [UInt8] = udp, more: Bool? = nil, id: Int = 7, proto: UInt8 = 17) -> [UInt8] {
        let mf = more ?? (to < datagram.count)
        let ip = PacketBuilder.ipv4(src: client, dst: server, proto: proto, payload: Array(datagram[from..<to]),
                                    fragment: (mf ? 0x2000 : 0) | from / 8, id: id)
        return PacketBuilder.ethernet(0x0800, ip)
    }

    static func v6(_ from: Int, _ to: Int, of datagram: [UInt8] = udp, more: Bool? = nil, id: UInt32 = 0x1234_5678,
                   next: UInt8 = 17, before: [UInt8] = [], firstNext: UInt8 = 44) -> [UInt8] {
        let mf = more ?? (to < datagram.count)
        let fragment = PacketBuilder.fragmentHeader(next: next, offset: from, more: mf, id: id)
        let ip = PacketBuilder.ipv6(src: client6, dst: server6, next: firstNext, payload: before + fragment + Array(datagram[from..<to]))
        return PacketBuilder.ethernet(0x86DD, ip)
    }

    static func v4Frames(id: Int = 7) -> [[UInt8]] { pieces.map { v4($0.0, $0.1, id: id) } }
    static func v6Frames(id: UInt32 = 0x1234_5678) -> [[UInt8]] { pieces.map { v6($0.0, $0.1, id: id) } }

    // MARK: In order, out of order

    @Test func inOrderIPv4UDPIsDecodedWholeAtTheLastFragment() throws {
        var f = Feeder()
        let frames = Self.v4Frames()
        let gave1 = f.feed(frames[0], at: 1 * Self.second)
        #expect(!gave1)
        let gave2 = f.feed(frames[1], at: 2 * Self.second)
        #expect(!gave2)
        let gave3 = f.feed(frames[2], at: 3 * Self.second)
        #expect(gave3)
        let p = try #require(f.seen.first)
        #expect(p == Seen(timestamp: 3 * Self.second, srcPort: 53, dstPort: 40000, transport: .udp, seq: 0,
                          payload: Self.payload, wireLength: 3000, src: "10.0.0.1"))
        #expect(f.decoder.counters.count(.ipFragment) == 3 && f.decoder.counters.decoded == 1)
        #expect(f.fragments.reassembled == 1 && f.fragments.fragmentsReassembled == 3)
        #expect(f.decoder.fragmentsHeld == (0, 0, 0))
        #expect(f.balanced)
    }

    @Test(arguments: [[2, 1, 0], [1, 0, 2], [2, 0, 1], [0, 2, 1]])
    func outOfOrderFragmentsComeOutWholeWithTheLastArrivalsTime(order: [Int]) {
        for v6 in [false, true] {
            var f = Feeder()
            let frames = v6 ? Self.v6Frames() : Self.v4Frames()
            for (k, i) in order.enumerated() { f.feed(frames[i], at: Nanos(10 + k) * Self.second) }
            #expect(f.seen.count == 1, "v6 \(v6) \(order)")
            #expect(f.seen.first?.payload == Self.payload && f.seen.first?.timestamp == 12 * Self.second)
            #expect(f.seen.first?.src == (v6 ? "fd00::15" : "10.0.0.1"))
            #expect(f.fragments.reassembled == 1 && f.balanced)
        }
    }

    /// Two datagrams with the same addresses but other identifications (or, for IPv4, protocols) are apart.
    @Test func datagramsAreKeyedByAddressesIdentificationAndProtocol() {
        var f = Feeder()
        let tcp = PacketBuilder.tcp(srcPort: 40000, dstPort: 80, seq: 9, flags: 0x18, payload: Array(Self.payload[..<2000]))
        let a = Self.v4Frames(id: 1), b = Self.v4Frames(id: 2)
        let c = [Self.v4(0, 1480, of: tcp, id: 1, proto: 6), Self.v4(1480, tcp.count, of: tcp, id: 1, proto: 6)]
        for frame in [a[0], b[0], c[0], a[1], b[1], c[1], b[2], a[2]] { f.feed(frame, at: Self.second) }
        #expect(f.seen.map(\.transport) == [.tcp, .udp, .udp])
        #expect(f.seen[0].seq == 9 && f.seen[0].payload == Array(Self.payload[..<2000]) && f.seen[0].dstPort == 80)
        #expect(f.seen[1].payload == Self.payload && f.seen[2].payload == Self.payload)
        #expect(f.fragments.reassembled == 3 && f.balanced)
    }

    // MARK: Duplicates and overlaps

    @Test func exactDuplicatesAreDroppedAndTheDatagramKept() {
        for v6 in [false, true] {
            var f = Feeder()
            let frames = v6 ? Self.v6Frames() : Self.v4Frames()
            for i in [0, 0, 1, 0, 1, 2] { f.feed(frames[i], at: Self.second) }
            #expect(f.seen.map(\.payload) == [Self.payload])
            #expect(f.fragments.duplicate == 3 && f.fragments.overlapping == 0 && f.balanced)
        }
    }

    /// With `-i any` each fragment may be captured twice (on a veth and on its bridge): the copies are
    /// duplicates, also those of the last fragment, which come after the datagram completed; the same
    /// identification later than the copy window is a new datagram.
    @Test func copiesFromASecondInterfaceAreDuplicates() {
        var f = Feeder()
        let frames = Self.v4Frames()
        let t0 = 5 * Self.second
        for (k, i) in [0, 0, 1, 1, 2, 2].enumerated() { f.feed(frames[i], at: t0 + Nanos(k) * 10_000) }
        #expect(f.seen.count == 1 && f.fragments.duplicate == 3 && f.decoder.fragmentsHeld.datagrams == 0)
        for frame in frames { f.feed(frame, at: t0 + 100_000) }
        #expect(f.seen.count == 1 && f.fragments.duplicate == 6 && f.decoder.fragmentsHeld.datagrams == 0)
        for frame in frames { f.feed(frame, at: t0 + 2 * Self.second) }
        #expect(f.seen.count == 2 && f.fragments.reassembled == 2 && f.balanced)
    }

    /// A fragment inside a run of fragments that arrived in order is a duplicate too, as in
    /// `inet_frag_queue_insert`, even though it matches no single fragment.
    @Test func aFragmentInsideOneRunIsADuplicate() {
        var f = Feeder()
        let frames = Self.v4Frames()
        f.feed(frames[0], at: Self.second)
        f.feed(frames[1], at: Self.second)
        f.feed(Self.v4(1000, 2000), at: Self.second)
        #expect(f.fragments.duplicate == 1)
        let gave4 = f.feed(frames[2], at: Self.second)
        #expect(gave4)
        #expect(f.seen.first?.payload == Self.payload && f.balanced)
    }

    /// Fragments that arrived out of order each start a run of their own; one spanning two runs overlaps,
    /// as in the kernel, though every byte of it is already held.
    @Test func aFragmentAcrossTwoRunsOverlapsAsInLinux() {
        var f = Feeder()
        let frames = Self.v4Frames()
        f.feed(frames[1], at: Self.second)
        f.feed(frames[0], at: Self.second)
        f.feed(Self.v4(1000, 2000), at: Self.second)
        #expect(f.fragments.overlapping == 3 && f.fragments.duplicate == 0)
        #expect(f.decoder.fragmentsHeld == (0, 0, 0))
        let gave5 = f.feed(frames[2], at: Self.second)
        #expect(!gave5)
        #expect(f.balanced)
    }

    @Test func overlappingFragmentsDiscardTheWholeDatagram() {
        for v6 in [false, true] {
            var f = Feeder()
            let frames = v6 ? Self.v6Frames() : Self.v4Frames()
            f.feed(frames[0], at: Self.second)
            // Starts inside the first fragment and goes on past it: the first byte of a teardrop.
            f.feed(v6 ? Self.v6(1400, 2880) : Self.v4(1400, 2880), at: Self.second)
            #expect(f.fragments.overlapping == 2 && f.decoder.fragmentsHeld.datagrams == 0)
            // What comes later starts a datagram that can never complete: it times out.
            let gave6 = f.feed(frames[1], at: Self.second)
            let gave7 = f.feed(frames[2], at: Self.second)
            #expect(!gave6 && !gave7)
            #expect(f.seen.isEmpty)
            f.decoder.finish()
            #expect(f.fragments.timedOut == 2 && f.balanced)
            // An overlap below the highest run too.
            var g = Feeder()
            g.feed(frames[0], at: Self.second)
            g.feed(frames[2], at: Self.second)
            g.feed(v6 ? Self.v6(8, 1488) : Self.v4(8, 1488), at: Self.second)
            #expect(g.fragments.overlapping == 3 && g.balanced)
        }
    }

    // MARK: Inconsistent fragments

    @Test func inconsistentEndsAndEmptyFragmentsAreInvalid() {
        var f = Feeder()
        let frames = Self.v4Frames()
        f.feed(frames[2], at: Self.second)
        // A second last fragment that ends elsewhere.
        f.feed(Self.v4(1480, 2000, more: false), at: Self.second)
        #expect(f.fragments.invalid == 2 && f.decoder.fragmentsHeld.datagrams == 0)
        // Data past the end the last fragment gave.
        f.feed(Self.v4(1480, 2000, more: false, id: 8), at: Self.second)
        f.feed(Self.v4(1480, 2960, id: 8), at: Self.second)
        #expect(f.fragments.invalid == 4)
        // An empty fragment, alone and within a datagram.
        f.feed(Self.v4(8, 8, more: true, id: 9), at: Self.second)
        f.feed(Self.v4(0, 1480, id: 10), at: Self.second)
        f.feed(Self.v4(1480, 1480, more: true, id: 10), at: Self.second)
        #expect(f.fragments.invalid == 7 && f.balanced)
        #expect(f.seen.isEmpty)
    }

    /// Linux cuts an IPv4 fragment other than the last to a multiple of 8 bytes; IPv6 requires it to be one
    /// and drops it alone, keeping the datagram.
    @Test func fragmentsOtherThanTheLastAreMultiplesOfEight() {
        var f = Feeder()
        f.feed(Self.v4(0, 1485, more: true), at: Self.second)
        let gave8 = f.feed(Self.v4(1480, 3008), at: Self.second)
        #expect(gave8)
        #expect(f.seen.first?.payload == Self.payload)
        var g = Feeder()
        let frames = Self.v6Frames()
        g.feed(frames[0], at: Self.second)
        g.feed(Self.v6(1480, 2481, more: true), at: Self.second)
        #expect(g.fragments.invalid == 1 && g.decoder.fragmentsHeld.datagrams == 1)
        g.feed(frames[1], at: Self.second)
        let gave9 = g.feed(frames[2], at: Self.second)
        #expect(gave9)
        #expect(g.seen.first?.payload == Self.payload && f.balanced && g.balanced)
    }

    // MARK: Timeout and caps

    @Test func aDatagramMissingItsLastFragmentTimesOutAfter30SecondsOfCaptureTime() {
        var f = Feeder()
        let frames = Self.v4Frames()
        f.feed(frames[0], at: 100 * Self.second)
        f.feed(frames[1], at: 101 * Self.second)
        // Within 30 s of the first fragment: still held.
        f.feed(Self.v4(0, 1480, id: 99), at: 129 * Self.second)
        #expect(f.fragments.timedOut == 0 && f.decoder.fragmentsHeld.datagrams == 2)
        // The timeout runs from the first fragment: a last fragment 31 s later finds nothing to complete.
        let gave10 = f.feed(frames[2], at: 131 * Self.second)
        #expect(!gave10)
        #expect(f.fragments.timedOut == 2 && f.decoder.fragmentsHeld.datagrams == 2 && f.decoder.fragmentsHeld.fragments == 2)
        f.decoder.finish()
        #expect(f.fragments.timedOut == 4 && f.decoder.fragmentsHeld == (0, 0, 0) && f.balanced)
    }

    @Test func aDatagramCompletedWithin30SecondsIsWhole() {
        var f = Feeder()
        let frames = Self.v6Frames()
        f.feed(frames[0], at: 0)
        f.feed(frames[1], at: 29 * Self.second)
        let gave11 = f.feed(frames[2], at: 30 * Self.second)
        #expect(gave11)
        #expect(f.seen.first?.timestamp == 30 * Self.second)
    }

    @Test func tooManyDatagramsGiveTheOldestUp() {
        var limits = FragmentLimits()
        limits.maxDatagrams = 4
        var f = Feeder(limits: limits)
        for id in 1...6 { f.feed(Self.v4Frames(id: id)[0], at: Nanos(id) * Self.second) }
        #expect(f.fragments.overCap == 2 && f.decoder.fragmentsHeld.datagrams == 4)
        // The newest complete; the oldest were given up, so their later fragments complete nothing.
        let six = Self.v4Frames(id: 6)
        f.feed(six[1], at: 7 * Self.second)
        let gave12 = f.feed(six[2], at: 7 * Self.second)
        #expect(gave12)
        let one = Self.v4Frames(id: 1)
        let gave13 = f.feed(one[1], at: 8 * Self.second)
        let gave14 = f.feed(one[2], at: 8 * Self.second)
        #expect(!gave13 && !gave14)
        #expect(f.seen.count == 1 && f.balanced)
    }

    @Test func bytesHeldStayWithinTheCap() {
        var limits = FragmentLimits()
        limits.maxBytes = 8_000
        var f = Feeder(limits: limits)
        for id in 1...20 {
            let frames = Self.v4Frames(id: id)
            f.feed(frames[0], at: Self.second)
            f.feed(frames[1], at: Self.second)
            #expect(f.decoder.fragmentsHeld.bytes <= limits.maxBytes)
        }
        #expect(f.fragments.overCap > 0 && f.decoder.fragmentsHeld.datagrams == 2)
        // The newest datagram is still there and completes.
        let gave15 = f.feed(Self.v4Frames(id: 20)[2], at: Self.second)
        #expect(gave15)
        #expect(f.balanced)
    }

    @Test func datagramsLargerThanIPAllowsAreOverTheCap() {
        var f = Feeder()
        let big = [UInt8](repeating: 1, count: 65_600)
        f.feed(Self.v4(0, 1480, of: big), at: Self.second)
        f.feed(Self.v4(65_512, 65_600, of: big), at: Self.second)
        #expect(f.fragments.overCap == 2 && f.decoder.fragmentsHeld.datagrams == 0)
        f.feed(Self.v6(65_528, 65_544, of: big), at: Self.second)
        #expect(f.fragments.overCap == 3 && f.balanced)
        // The largest IPv4 datagram there is still fits.
        let largest = PacketBuilder.udp(srcPort: 53, dstPort: 1, payload: [UInt8](repeating: 2, count: 65_515 - 8))
        var g = Feeder()
        var offset = 0
        while offset < largest.count {
            let end = min(largest.count, offset + 8_192)
            g.feed(Self.v4(offset, end, of: largest), at: Self.second)
            offset = end
        }
        #expect(g.seen.first?.payload.count == 65_507 && g.balanced)
    }

    // MARK: IPv6 headers, TCP, snaplen

    /// Headers before the Fragment header stay behind; those after it (here destination options) are part
    /// of the datagram and read after reassembly. Only the first fragment's Next Header counts.
    @Test func ipv6ExtensionHeadersAroundTheFragmentHeader() {
        let options: [UInt8] = [17, 0, 1, 4, 0, 0, 0, 0]
        let datagram = options + Self.udp
        let hopByHop: [UInt8] = [44, 0, 1, 4, 0, 0, 0, 0]
        var f = Feeder()
        f.feed(Self.v6(1488, datagram.count, of: datagram, next: 59, before: hopByHop, firstNext: 0), at: Self.second)
        let gave16 = f.feed(Self.v6(0, 1488, of: datagram, next: 60, before: hopByHop, firstNext: 0), at: Self.second)
        #expect(gave16)
        #expect(f.seen.first?.payload == Self.payload && f.seen.first?.dstPort == 40000 && f.balanced)
    }

    @Test func aFragmentHeaderInsideAReassembledDatagramIsMalformed() {
        let inner = PacketBuilder.fragmentHeader(next: 17, offset: 8, more: true, id: 5) + Self.udp
        var f = Feeder()
        f.feed(Self.v6(0, 1480, of: inner, next: 44), at: Self.second)
        let gave17 = f.feed(Self.v6(1480, inner.count, of: inner, next: 44), at: Self.second)
        #expect(!gave17)
        #expect(f.fragments.reassembled == 1 && f.decoder.counters.count(.malformed) == 1)
    }

    /// A fragment cut by the snaplen: the datagram's payload runs to the cut, its wire length stays whole.
    @Test func aFragmentCutByTheSnaplenLeavesTheDatagramCutThere() {
        var f = Feeder()
        let frames = Self.v4Frames()
        f.feed(frames[2], at: Self.second)
        f.feed(frames[1], at: Self.second, captured: 14 + 20 + 100)
        let gave18 = f.feed(frames[0], at: Self.second)
        #expect(gave18)
        #expect(f.seen.first?.wireLength == 3000)
        #expect(f.seen.first?.payload == Array(Self.payload[..<(1480 + 100 - 8)]))
        #expect(f.decoder.counters.snapTruncated == 1 && f.balanced)
    }

    /// Packets that are not fragments never make a reassembler: "don't fragment" and atomic fragments
    /// (an IPv6 Fragment header with offset 0 and no more fragments, RFC 6946) are whole packets.
    @Test func wholePacketsNeverReachTheReassembler() {
        var f = Feeder()
        let df = PacketBuilder.ethernet(0x0800, PacketBuilder.ipv4(src: Self.client, dst: Self.server, proto: 17,
                                                                    payload: Self.udp, fragment: 0x4000))
        let gave19 = f.feed(df, at: Self.second)
        #expect(gave19)
        let gave20 = f.feed(Self.v6(0, Self.udp.count), at: Self.second)
        #expect(gave20)
        #expect(f.seen.map(\.payload) == [Self.payload, Self.payload])
        #expect(f.decoder.counters.count(.ipFragment) == 0 && f.decoder.fragmentsHeld == (0, 0, 0))
    }
}
