import Core

/// Caps and timeout of IP fragment reassembly. Every fragment given up is counted in `FragmentCounters`.
public struct FragmentLimits: Sendable {
    /// Datagrams being put back together at once; a new one beyond it gives the oldest up.
    public var maxDatagrams = 4_096
    /// Bytes all datagrams in progress may hold together (their fragments' data and bookkeeping); a fragment
    /// that would go beyond it gives the oldest other datagrams up.
    public var maxBytes = 16 << 20
    /// Time from a datagram's first fragment after which it is given up, in capture time: Linux's
    /// `ipfrag_time` default (https://docs.kernel.org/networking/ip-sysctl.html, ipfrag_time).
    public var timeout: Nanos = 30_000_000_000
    /// A fragment of a datagram completed less than this long before is a copy of one already used — the
    /// same packet captured on a second interface (`-i any`: a veth and its bridge) — and is dropped as a
    /// duplicate rather than starting a datagram that could only time out. The window of `DuplicateFilter`.
    public var copyWindow: Nanos = 1_000_000
    public init() {}
}

/// What became of IP fragments. Each fragment handed to the reassembler ends up in exactly one of
/// `fragmentsReassembled`, `duplicate`, `overlapping`, `invalid`, `timedOut` and `overCap`, or is still
/// held (`PacketDecoder.fragmentsHeld`).
public struct FragmentCounters: Sendable, Equatable {
    /// Datagrams put back together and decoded as if they had arrived whole.
    public var reassembled = 0
    /// The fragments those datagrams were made of.
    public var fragmentsReassembled = 0
    /// Fragments lying wholly inside data already held: dropped, their datagram kept (as Linux does); and
    /// copies of fragments of a datagram just completed (see `FragmentLimits.copyWindow`).
    public var duplicate = 0
    /// Fragments of datagrams discarded because two of their fragments overlapped (RFC 5722; Linux for
    /// IPv4 too since 4.19).
    public var overlapping = 0
    /// Fragments of datagrams discarded as inconsistent: empty, data past the end the last fragment gave,
    /// two last fragments with different ends; and IPv6 fragments other than the last whose length is not
    /// a multiple of 8 (dropped alone).
    public var invalid = 0
    /// Fragments of datagrams still incomplete 30 s (capture time) after their first fragment, or when the
    /// input ended.
    public var timedOut = 0
    /// Fragments of datagrams given up at a cap: datagrams in progress, bytes held, or a datagram larger
    /// than IP allows (65,535 bytes).
    public var overCap = 0
    public init() {}

    public mutating func add(_ o: FragmentCounters) {
        reassembled += o.reassembled
        fragmentsReassembled += o.fragmentsReassembled
        duplicate += o.duplicate
        overlapping += o.overlapping
        invalid += o.invalid
        timedOut += o.timedOut
        overCap += o.overCap
    }
}

/// Puts IPv4 and IPv6 datagrams back together from their fragments, with Linux's rules:
/// - datagrams are keyed by source, destination, protocol and identification for IPv4 (RFC 791) and by
///   source, destination and identification for IPv6 (RFC 8200 §4.5);
/// - a fragment overlapping data already held discards the whole datagram (RFC 5722 §4 for IPv6, and
///   Linux since 4.19 for IPv4 too), except one lying wholly inside a run of data already held, which is
///   dropped alone as a duplicate, keeping the datagram — RFC 5722 erratum 3089 ("duplicates should be
///   ignored") as `inet_frag_queue_insert` implements it, runs included
///   (https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/tree/net/ipv4/inet_fragment.c):
///   a run grows only when a fragment starts where the highest run ends, anything else starts a run of
///   its own;
/// - an empty fragment, data past the end the last fragment gave, or two last fragments with different
///   ends discard the datagram (`ip_frag_queue`, net/ipv4/ip_fragment.c; `ip6_frag_queue`,
///   net/ipv6/reassembly.c); an IPv4 fragment other than the last is cut to a multiple of 8 bytes, an
///   IPv6 one that is not a multiple of 8 is dropped;
/// - a datagram is given up 30 s after its first fragment (`ipfrag_time`), here in capture time.
/// One rule is a capture's own: a fragment of a datagram completed within the last millisecond is a copy
/// captured on a second interface (`-i any`), dropped as a duplicate.
/// Memory is bounded by `FragmentLimits`: beyond a cap the oldest datagrams are given up, so a flood of
/// fragments that never complete cannot starve the datagrams that do. Nothing here runs for a packet that
/// is not a fragment.
final class FragmentReassembler {
    struct Key: Hashable {
        var src: IPAddress
        var dst: IPAddress
        var id: UInt32
        /// IPv4: the protocol. IPv6 keys have none: `ipv6Protocol`, outside the IPv4 range.
        var proto: UInt16
        static let ipv6Protocol: UInt16 = 0x100
        var isV6: Bool { proto == Self.ipv6Protocol }
    }

