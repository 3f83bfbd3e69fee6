import Core
import Decode

/// A connection's identity independent of direction: the two endpoints in a fixed order.
struct ConnectionKey: Hashable {
    var lowAddress: IPAddress
    var highAddress: IPAddress
    var lowPort: UInt16
    var highPort: UInt16

    init(_ a: IPAddress, _ ap: UInt16, _ b: IPAddress, _ bp: UInt16) {
        if (a, ap) < (b, bp) {
            lowAddress = a; lowPort = ap; highAddress = b; highPort = bp
        } else {
            lowAddress = b; lowPort = bp; highAddress = a; highPort = ap
        }
    }
}

@inline(__always) private func seqDiff(_ a: UInt32, _ b: UInt32) -> Int32 { Int32(bitPattern: a &- b) }

/// Rebuilds TCP byte streams per connection and direction: handshake facts, retransmission and overlap
/// trimming, a bounded out-of-order queue, sequence wrap, mid-stream pick-up, data in SYN, gaps, and
/// idle eviction by capture time (so replays are deterministic).
public final class Reassembler {
    public let limits: ReassemblyLimits
    public private(set) var counters = ReassemblyCounters()
    private var table: [ConnectionKey: TCPConnection] = [:]
    /// The connection of the previous packet: segments of one transfer arrive back to back, and this
    /// saves hashing the key for them.
    private var recentKey: ConnectionKey?
    private var recentConnection: TCPConnection?
    private var pendingBytesTotal = 0
    private var lastSweep: Nanos = 0
    /// Makes the stream handler of each new connection (none: the streams are tracked but not analysed).
    public var makeHandler: (TCPConnection) -> TCPStreamHandler?

    public init(limits: ReassemblyLimits = ReassemblyLimits(),
                makeHandler: @escaping (TCPConnection) -> TCPStreamHandler? = { _ in nil }) {
        self.limits = limits
        self.makeHandler = makeHandler
    }

    public var openConnections: Int { table.count }

    /// Processes one TCP packet.
    public func process(_ p: DecodedPacket) {
        let key = ConnectionKey(p.src, p.srcPort, p.dst, p.dstPort)
        let syn = p.flags.contains(.syn), ack = p.flags.contains(.ack)
        var conn = key == recentKey ? recentConnection : table[key]
        if let existing = conn, syn, !ack, existing.shouldRestart(onSynSeq: p.seq, from: p.src, port: p.srcPort) {
            // The 4-tuple is reused by a new connection.
            finishConnection(existing, key: key, reason: existing.closedAt != nil ? .closed : .idle)
            conn = nil
        }
        if conn == nil {
            if table.count >= limits.maxConnections { makeRoom(now: p.timestamp) }
            let c = startConnection(p)
            table[key] = c
            counters.connections += 1
            if table.count > counters.maxConcurrentConnections { counters.maxConcurrentConnections = table.count }
            c.handler = makeHandler(c)
            conn = c
        }
        guard let c = conn else { return }
        recentKey = key
        recentConnection = c
        c.lastSeen = p.timestamp
        c.packets += 1
        if c.finished {
            counters.packetsAfterClose += 1
            sweepIfDue(p.timestamp)
            return
        }
        let dir: Direction = (p.src == c.client && p.srcPort == c.clientPort) ? .toServer : .toClient
        segment(c, dir, p)
        if p.flags.contains(.rst) {
            // Linger rather than finish: a forged or ignored RST (bad MD5, out of window) is followed by
            // more data, which revives the connection.
            c.resetTime = c.resetTime ?? p.timestamp
            c.resetBy = c.resetBy ?? dir
            c.closedAt = p.timestamp
        } else if c.halves[0].ended && c.halves[1].ended && c.closedAt == nil {
            // Closed both ways: linger briefly so the last ACK still counts, then finish.
            c.closedAt = p.timestamp
        }
        sweepIfDue(p.timestamp)
    }

    /// Lets capture time pass without a packet (live capture): expired connections are finished.
    public func advance(to now: Nanos) {
        sweepIfDue(now)
    }

    /// Finishes every open connection (end of input).
    public func finishAll() {
        for (key, c) in table.sorted(by: { $0.value.firstSeen < $1.value.firstSeen }) {
            finishConnection(c, key: key, reason: c.resetTime != nil ? .reset : .endOfCapture)
        }
        table.removeAll()
        recentKey = nil
        recentConnection = nil
    }

