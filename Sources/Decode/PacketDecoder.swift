import Core

/// Link-layer types calltap decodes (values as libpcap's pcap_datalink returns them on Linux).
public enum LinkType: Int32, Sendable {
    case null = 0          // BSD loopback, host byte order family
    case ethernet = 1
    case raw = 12          // DLT_RAW (LINKTYPE_RAW 101 maps here)
    case rawAlt = 14       // DLT_RAW on some BSDs
    case loop = 108        // OpenBSD loopback, network byte order family
    case linuxSLL = 113
    case rawLinktype = 101
    case ipv4 = 228
    case ipv6 = 229
    case linuxSLL2 = 276
}

/// Why a packet produced no TCP/UDP record. Each reason has its own counter. `ipFragment` counts every IP
/// fragment seen: the one that completes a datagram returns the datagram's record.
public enum SkipReason: Int, CaseIterable, Sendable {
    case notIP, ipFragment, otherTransport, malformed, truncatedHeader
}

/// Counters kept by the decoder; every packet it does not pass on is counted by reason.
public struct DecodeCounters: Sendable {
    public var packets = 0
    public var bytes = 0
    public var decoded = 0
    public var skipped = [Int](repeating: 0, count: SkipReason.allCases.count)
    /// Packets whose captured length is shorter than their length on the wire (snaplen cut).
    public var snapTruncated = 0
    /// What became of IP fragments (each is also counted once in `skipped[.ipFragment]`, as seen).
    public var fragments = FragmentCounters()
    public init() {}
    public func count(_ reason: SkipReason) -> Int { skipped[reason.rawValue] }

    /// Adds the counters of another input (several files read as one stream).
    public mutating func add(_ o: DecodeCounters) {
        packets += o.packets
        bytes += o.bytes
        decoded += o.decoded
        snapTruncated += o.snapTruncated
        for i in skipped.indices { skipped[i] += o.skipped[i] }
        fragments.add(o.fragments)
    }
}

/// Decodes one frame into a `DecodedPacket` without copying or allocating.
/// All reads go through `ByteReader`, which bounds-checks every access.
/// IP fragments go to a `FragmentReassembler` (made at the first one; copies of a decoder share it): the
/// fragment that completes a datagram returns the datagram's TCP or UDP packet as if it had arrived whole,
/// with that fragment's timestamp, its payload pointing into the reassembler's buffer until the next call
/// to `decode`. Packets that are not fragments never reach it.
public struct PacketDecoder {
    public let linkType: LinkType
    public var counters = DecodeCounters()
    public let fragmentLimits: FragmentLimits
    private var reassembler: FragmentReassembler?

    public init(linkType: LinkType, fragmentLimits: FragmentLimits = FragmentLimits()) {
        self.linkType = linkType
        self.fragmentLimits = fragmentLimits
    }

    /// Datagrams in progress, the fragments they hold and the bytes they count against `maxBytes`.
    public var fragmentsHeld: (datagrams: Int, fragments: Int, bytes: Int) {
        guard let f = reassembler else { return (0, 0, 0) }
        return (f.datagrams, f.fragmentsHeld, f.bytes)
    }

    /// The input ended: datagrams still missing fragments are given up (counted as timed out).
    public mutating func finish() {
        reassembler?.finish(&counters.fragments)
    }

    /// Decodes `frame` (captured bytes of a packet whose wire length is `wireLength`).
    /// Returns nil and counts the reason when the packet carries no TCP/UDP payload we analyse.
    public mutating func decode(_ frame: UnsafeRawBufferPointer, wireLength: Int, timestamp: Nanos) -> DecodedPacket? {
        counters.packets += 1
        counters.bytes += wireLength
        if frame.count < wireLength { counters.snapTruncated += 1 }
        let r = ByteReader(frame)
        var offset = 0
        var etherType: UInt16 = 0
        switch linkType {
        case .ethernet:
            guard let t = r.u16(12) else { return skip(.truncatedHeader) }
            etherType = t
            offset = 14
        case .linuxSLL:
            guard let t = r.u16(14) else { return skip(.truncatedHeader) }
            etherType = t
            offset = 16
        case .linuxSLL2:
            guard let t = r.u16(0) else { return skip(.truncatedHeader) }
            etherType = t
            offset = 20
        case .null, .loop:
            guard let family = r.u32(0) else { return skip(.truncatedHeader) }
            // DLT_NULL stores the family in host order of the capturing machine: accept both orders.
            let f = family > 0xFFFF ? family.byteSwapped : family
            switch f {
            case 2: etherType = 0x0800
            case 10, 24, 28, 30: etherType = 0x86DD
            default: return skip(.notIP)
            }
            offset = 4
        case .raw, .rawAlt, .rawLinktype, .ipv4, .ipv6:
            guard let first = r.u8(0) else { return skip(.truncatedHeader) }
            etherType = (first >> 4) == 6 ? 0x86DD : 0x0800
        }
        // VLAN tags (802.1Q, 802.1ad QinQ, old 0x9100) and MPLS label stacks.
        var guardCount = 0
        while guardCount < 16 {
            guardCount += 1
            switch etherType {
            case 0x8100, 0x88A8, 0x9100:
                guard let t = r.u16(offset + 2) else { return skip(.truncatedHeader) }
                etherType = t
                offset += 4
            case 0x8847, 0x8848:
                var bottom = false
                while !bottom {
                    guard let label = r.u32(offset) else { return skip(.truncatedHeader) }
                    bottom = (label & 0x100) != 0
                    offset += 4
                }
                guard let first = r.u8(offset) else { return skip(.truncatedHeader) }
                switch first >> 4 {
                case 4: etherType = 0x0800
                case 6: etherType = 0x86DD
                default: return skip(.notIP)
                }
            default:
                guardCount = 99
            }
        }
        switch etherType {
        case 0x0800: return decodeIPv4(r, offset, timestamp)
        case 0x86DD: return decodeIPv6(r, offset, timestamp)
        default: return skip(.notIP)
        }
    }

