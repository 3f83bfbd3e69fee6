import Core
import Decode
@testable import Reassembly
import Testing

/// Records what the reassembler hands to a connection's handler.
final class Recorder: TCPStreamHandler {
    var data: [[UInt8]] = [[], []]
    var deliveries: [(Direction, Nanos)] = []
    var gaps: [(Direction, Int)] = []
    var ends: [Direction] = []
    var finished: FinishReason?

    func deliver(_ c: TCPConnection, _ d: Direction, _ bytes: UnsafeRawBufferPointer, at time: Nanos) {
        data[d.rawValue] += bytes
        deliveries.append((d, time))
    }
    func gap(_ c: TCPConnection, _ d: Direction, length: Int, at time: Nanos) { gaps.append((d, length)) }
    func endOfStream(_ c: TCPConnection, _ d: Direction, at time: Nanos) { ends.append(d) }
    func finish(_ c: TCPConnection, reason: FinishReason) { finished = reason }
}

/// Drives a reassembler with hand-made segments between a client and a server.
final class Wire {
    let client = IPAddress(v4: 0x0A00_0001)
    let server = IPAddress(v4: 0xC000_0201)
    var recorders: [Recorder] = []
    var connections: [TCPConnection] = []
    var reassembler: Reassembler!
    var time: Nanos = 1_000_000_000

    init(limits: ReassemblyLimits = ReassemblyLimits()) {
        reassembler = Reassembler(limits: limits) { [unowned self] c in
            let r = Recorder()
            recorders.append(r)
            connections.append(c)
            return r
        }
    }

    var recorder: Recorder { recorders.last! }
    var connection: TCPConnection { connections.last! }
    var connectionCount: Int { connections.count }

    func send(toServer: Bool, seq: UInt32, flags: TCPFlags = [.ack], _ payload: [UInt8] = [], wireLength: Int? = nil,
              clientPort: UInt16 = 40000, advance: Nanos = 1_000) {
        time += advance
        payload.withUnsafeBytes { raw in
            let p = DecodedPacket(timestamp: time, src: toServer ? client : server, dst: toServer ? server : client,
                                  srcPort: toServer ? clientPort : 80, dstPort: toServer ? 80 : clientPort, transport: .tcp,
                                  flags: flags, seq: seq, ack: 0, payload: raw, wireLength: wireLength ?? payload.count)
            reassembler.process(p)
        }
    }

    func handshake(clientISN: UInt32 = 100, serverISN: UInt32 = 5000) {
        send(toServer: true, seq: clientISN, flags: [.syn])
        send(toServer: false, seq: serverISN, flags: [.syn, .ack])
        send(toServer: true, seq: clientISN &+ 1)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct ReassemblerTests {
    @Test func inOrderDataAndHandshakeTimes() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, bytes("hello "))
        w.send(toServer: true, seq: 107, bytes("world"))
        w.send(toServer: false, seq: 5001, bytes("ok"))
        #expect(w.recorder.data[0] == bytes("hello world"))
        #expect(w.recorder.data[1] == bytes("ok"))
        #expect(w.connection.synTime != nil && w.connection.synAckTime != nil)
        #expect(w.connection.client == w.client && w.connection.serverPort == 80)
        #expect(!w.connection.midStream)
    }