    /// Earliest first-seen time among open connections, if any: nothing they report can start before it.
    public func earliestOpenConnectionStart() -> Nanos? {
        var best: Nanos?
        for c in table.values where !c.finished {
            if best == nil || c.firstSeen < best! { best = c.firstSeen }
        }
        return best
    }

    // MARK: - Connection lifecycle

    private func startConnection(_ p: DecodedPacket) -> TCPConnection {
        let syn = p.flags.contains(.syn), ack = p.flags.contains(.ack)
        let c: TCPConnection
        if syn && !ack {
            c = TCPConnection(client: p.src, clientPort: p.srcPort, server: p.dst, serverPort: p.dstPort, time: p.timestamp)
        } else if syn && ack {
            c = TCPConnection(client: p.dst, clientPort: p.dstPort, server: p.src, serverPort: p.srcPort, time: p.timestamp)
        } else {
            // Mid-stream: the lower, well-known-looking port is taken as the server.
            let srcIsServer = Self.looksLikeServerPort(p.srcPort, other: p.dstPort)
            c = srcIsServer
                ? TCPConnection(client: p.dst, clientPort: p.dstPort, server: p.src, serverPort: p.srcPort, time: p.timestamp)
                : TCPConnection(client: p.src, clientPort: p.srcPort, server: p.dst, serverPort: p.dstPort, time: p.timestamp)
            c.midStream = true
            counters.midStreamConnections += 1
        }
        return c
    }

    static func looksLikeServerPort(_ port: UInt16, other: UInt16) -> Bool {
        let ephemeralLow: UInt16 = 32768
        if port < 1024 && other >= 1024 { return true }
        if other < 1024 && port >= 1024 { return false }
        if port < ephemeralLow && other >= ephemeralLow { return true }
        if other < ephemeralLow && port >= ephemeralLow { return false }
        return port < other
    }

    private func finishConnection(_ c: TCPConnection, key: ConnectionKey, reason: FinishReason, keepLingering: Bool = false) {
        if !c.finished {
            for d in [Direction.toServer, .toClient] { flushPending(c, d, upTo: nil, time: c.lastSeen) }
            c.finished = true
            c.closedAt = c.lastSeen
            c.handler?.finish(c, reason: reason)
            c.handler = nil
        }
        if !keepLingering {
            table.removeValue(forKey: key)
            if key == recentKey { recentKey = nil; recentConnection = nil }
        }
    }

    private func sweepIfDue(_ now: Nanos) {
        guard now.minus(lastSweep) >= 1_000_000_000 else { return }
        lastSweep = now
        sweep(now: now, idleScale: 1)
    }

    /// Finishes idle connections and drops closed ones whose linger expired.
    private func sweep(now: Nanos, idleScale: Int64) {
        var expired: [(ConnectionKey, TCPConnection, FinishReason)] = []
        for (key, c) in table {
            let idle = now.minus(c.lastSeen)
            if let closedAt = c.closedAt {
                if now.minus(closedAt) >= limits.closedLinger / idleScale {
                    expired.append((key, c, c.resetTime != nil ? .reset : .closed))
                }
            } else if c.synAckTime == nil && c.bytes[0] + c.bytes[1] == 0 && !c.midStream {
                if idle >= limits.handshakeTimeout / idleScale { expired.append((key, c, .idle)) }
            } else if idle >= limits.idleTimeout / idleScale {
                expired.append((key, c, .idle))
            }
        }
        expired.sort { $0.1.firstSeen < $1.1.firstSeen }
        for (key, c, reason) in expired {
            if !c.finished && reason == .idle { counters.evictedIdle += 1 }
            if c.resetTime != nil && !c.finished { finishConnection(c, key: key, reason: .reset); continue }
            finishConnection(c, key: key, reason: reason)
        }
    }

    /// The table is full: sweep with shorter timeouts, then evict the idlest connection.
    private func makeRoom(now: Nanos) {
        sweep(now: now, idleScale: 10)
        guard table.count >= limits.maxConnections else { return }
        var victims = table.sorted { $0.value.lastSeen < $1.value.lastSeen }
        victims.removeLast(victims.count - max(1, limits.maxConnections / 16))
        for (key, c) in victims {
            counters.evictedForCapacity += 1
            finishConnection(c, key: key, reason: .capacity)
        }
    }