    private mutating func skip(_ reason: SkipReason) -> DecodedPacket? {
        counters.skipped[reason.rawValue] += 1
        return nil
    }

    private mutating func decodeIPv4(_ r: ByteReader, _ start: Int, _ ts: Nanos) -> DecodedPacket? {
        guard let vihl = r.u8(start), let totalLength = r.u16(start + 2), let fragField = r.u16(start + 6),
              let proto = r.u8(start + 9), let src = r.u32(start + 12), let dst = r.u32(start + 16)
        else { return skip(.truncatedHeader) }
        guard vihl >> 4 == 4 else { return skip(.malformed) }
        let headerLength = Int(vihl & 0x0F) * 4
        guard headerLength >= 20, Int(totalLength) >= headerLength else { return skip(.malformed) }
        let payloadWire = Int(totalLength) - headerLength
        // More-fragments set or a non-zero offset: a fragment.
        if fragField & 0x3FFF != 0 {
            let key = FragmentReassembler.Key(src: IPAddress(v4: src), dst: IPAddress(v4: dst),
                                              id: UInt32(r.u16(start + 4) ?? 0), proto: UInt16(proto))
            return fragment(key, offset: Int(fragField & 0x1FFF) << 3, more: fragField & 0x2000 != 0, nextHeader: proto,
                            r.slice(start + headerLength, maxLength: payloadWire), payloadWire, ts)
        }
        return decodeTransport(r, start + headerLength, payloadWire, proto,
                               IPAddress(v4: src), IPAddress(v4: dst), ts)
    }

    /// `whole`: a datagram the reassembler put back together, in which a Fragment header is malformed.
    private mutating func decodeIPv6(_ r: ByteReader, _ start: Int, _ ts: Nanos, whole: Bool = false) -> DecodedPacket? {
        guard let first = r.u8(start), let payloadLength = r.u16(start + 4), var next = r.u8(start + 6),
              let sh = r.u64(start + 8), let sl = r.u64(start + 16),
              let dh = r.u64(start + 24), let dl = r.u64(start + 32)
        else { return skip(.truncatedHeader) }
        guard first >> 4 == 6 else { return skip(.malformed) }
        var offset = start + 40
        var remaining = Int(payloadLength)
        // Walk extension headers: hop-by-hop, routing, destination options, fragment, AH.
        var hops = 0
        while hops < 8 {
            hops += 1
            switch next {
            case 0, 43, 60:
                guard let n = r.u8(offset), let len = r.u8(offset + 1) else { return skip(.truncatedHeader) }
                let size = (Int(len) + 1) * 8
                next = n; offset += size; remaining -= size
            case 44:
                guard let n = r.u8(offset), let frag = r.u16(offset + 2) else { return skip(.truncatedHeader) }
                // A non-zero offset or more fragments: a fragment. Neither: an atomic fragment (RFC 6946),
                // a whole packet.
                if frag & 0xFFF9 != 0 {
                    guard !whole else { return skip(.malformed) }
                    guard let id = r.u32(offset + 4) else { return skip(.truncatedHeader) }
                    // A payload length of 0 (a jumbogram) cannot be fragmented (RFC 2675).
                    let dataWire = remaining - 8
                    guard dataWire >= 0, payloadLength > 0 else { return skip(.malformed) }
                    let key = FragmentReassembler.Key(src: IPAddress(high: sh, low: sl), dst: IPAddress(high: dh, low: dl),
                                                      id: id, proto: FragmentReassembler.Key.ipv6Protocol)
                    return fragment(key, offset: Int(frag & 0xFFF8), more: frag & 1 != 0, nextHeader: n,
                                    r.slice(offset + 8, maxLength: dataWire), dataWire, ts)
                }
                next = n; offset += 8; remaining -= 8
            case 51:
                guard let n = r.u8(offset), let len = r.u8(offset + 1) else { return skip(.truncatedHeader) }
                let size = (Int(len) + 2) * 4
                next = n; offset += size; remaining -= size
            default:
                hops = 99
            }
        }
        guard remaining >= 0 else { return skip(.malformed) }
        return decodeTransport(r, offset, remaining, next,
                               IPAddress(high: sh, low: sl), IPAddress(high: dh, low: dl), ts)
    }

