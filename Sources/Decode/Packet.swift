import Core

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

/// One decoded TCP or UDP packet. `payload` points into the capture buffer (or, for a datagram put back
/// together from IP fragments, into the decoder's reassembly buffer, until its next `decode`) and is valid
/// only for the duration of the callback that received it: nothing is copied on decode.
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