    @Test func outOfOrderSegmentIsPlacedNotDropped() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 107, bytes("world"))
        #expect(w.recorder.data[0].isEmpty)
        w.send(toServer: true, seq: 101, bytes("hello "))
        #expect(w.recorder.data[0] == bytes("hello world"))
        #expect(w.reassembler.counters.outOfOrderSegments == 1)
        #expect(w.recorder.gaps.isEmpty)
    }

    @Test func retransmissionsAndOverlapsAreTrimmed() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, bytes("abcdef"))
        w.send(toServer: true, seq: 101, bytes("abcdef")) // exact retransmission
        w.send(toServer: true, seq: 104, bytes("XYZghi")) // overlaps "def": the first copy wins
        #expect(w.recorder.data[0] == bytes("abcdefghi"))
        #expect(w.reassembler.counters.retransmittedSegments == 1)
        #expect(w.reassembler.counters.retransmittedBytes == 6 + 3)
    }

    @Test func sequenceNumbersWrapAround() {
        let w = Wire()
        w.handshake(clientISN: UInt32.max - 3)
        w.send(toServer: true, seq: UInt32.max - 2, bytes("abc"))
        w.send(toServer: true, seq: 3, bytes("ghi")) // out of order, past the wrap
        w.send(toServer: true, seq: 0, bytes("def"))
        #expect(w.recorder.data[0] == bytes("abcdefghi"))
    }

    @Test func midStreamConnectionIsPickedUp() {
        let w = Wire()
        w.send(toServer: false, seq: 9000, bytes("HTTP/1.1 200 OK\r\n"))
        w.send(toServer: true, seq: 300, bytes("GET / HTTP/1.1\r\n"))
        #expect(w.connection.midStream)
        #expect(w.connection.client == w.client) // the high port is the client
        #expect(w.recorder.data[1] == bytes("HTTP/1.1 200 OK\r\n"))
        #expect(w.recorder.data[0] == bytes("GET / HTTP/1.1\r\n"))
    }

    @Test func dataInSYNIsDelivered() {
        let w = Wire()
        w.send(toServer: true, seq: 700, flags: [.syn], bytes("GET /"))
        w.send(toServer: false, seq: 1, flags: [.syn, .ack])
        w.send(toServer: true, seq: 706, bytes(" HTTP/1.0"))
        #expect(w.recorder.data[0] == bytes("GET / HTTP/1.0"))
    }

    @Test func snaplenCutIsAGap() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, bytes("abcd"), wireLength: 10)
        w.send(toServer: true, seq: 111, bytes("z"))
        #expect(w.recorder.data[0] == bytes("abcdz"))
        #expect(w.recorder.gaps.count == 1 && w.recorder.gaps[0].1 == 6)
        #expect(w.connection.missedBytes[0] == 6)
    }

    @Test func holeLeftAtCloseBecomesAGap() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, bytes("ab"))
        w.send(toServer: true, seq: 113, flags: [.ack, .fin], bytes("yz")) // bytes 103..<113 never arrive
        w.reassembler.finishAll()
        #expect(w.recorder.data[0] == bytes("abyz"))
        #expect(w.recorder.gaps.map(\.1) == [10])
        #expect(w.recorder.finished == .endOfCapture)
        #expect(w.reassembler.counters.missedBytes == 10)
    }

    @Test func pendingCapGivesUpTheHoleAndCountsIt() {
        var limits = ReassemblyLimits()
        limits.maxPendingBytesPerConnection = 8
        let w = Wire(limits: limits)
        w.handshake()
        w.send(toServer: true, seq: 111, bytes("12345"))
        w.send(toServer: true, seq: 116, bytes("67890")) // 10 bytes pending > 8: the hole is skipped
        #expect(w.reassembler.counters.pendingCapFlushes == 1)
        #expect(w.recorder.gaps.map(\.1) == [10])
        #expect(w.recorder.data[0] == bytes("1234567890"))
    }

    @Test func finBothWaysEndsStreamsAndLingers() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, flags: [.ack, .fin], bytes("bye"))
        w.send(toServer: false, seq: 5001, flags: [.ack, .fin])
        #expect(w.recorder.ends.count == 2)
        #expect(w.recorder.finished == nil) // lingering for the last ACK
        w.send(toServer: true, seq: 105, advance: 6_000_000_000)
        #expect(w.recorder.finished == .closed)
    }

    @Test func resetFollowedByDataIsIgnored() {
        let w = Wire()
        w.handshake()
        w.send(toServer: true, seq: 101, flags: [.rst, .ack])
        #expect(w.connection.resetTime != nil)
        w.send(toServer: true, seq: 101, bytes("GET"))
        #expect(w.connection.resetTime == nil)
        #expect(w.reassembler.counters.ignoredResets == 1)
        #expect(w.recorder.data[0] == bytes("GET"))
    }

    @Test func newSYNOnAReusedTupleStartsANewConnection() {
        let w = Wire()
        w.handshake(clientISN: 100)
        w.send(toServer: true, seq: 101, bytes("one"))
        w.send(toServer: true, seq: 90_000, flags: [.syn])
        #expect(w.connectionCount == 2)
        #expect(w.connection.clientISN == 90_000)
    }

    @Test func flowCapEvictsAndCounts() {
        var limits = ReassemblyLimits()
        limits.maxConnections = 16
        let w = Wire(limits: limits)
        for port in 0..<64 { w.send(toServer: true, seq: 1, flags: [.syn], clientPort: UInt16(30000 + port)) }
        #expect(w.reassembler.openConnections <= 16)
        #expect(w.reassembler.counters.evictedForCapacity >= 48)
    }

    @Test func unansweredSYNsTimeOutByCaptureTime() {
        let w = Wire()
        w.send(toServer: true, seq: 1, flags: [.syn])
        w.send(toServer: true, seq: 1, flags: [.syn], advance: 1_000_000_000)
        #expect(w.connection.synCount == 2)
        w.send(toServer: true, seq: 1, flags: [.syn], clientPort: 50000, advance: 40_000_000_000)
        #expect(w.recorders.first?.finished == .idle)
    }
}