    /// Hands one fragment to the reassembler; the one that completes a datagram decodes it whole. Kept out
    /// of line: whole packets only test the fragment bits.
    @inline(never)
    private mutating func fragment(_ key: FragmentReassembler.Key, offset: Int, more: Bool, nextHeader: UInt8,
                                   _ data: UnsafeRawBufferPointer, _ wireLength: Int, _ ts: Nanos) -> DecodedPacket? {
        counters.skipped[SkipReason.ipFragment.rawValue] += 1
        let f: FragmentReassembler
        if let existing = reassembler {
            f = existing
        } else {
            f = FragmentReassembler(limits: fragmentLimits)
            reassembler = f
        }
        guard let datagram = f.add(key, offset: offset, data: data, wireLength: wireLength, more: more,
                                   nextHeader: nextHeader, at: ts, counters: &counters.fragments)
        else { return nil }
        let r = ByteReader(datagram)
        return key.isV6 ? decodeIPv6(r, 0, ts, whole: true) : decodeIPv4(r, 0, ts)
    }

    private mutating func decodeTransport(_ r: ByteReader, _ start: Int, _ wireLength: Int, _ proto: UInt8,
                                          _ src: IPAddress, _ dst: IPAddress, _ ts: Nanos) -> DecodedPacket? {
        switch proto {
        case 6:
            guard let sp = r.u16(start), let dp = r.u16(start + 2), let seq = r.u32(start + 4),
                  let ack = r.u32(start + 8), let off = r.u8(start + 12), let flags = r.u8(start + 13)
            else { return skip(.truncatedHeader) }
            let headerLength = Int(off >> 4) * 4
            guard headerLength >= 20, headerLength <= wireLength else { return skip(.malformed) }
            let payloadWire = wireLength - headerLength
            let payload = r.slice(start + headerLength, maxLength: payloadWire)
            counters.decoded += 1
            return DecodedPacket(timestamp: ts, src: src, dst: dst, srcPort: sp, dstPort: dp, transport: .tcp,
                                 flags: TCPFlags(rawValue: flags & 0x1F), seq: seq, ack: ack,
                                 payload: payload, wireLength: payloadWire)
        case 17:
            guard let sp = r.u16(start), let dp = r.u16(start + 2), let len = r.u16(start + 4)
            else { return skip(.truncatedHeader) }
            // UDP length 0 occurs with jumbograms; otherwise trust the smaller of UDP and IP lengths.
            var payloadWire = wireLength - 8
            if len >= 8 { payloadWire = min(payloadWire, Int(len) - 8) }
            guard payloadWire >= 0 else { return skip(.malformed) }
            let payload = r.slice(start + 8, maxLength: payloadWire)
            counters.decoded += 1
            return DecodedPacket(timestamp: ts, src: src, dst: dst, srcPort: sp, dstPort: dp, transport: .udp,
                                 payload: payload, wireLength: payloadWire)
        default:
            return skip(.otherTransport)
        }
    }
}

/// Bounds-checked big-endian reads over a raw buffer; every read returns nil past the end.
@usableFromInline
struct ByteReader {
    let base: UnsafeRawBufferPointer
    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    @inline(__always) func u8(_ at: Int) -> UInt8? {
        at >= 0 && at < base.count ? base[at] : nil
    }
    @inline(__always) func u16(_ at: Int) -> UInt16? {
        guard at >= 0, at + 2 <= base.count else { return nil }
        return UInt16(base[at]) << 8 | UInt16(base[at + 1])
    }
    @inline(__always) func u32(_ at: Int) -> UInt32? {
        guard at >= 0, at + 4 <= base.count else { return nil }
        return UInt32(bigEndian: base.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
    @inline(__always) func u64(_ at: Int) -> UInt64? {
        guard at >= 0, at + 8 <= base.count else { return nil }
        return UInt64(bigEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
    /// Up to `maxLength` bytes from `at`, clipped to what was captured (and empty past the end).
    @inline(__always) func slice(_ at: Int, maxLength: Int) -> UnsafeRawBufferPointer {
        guard at >= 0, at <= base.count, maxLength > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let n = min(maxLength, base.count - at)
        return UnsafeRawBufferPointer(rebasing: base[at..<(at + n)])
    }
}