    // MARK: - Segments

    private func segment(_ c: TCPConnection, _ dir: Direction, _ p: DecodedPacket) {
        let syn = p.flags.contains(.syn)
        var seq = p.seq
        if syn {
            if dir == .toServer && !p.flags.contains(.ack) {
                c.synTime = c.synTime ?? p.timestamp
                c.clientISN = c.clientISN ?? p.seq
                c.synCount += 1
            } else if dir == .toClient {
                c.synAckTime = c.synAckTime ?? p.timestamp
            }
            if !c.halves[dir.rawValue].started {
                c.halves[dir.rawValue].started = true
                c.halves[dir.rawValue].nextSeq = p.seq &+ 1
            }
            seq = p.seq &+ 1 // data in a SYN (TCP Fast Open) starts after the SYN's sequence number
        }
        let d = dir.rawValue
        if !c.halves[d].started {
            if p.wireLength == 0 && !p.flags.contains(.fin) { return } // a bare ACK says nothing about our stream
            c.halves[d].started = true
            c.halves[d].nextSeq = seq
            if !c.midStream && c.synTime == nil { c.midStream = true }
        }
        if p.flags.contains(.fin) {
            c.halves[d].finSeq = seq &+ UInt32(truncatingIfNeeded: p.wireLength)
            c.finTime[d] = c.finTime[d] ?? p.timestamp
        }
        if p.wireLength > 0 {
            insert(c, dir, seq: seq, payload: p.payload, wireLength: p.wireLength, time: p.timestamp)
        }
        checkEnd(c, dir, time: p.timestamp)
    }

    private func insert(_ c: TCPConnection, _ dir: Direction, seq: UInt32, payload: UnsafeRawBufferPointer,
                        wireLength: Int, time: Nanos) {
        let d = dir.rawValue
        let rel = Int(seqDiff(seq, c.halves[d].nextSeq))
        if rel <= 0 {
            // In order, or overlapping what was already delivered: trim the old part.
            let skip = -rel
            if skip >= wireLength {
                counters.retransmittedSegments += 1
                counters.retransmittedBytes += wireLength
                return
            }
            if skip > 0 {
                counters.retransmittedBytes += skip
            }
            // A segment that fills a hole is stamped with the earliest arrival among the bytes it releases,
            // so a message whose first packet arrived late still starts when its data began to arrive.
            var stamp = time
            if let next = c.halves[d].pending.first,
               seqDiff(next.seq, c.halves[d].nextSeq &+ UInt32(truncatingIfNeeded: wireLength - skip)) <= 0 {
                stamp = min(time, next.time)
            }
            deliverFresh(c, dir, payload: payload, skip: skip, wireLength: wireLength, time: stamp)
            drainPending(c, dir, time: time)
            return
        }
        // A hole before this segment: hold a copy until it fills, within the caps.
        counters.outOfOrderSegments += 1
        var pos = c.halves[d].pending.count
        while pos > 0 && seqDiff(c.halves[d].pending[pos - 1].seq, seq) > 0 { pos -= 1 }
        if pos > 0, c.halves[d].pending[pos - 1].seq == seq, c.halves[d].pending[pos - 1].wireLength >= wireLength {
            counters.retransmittedSegments += 1
            return
        }
        c.halves[d].pending.insert(PendingSegment(seq: seq, wireLength: wireLength, data: Array(payload), time: time), at: pos)
        c.halves[d].pendingBytes += payload.count
        pendingBytesTotal += payload.count
        if c.halves[d].pendingBytes > limits.maxPendingBytesPerConnection
            || c.halves[d].pending.count > limits.maxPendingSegmentsPerDirection
            || pendingBytesTotal > limits.maxPendingBytesTotal {
            counters.pendingCapFlushes += 1
            skipToFirstPending(c, dir, time: time)
            drainPending(c, dir, time: time)
        }
    }