    /// A run of data held without a hole, as the kernel forms them.
    struct Run { var start: Int32; var end: Int32 }
    /// One fragment held: its place in the datagram, and where its captured bytes are in `Datagram.data`.
    struct Piece { var offset: Int32; var wire: Int32; var at: Int32; var captured: Int32 }

    struct Datagram {
        var key: Key
        var created: Nanos
        var older: Int32 = -1
        var newer: Int32 = -1
        /// The datagram's length, once its last fragment came (-1 before).
        var length: Int32 = -1
        /// The highest end of any fragment held.
        var highest: Int32 = 0
        /// Bytes on the wire the fragments held cover (they never overlap).
        var covered: Int32 = 0
        /// The Next Header of the first fragment (offset 0), which RFC 8200 says is the one used.
        var nextHeader: UInt8 = 0
        var fragments: Int32 = 0
        /// Some fragment was cut by the snaplen: only the data before the first cut is whole.
        var cut = false
        /// What this datagram counts against `maxBytes`.
        var bytes = 0
        var runs: [Run] = []
        var pieces: [Piece] = []
        var data: [UInt8] = []
        init(key: Key, created: Nanos) {
            self.key = key
            self.created = created
        }
    }

    enum Reason { case overlapping, invalid, timedOut, overCap }

    /// A datagram completed a moment ago, whose late copies are duplicates.
    struct Completed {
        var key: Key
        var time: Nanos
        var length: Int32
    }

    /// What a datagram in progress costs beyond its data (its slot, the index entry, three arrays), and a
    /// fragment held (its piece and run).
    static let datagramOverhead = 512
    static let fragmentOverhead = MemoryLayout<Piece>.stride + MemoryLayout<Run>.stride
    /// The largest datagram payload: IPv4's 65,535 bytes less the 20-byte header put in front when it is
    /// whole again; IPv6's payload length without jumbograms.
    static let maxV4Payload = 65_535 - 20
    static let maxV6Payload = 65_535

    let limits: FragmentLimits
    private var slots: [Datagram] = []
    private var freeSlots: [Int32] = []
    private var index: [Key: Int32] = [:]
    private var oldest: Int32 = -1
    private var newest: Int32 = -1
    private(set) var datagrams = 0
    private(set) var bytes = 0
    private(set) var fragmentsHeld = 0
    /// The last datagrams completed, in a ring.
    private var completed: [Completed]
    private var nextCompleted = 0
    /// A whole datagram with its rebuilt IP header: what `add` returns points here until the next call.
    private let out: UnsafeMutableRawBufferPointer

    init(limits: FragmentLimits) {
        self.limits = limits
        out = .allocate(byteCount: 40 + Self.maxV6Payload, alignment: 8)
        let none = Key(src: IPAddress(high: 0, low: 0), dst: IPAddress(high: 0, low: 0), id: 0, proto: 0)
        completed = Array(repeating: Completed(key: none, time: .min, length: 0), count: 16)
    }

    deinit { out.deallocate() }

