import Core

/// Drops the second copy of a packet seen on several interfaces at once (with `-i any`: a veth and the
/// bridge it is enslaved to, say). Two packets are the same when their addresses, ports, TCP sequence
/// and acknowledgement numbers, flags and lengths match within `window`; a real retransmission comes
/// at least a retransmission timeout later. Fixed memory: a small table of recent packets, no allocation.
public struct DuplicateFilter {
    private var hashes: [UInt64]
    private var times: [Nanos]
    private let mask: Int
    public let window: Nanos
    public private(set) var duplicates = 0

    public init(slots: Int = 4096, window: Nanos = 1_000_000) {
        var n = 1
        while n < slots { n <<= 1 }
        hashes = Array(repeating: 0, count: n)
        times = Array(repeating: 0, count: n)
        mask = n - 1
        self.window = window
    }

    /// True when `p` repeats a packet seen within the window.
    public mutating func isDuplicate(_ p: DecodedPacket) -> Bool {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ v: UInt64) { h = (h ^ v) &* 0x0000_0100_0000_01B3 }
        mix(p.src.high); mix(p.src.low); mix(p.dst.high); mix(p.dst.low)
        mix(UInt64(p.srcPort) << 16 | UInt64(p.dstPort))
        mix(UInt64(p.seq) << 32 | UInt64(p.ack))
        mix(UInt64(p.flags.rawValue) << 32 | UInt64(p.transport.rawValue) << 24 | UInt64(truncatingIfNeeded: p.wireLength))
        if p.transport == .udp, let first = p.payload.first { mix(UInt64(first) << 8 | UInt64(p.payload.count)) }
        if h == 0 { h = 1 }
        let slot = Int(truncatingIfNeeded: h) & mask
        if hashes[slot] == h && p.timestamp.minus(times[slot]) <= window && p.timestamp >= times[slot] {
            duplicates += 1
            return true
        }
        hashes[slot] = h
        times[slot] = p.timestamp
        return false
    }
}
