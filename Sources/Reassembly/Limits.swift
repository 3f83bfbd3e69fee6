import Core
import Decode

/// Caps and timeouts of the reassembler. Every cap that drops or skips data is counted in `ReassemblyCounters`.
public struct ReassemblyLimits: Sendable {
    /// Connections tracked at once; beyond it the idlest are evicted (counted) to make room.
    public var maxConnections = 40_960
    /// Out-of-order bytes held per connection before the first hole is given up as a gap.
    public var maxPendingBytesPerConnection = 4 << 20
    /// Out-of-order bytes held across all connections.
    public var maxPendingBytesTotal = 32 << 20
    /// Out-of-order segments held per direction.
    public var maxPendingSegmentsPerDirection = 2048
    /// Idle time after which an established connection is finished.
    public var idleTimeout: Nanos = 300 * 1_000_000_000
    /// Idle time after which an unanswered handshake is finished (its outcome is `timeout`).
    public var handshakeTimeout: Nanos = 30 * 1_000_000_000
    /// How long a closed connection lingers to absorb late ACKs and retransmissions.
    public var closedLinger: Nanos = 5 * 1_000_000_000
    public init() {}
}

public struct ReassemblyCounters: Sendable {
    public var connections = 0
    public var midStreamConnections = 0
    public var retransmittedSegments = 0
    public var retransmittedBytes = 0
    public var outOfOrderSegments = 0
    public var gaps = 0
    public var missedBytes = 0
    /// Holes given up because a pending-bytes or pending-segments cap was reached.
    public var pendingCapFlushes = 0
    public var evictedIdle = 0
    public var evictedForCapacity = 0
    public var packetsAfterClose = 0
    /// RSTs followed by more data (forged or ignored by the endpoints).
    public var ignoredResets = 0
    public var maxConcurrentConnections = 0
    public init() {}
}