    /// Delivers `payload[skip...]`, reporting any bytes beyond the captured length as a gap.
    private func deliverFresh(_ c: TCPConnection, _ dir: Direction, payload: UnsafeRawBufferPointer, skip: Int,
                              wireLength: Int, time: Nanos) {
        let d = dir.rawValue
        if skip < payload.count {
            let slice = UnsafeRawBufferPointer(rebasing: payload[skip...])
            c.bytes[d] += slice.count
            if c.firstDataTime[d] == nil { c.firstDataTime[d] = time }
            c.halves[d].nextSeq = c.halves[d].nextSeq &+ UInt32(truncatingIfNeeded: slice.count)
            if let reset = c.resetTime, time > reset {
                c.resetTime = nil
                c.resetBy = nil
                c.closedAt = nil
                counters.ignoredResets += 1
            }
            c.handler?.deliver(c, dir, slice, at: time)
        }
        let uncaptured = wireLength - max(skip, payload.count)
        if uncaptured > 0 { reportGap(c, dir, length: uncaptured, time: time) }
    }

    private func reportGap(_ c: TCPConnection, _ dir: Direction, length: Int, time: Nanos) {
        let d = dir.rawValue
        counters.gaps += 1
        counters.missedBytes += length
        c.missedBytes[d] += length
        c.halves[d].nextSeq = c.halves[d].nextSeq &+ UInt32(truncatingIfNeeded: length)
        c.handler?.gap(c, dir, length: length, at: time)
    }

    /// Delivers queued segments that have become in order.
    private func drainPending(_ c: TCPConnection, _ dir: Direction, time: Nanos) {
        let d = dir.rawValue
        while let first = c.halves[d].pending.first, seqDiff(first.seq, c.halves[d].nextSeq) <= 0 {
            c.halves[d].pending.removeFirst()
            c.halves[d].pendingBytes -= first.data.count
            pendingBytesTotal -= first.data.count
            let skip = Int(-seqDiff(first.seq, c.halves[d].nextSeq))
            if skip >= first.wireLength {
                counters.retransmittedSegments += 1
                continue
            }
            counters.retransmittedBytes += skip
            first.data.withUnsafeBytes { raw in
                deliverFresh(c, dir, payload: raw, skip: skip, wireLength: first.wireLength, time: first.time)
            }
        }
    }

    /// Gives up on the hole before the first queued segment: reports it as a gap.
    private func skipToFirstPending(_ c: TCPConnection, _ dir: Direction, time: Nanos) {
        let d = dir.rawValue
        guard let first = c.halves[d].pending.first else { return }
        let hole = Int(seqDiff(first.seq, c.halves[d].nextSeq))
        if hole > 0 { reportGap(c, dir, length: hole, time: first.time) }
    }

    /// At the end of a connection: every remaining hole becomes a gap and queued data is delivered.
    private func flushPending(_ c: TCPConnection, _ dir: Direction, upTo: UInt32?, time: Nanos) {
        let d = dir.rawValue
        while !c.halves[d].pending.isEmpty {
            skipToFirstPending(c, dir, time: time)
            drainPending(c, dir, time: time)
        }
        if let fin = c.halves[d].finSeq, !c.halves[d].ended {
            let hole = Int(seqDiff(fin, c.halves[d].nextSeq))
            if hole > 0 && hole < 1 << 30 { reportGap(c, dir, length: hole, time: time) }
            checkEnd(c, dir, time: time)
        }
    }

    private func checkEnd(_ c: TCPConnection, _ dir: Direction, time: Nanos) {
        let d = dir.rawValue
        guard !c.halves[d].ended, let fin = c.halves[d].finSeq, seqDiff(c.halves[d].nextSeq, fin) >= 0 else { return }
        c.halves[d].ended = true
        c.handler?.endOfStream(c, dir, at: time)
    }
}

extension TCPConnection {
    /// A SYN on a known 4-tuple starts a new connection when the old one is closed, or when it
    /// carries a different initial sequence number than the original SYN (port reuse, not a retry).
    func shouldRestart(onSynSeq seq: UInt32, from src: IPAddress, port: UInt16) -> Bool {
        if closedAt != nil { return true }
        guard src == client && port == clientPort else { return false }
        if let isn = clientISN { return isn != seq }
        return bytes[0] + bytes[1] > 0
    }
}

private func < (a: (IPAddress, UInt16), b: (IPAddress, UInt16)) -> Bool {
    a.0 != b.0 ? a.0 < b.0 : a.1 < b.1
}