    /// One fragment: where its data goes (`offset`, `wireLength` bytes on the wire of which `data` were
    /// captured), whether more follow, and the Next Header of an IPv6 Fragment header. Returns the whole
    /// datagram, a plain IPv4 or IPv6 header followed by the payload, when this fragment completes it; it
    /// stays valid until the next call.
    func add(_ key: Key, offset: Int, data: UnsafeRawBufferPointer, wireLength: Int, more: Bool, nextHeader: UInt8,
             at time: Nanos, counters c: inout FragmentCounters) -> UnsafeRawBufferPointer? {
        expire(now: time, &c)
        var end = offset + wireLength
        if more && end & 7 != 0 {
            // IPv6 requires fragments other than the last to be multiples of 8 and drops them alone;
            // Linux cuts IPv4 ones down to one.
            if key.isV6 {
                c.invalid += 1
                return nil
            }
            end &= ~7
        }
        let existing = index[key]
        if end > (key.isV6 ? Self.maxV6Payload : Self.maxV4Payload) {
            if let s = existing { drop(s, .overCap, &c) }
            c.overCap += 1
            return nil
        }
        let s: Int32
        if let existing {
            s = existing
        } else {
            if end <= offset {
                c.invalid += 1
                return nil
            }
            if isCopy(key, end: end, at: time) {
                c.duplicate += 1
                return nil
            }
            s = create(key, at: time, &c)
        }
        // The last fragment fixes the length; nothing may lie past it, and it may not change.
        if !more {
            if Int32(end) < slots[Int(s)].highest || (slots[Int(s)].length >= 0 && Int32(end) != slots[Int(s)].length) {
                return discard(s, .invalid, &c)
            }
            slots[Int(s)].length = Int32(end)
        } else if slots[Int(s)].length >= 0 && Int32(end) > slots[Int(s)].length {
            return discard(s, .invalid, &c)
        }
        if end <= offset { return discard(s, .invalid, &c) }

        let start32 = Int32(offset), end32 = Int32(end)
        let place = Self.place(start32, end32, in: slots[Int(s)].runs)
        switch place {
        case .duplicate:
            c.duplicate += 1
            return nil
        case .overlap:
            return discard(s, .overlapping, &c)
        default:
            break
        }
        let wire = end - offset
        let captured = min(data.count, wire)
        let cost = captured + Self.fragmentOverhead
        if bytes + cost > limits.maxBytes && !makeRoom(for: cost, keeping: s, &c) {
            return discard(s, .overCap, &c)
        }
        do {
            let i = Int(s)
            switch place {
            case .append: slots[i].runs.append(Run(start: start32, end: end32))
            case .extendLast: slots[i].runs[slots[i].runs.count - 1].end = end32
            case .insert(let k): slots[i].runs.insert(Run(start: start32, end: end32), at: k)
            case .duplicate, .overlap: break
            }
            slots[i].pieces.append(Piece(offset: start32, wire: Int32(wire), at: Int32(slots[i].data.count), captured: Int32(captured)))
            slots[i].data.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[..<captured]))
            if captured < wire { slots[i].cut = true }
            if offset == 0 { slots[i].nextHeader = nextHeader }
            slots[i].covered += Int32(wire)
            slots[i].highest = max(slots[i].highest, end32)
            slots[i].fragments += 1
            slots[i].bytes += cost
            bytes += cost
            fragmentsHeld += 1
            guard slots[i].length >= 0 && slots[i].covered == slots[i].length else { return nil }
        }
        // Complete: no overlaps and as many bytes as the length, so every byte from 0 is there.
        let whole = assemble(slots[Int(s)])
        completed[nextCompleted] = Completed(key: key, time: time, length: slots[Int(s)].length)
        nextCompleted = (nextCompleted + 1) % completed.count
        c.reassembled += 1
        c.fragmentsReassembled += Int(slots[Int(s)].fragments)
        remove(s)
        return whole
    }

    enum Place: Equatable { case append, extendLast, insert(Int), duplicate, overlap }

    /// Where a fragment from `start` to `end` goes among the runs held, as `inet_frag_queue_insert` decides:
    /// past the highest run it extends that run when it starts where the run ends and starts a run of its
    /// own when it starts later (overlapping it if earlier); below, it is a duplicate when it lies wholly
    /// inside one run, overlaps when it touches any, and is a run of its own otherwise.
    static func place(_ start: Int32, _ end: Int32, in runs: [Run]) -> Place {
        guard let last = runs.last else { return .append }
        if end > last.end {
            if start < last.end { return .overlap }
            return start == last.end ? .extendLast : .append
        }
        // The first run ending after the fragment starts is the only one it can lie in.
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].end <= start { lo = mid + 1 } else { hi = mid }
        }
        if lo < runs.count && runs[lo].start < end {
            return start >= runs[lo].start && end <= runs[lo].end ? .duplicate : .overlap
        }
        return .insert(lo)
    }

    /// Whether a fragment ending at `end` belongs to a datagram completed within `copyWindow`.
    private func isCopy(_ key: Key, end: Int, at time: Nanos) -> Bool {
        for d in completed where d.key == key {
            let since = time.minus(d.time)
            if since >= 0 && since <= limits.copyWindow && end <= Int(d.length) { return true }
        }
        return false
    }

    /// Gives up every datagram still in progress (the input ended), counted as timed out.
    func finish(_ c: inout FragmentCounters) {
        while oldest >= 0 { drop(oldest, .timedOut, &c) }
    }

    /// Gives up the datagrams whose first fragment is older than the timeout.
    private func expire(now: Nanos, _ c: inout FragmentCounters) {
        while oldest >= 0 && now.minus(slots[Int(oldest)].created) > limits.timeout {
            drop(oldest, .timedOut, &c)
        }
    }

    private func create(_ key: Key, at time: Nanos, _ c: inout FragmentCounters) -> Int32 {
        if datagrams >= limits.maxDatagrams && oldest >= 0 { drop(oldest, .overCap, &c) }
        var d = Datagram(key: key, created: time)
        d.older = newest
        d.bytes = Self.datagramOverhead
        let s: Int32
        if let reused = freeSlots.popLast() {
            s = reused
            slots[Int(s)] = d
        } else {
            s = Int32(slots.count)
            slots.append(d)
        }
        if newest >= 0 { slots[Int(newest)].newer = s } else { oldest = s }
        newest = s
        index[key] = s
        datagrams += 1
        bytes += Self.datagramOverhead
        return s
    }

    /// Gives up the oldest datagrams other than `keep` until `cost` more bytes fit; false if they cannot.
    private func makeRoom(for cost: Int, keeping keep: Int32, _ c: inout FragmentCounters) -> Bool {
        var victim = oldest
        while bytes + cost > limits.maxBytes {
            if victim < 0 { return false }
            let next = slots[Int(victim)].newer
            if victim != keep { drop(victim, .overCap, &c) }
            victim = next
        }
        return true
    }

    /// Discards a datagram because of the fragment being added, which is counted with it.
    private func discard(_ s: Int32, _ reason: Reason, _ c: inout FragmentCounters) -> UnsafeRawBufferPointer? {
        drop(s, reason, &c)
        count(1, reason, &c)
        return nil
    }

    private func drop(_ s: Int32, _ reason: Reason, _ c: inout FragmentCounters) {
        count(Int(slots[Int(s)].fragments), reason, &c)
        remove(s)
    }

    private func count(_ n: Int, _ reason: Reason, _ c: inout FragmentCounters) {
        switch reason {
        case .overlapping: c.overlapping += n
        case .invalid: c.invalid += n
        case .timedOut: c.timedOut += n
        case .overCap: c.overCap += n
        }
    }

    private func remove(_ s: Int32) {
        let i = Int(s)
        let (older, newer) = (slots[i].older, slots[i].newer)
        if older >= 0 { slots[Int(older)].newer = newer } else { oldest = newer }
        if newer >= 0 { slots[Int(newer)].older = older } else { newest = older }
        index[slots[i].key] = nil
        datagrams -= 1
        bytes -= slots[i].bytes
        fragmentsHeld -= Int(slots[i].fragments)
        // The slot keeps no memory: its arrays go now.
        slots[i] = Datagram(key: slots[i].key, created: 0)
        freeSlots.append(s)
    }

    /// The datagram behind a rebuilt IPv4 (20-byte, no options) or IPv6 (40-byte, the first fragment's Next
    /// Header) header, in `out`. With a fragment cut by the snaplen, only what comes before the cut.
    private func assemble(_ d: Datagram) -> UnsafeRawBufferPointer {
        let length = Int(d.length)
        var captured = length
        if d.cut {
            for p in d.pieces.sorted(by: { $0.offset < $1.offset }) where p.captured < p.wire {
                captured = Int(p.offset + p.captured)
                break
            }
        }
        let header: Int
        let base = out.baseAddress!
        if d.key.isV6 {
            header = 40
            base.storeBytes(of: UInt32(0x6000_0000).bigEndian, toByteOffset: 0, as: UInt32.self)
            base.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 4, as: UInt16.self)
            base.storeBytes(of: d.nextHeader, toByteOffset: 6, as: UInt8.self)
            base.storeBytes(of: UInt8(64), toByteOffset: 7, as: UInt8.self)
            base.storeBytes(of: d.key.src.high.bigEndian, toByteOffset: 8, as: UInt64.self)
            base.storeBytes(of: d.key.src.low.bigEndian, toByteOffset: 16, as: UInt64.self)
            base.storeBytes(of: d.key.dst.high.bigEndian, toByteOffset: 24, as: UInt64.self)
            base.storeBytes(of: d.key.dst.low.bigEndian, toByteOffset: 32, as: UInt64.self)
        } else {
            header = 20
            base.storeBytes(of: UInt16(0x4500).bigEndian, toByteOffset: 0, as: UInt16.self)
            base.storeBytes(of: UInt16(20 + length).bigEndian, toByteOffset: 2, as: UInt16.self)
            base.storeBytes(of: UInt16(truncatingIfNeeded: d.key.id).bigEndian, toByteOffset: 4, as: UInt16.self)
            base.storeBytes(of: UInt16(0).bigEndian, toByteOffset: 6, as: UInt16.self)
            base.storeBytes(of: UInt8(64), toByteOffset: 8, as: UInt8.self)
            base.storeBytes(of: UInt8(truncatingIfNeeded: d.key.proto), toByteOffset: 9, as: UInt8.self)
            base.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            base.storeBytes(of: UInt32(truncatingIfNeeded: d.key.src.low).bigEndian, toByteOffset: 12, as: UInt32.self)
            base.storeBytes(of: UInt32(truncatingIfNeeded: d.key.dst.low).bigEndian, toByteOffset: 16, as: UInt32.self)
        }
        d.data.withUnsafeBytes { held in
            for p in d.pieces where Int(p.offset) < captured {
                let n = min(Int(p.captured), captured - Int(p.offset))
                guard n > 0 else { continue }
                (base + header + Int(p.offset)).copyMemory(from: held.baseAddress! + Int(p.at), byteCount: n)
            }
        }
        return UnsafeRawBufferPointer(start: base, count: header + captured)
    }
}
