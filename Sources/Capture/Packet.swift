/// Capture time in nanoseconds since the Unix epoch (pcapng may carry ns; pcap carries µs).
public typealias Nanos = Int64

extension Nanos {
    /// `self - earlier`, saturating at Int64's bounds instead of trapping: capture times come from the
    /// input (per-interface offsets, damaged records), so any two of them may be ±9.2e18 ns apart.
    @inlinable public func minus(_ earlier: Nanos) -> Nanos {
        let (d, overflow) = subtractingReportingOverflow(earlier)
        return overflow ? (earlier > self ? .min : .max) : d
    }

    /// Microseconds from `start` to `self`, saturating (a duration for a call record).
    @inlinable public func micros(since start: Nanos) -> Int64 { minus(start) / 1000 }
}

/// A record's timestamp (seconds and the fraction libpcap scaled to nanoseconds) as `Nanos`, or nil when
/// a damaged or hostile file gives one outside what Int64 nanoseconds can hold (about the years 1678–2262).
@inline(__always) public func captureNanos(seconds: Int, fraction: Int) -> Nanos? {
    let (whole, overflow) = Nanos(seconds).multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow else { return nil }
    let (total, overflow2) = whole.addingReportingOverflow(Nanos(fraction))
    return overflow2 ? nil : total
}

/// An IPv4 or IPv6 address held in two words, so flow keys hash and compare without allocation.
/// IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d).
public struct IPAddress: Hashable, Sendable, Comparable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init(v4 value: UInt32) {
        high = 0
        low = 0x0000_FFFF_0000_0000 | UInt64(value)
    }

    public var isV4: Bool { high == 0 && (low >> 32) == 0x0000_FFFF }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        if isV4 {
            let v = UInt32(truncatingIfNeeded: low)
            out = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
        } else {
            out.reserveCapacity(16)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((high >> UInt64(shift)) & 0xFF)) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((low >> UInt64(shift)) & 0xFF)) }
        }
        return out
    }

    public var description: String {
        if isV4 { return dottedQuad(UInt32(truncatingIfNeeded: low)) }
        var groups: [UInt16] = []
        for shift in stride(from: 48, through: 0, by: -16) { groups.append(UInt16((high >> UInt64(shift)) & 0xFFFF)) }
        for shift in stride(from: 48, through: 0, by: -16) { groups.append(UInt16((low >> UInt64(shift)) & 0xFFFF)) }
        // RFC 5952: compress the longest run (≥ 2) of zero groups, leftmost on ties.
        var bestStart = -1, bestLen = 0, runStart = -1
        for i in 0...8 {
            if i < 8 && groups[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                let len = i - runStart
                if len > bestLen && len >= 2 { bestStart = runStart; bestLen = len }
                runStart = -1
            }
        }
        func hex(_ g: UInt16) -> String { String(g, radix: 16) }
        if bestStart < 0 { return groups.map(hex).joined(separator: ":") }
        let head = groups[0..<bestStart].map(hex).joined(separator: ":")
        let tail = groups[(bestStart + bestLen)...].map(hex).joined(separator: ":")
        return head + "::" + tail
    }

    /// "a.b.c.d" written straight into the string's storage (at most 15 bytes: no heap allocation).
    private func dottedQuad(_ v: UInt32) -> String {
        String(unsafeUninitializedCapacity: 15) { out in
            var n = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                let octet = Int((v >> UInt32(shift)) & 0xFF)
                if octet >= 100 { out[n] = UInt8(48 + octet / 100); n += 1 }
                if octet >= 10 { out[n] = UInt8(48 + octet / 10 % 10); n += 1 }
                out[n] = UInt8(48 + octet % 10); n += 1
                if shift > 0 { out[n] = UInt8(ascii: "."); n += 1 }
            }
            return n
        }
    }

    /// Loopback (127/8, ::1) and link-local (169.254/16, fe80::/10) addresses, excluded from reports by default.
    public var isLocal: Bool {
        if isV4 {
            let v = UInt32(truncatingIfNeeded: low)
            return (v >> 24) == 127 || (v >> 16) == 0xA9FE
        }
        if high == 0 && low == 1 { return true }
        return (high >> 54) == (0xFE80 >> 6)
    }
}

public enum TransportProtocol: UInt8, Sendable {
    case tcp = 6
    case udp = 17
}

/// TCP flag bits as they appear in the header.
public struct TCPFlags: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
}

/// One decoded TCP or UDP packet. `payload` points into the capture buffer and is valid only
/// for the duration of the callback that received it: nothing is copied on decode.
public struct DecodedPacket {
    public var timestamp: Nanos
    public var src: IPAddress
    public var dst: IPAddress
    public var srcPort: UInt16
    public var dstPort: UInt16
    public var transport: TransportProtocol
    public var flags: TCPFlags
    public var seq: UInt32
    public var ack: UInt32
    /// Captured payload bytes.
    public var payload: UnsafeRawBufferPointer
    /// Payload length on the wire per the IP header; larger than `payload.count` when the snaplen cut it.
    public var wireLength: Int

    public init(timestamp: Nanos, src: IPAddress, dst: IPAddress, srcPort: UInt16, dstPort: UInt16,
                transport: TransportProtocol, flags: TCPFlags = [], seq: UInt32 = 0, ack: UInt32 = 0,
                payload: UnsafeRawBufferPointer, wireLength: Int) {
        self.timestamp = timestamp
        self.src = src
        self.dst = dst
        self.srcPort = srcPort
        self.dstPort = dstPort
        self.transport = transport
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.payload = payload
        self.wireLength = wireLength
    }
}
