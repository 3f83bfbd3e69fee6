import Glibc

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

    /// 0.0.0.0 or ::.
    public var isUnspecified: Bool { (high == 0 && low == 0) || self == IPAddress(v4: 0) }

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

extension IPAddress {
    /// An address from its text ("10.0.0.1", "fd00::1", "::ffff:10.0.0.1"), or nil.
    public init?(parsing text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(v4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let b = withUnsafeBytes(of: v6) { Array($0) }
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(b[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(b[i]) }
        self.init(high: high, low: low)
    }
}
