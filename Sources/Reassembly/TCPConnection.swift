import Core
import Decode

/// Receives a connection's reassembled byte streams. One handler per connection.
public protocol TCPStreamHandler: AnyObject {
    /// In-order bytes. `data` is valid only during the call.
    func deliver(_ connection: TCPConnection, _ direction: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos)
    /// `length` bytes of this direction were never seen (capture loss, snaplen, or a cap that gave up waiting).
    func gap(_ connection: TCPConnection, _ direction: Direction, length: Int, at time: Nanos)
    /// The sender of `direction` closed its side (FIN reached in sequence).
    func endOfStream(_ connection: TCPConnection, _ direction: Direction, at time: Nanos)
    /// The connection is over; no more calls follow.
    func finish(_ connection: TCPConnection, reason: FinishReason)
}

public enum FinishReason: Sendable {
    case closed        // FIN both ways
    case reset         // RST seen
    case idle          // evicted after the idle timeout
    case endOfCapture  // still open when input ended
    case capacity      // evicted to make room in the flow table
}

/// One value per direction, indexed by `Direction.rawValue`. Two stored fields instead of an array, so
/// reading or updating one side in the packet path touches no heap storage and no reference count.
@frozen public struct PerDirection<Value> {
    public var toServer: Value
    public var toClient: Value

    @inlinable public init(_ toServer: Value, _ toClient: Value) {
        self.toServer = toServer
        self.toClient = toClient
    }

    @inlinable public subscript(_ index: Int) -> Value {
        get { index == 0 ? toServer : toClient }
        _modify {
            if index == 0 { yield &toServer } else { yield &toClient }
        }
    }
}

extension PerDirection: Sendable where Value: Sendable {}

/// An out-of-order segment held until the bytes before it arrive.
struct PendingSegment {
    var seq: UInt32
    var wireLength: Int
    var data: [UInt8]
    var time: Nanos
}

/// One direction of a connection: sequence tracking and the bounded out-of-order queue.
struct HalfStream {
    var started = false
    var nextSeq: UInt32 = 0
    var finSeq: UInt32?
    var ended = false
    var pending: [PendingSegment] = []
    var pendingBytes = 0
}

/// A TCP connection's facts (handshake times, close, byte counts) and its two half-streams.
public final class TCPConnection {
    public let client: IPAddress
    public let server: IPAddress
    public let clientPort: UInt16
    public let serverPort: UInt16
    public let firstSeen: Nanos
    public internal(set) var lastSeen: Nanos
    /// First SYN, and how many SYNs the client sent (retries).
    public internal(set) var synTime: Nanos?
    public internal(set) var synCount = 0
    public internal(set) var synAckTime: Nanos?
    /// Set when the connection was picked up without its handshake.
    public internal(set) var midStream = false
    public internal(set) var resetTime: Nanos?
    public internal(set) var resetBy: Direction?
    public internal(set) var finTime = PerDirection<Nanos?>(nil, nil)
    /// Payload bytes delivered in order, per direction (retransmissions excluded).
    public internal(set) var bytes = PerDirection(0, 0)
    /// Bytes reported as gaps, per direction (like Zeek's missed_bytes).
    public internal(set) var missedBytes = PerDirection(0, 0)
    public internal(set) var packets = 0
    public internal(set) var firstDataTime = PerDirection<Nanos?>(nil, nil)

    public var handler: TCPStreamHandler?
    var halves = PerDirection(HalfStream(), HalfStream())
    var closedAt: Nanos?
    var clientISN: UInt32?
    var finished = false

    init(client: IPAddress, clientPort: UInt16, server: IPAddress, serverPort: UInt16, time: Nanos) {
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.serverPort = serverPort
        firstSeen = time
        lastSeen = time
    }

    public var totalMissedBytes: Int { missedBytes[0] + missedBytes[1] }
    /// The connection was closed by FIN or RST (rather than still open when the capture ended).
    public var wasClosed: Bool { resetTime != nil || finTime[0] != nil || finTime[1] != nil }
}
