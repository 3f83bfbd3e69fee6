import AllocationCounter
import CallModel
import Core
import Decode
import Source
import Pipeline
import Testing

/// Frames of one plain HTTP download, built before anything is measured.
struct DownloadFrames {
    static let client: [UInt8] = [10, 0, 0, 1]
    static let server: [UInt8] = [93, 184, 216, 34]

    var setup: [[UInt8]] = []   // handshake, request, response head, the first body segments
    var steady: [[UInt8]] = []  // in-order body segments, each followed by the client's bare ACK

    init(steadySegments: Int, segmentSize: Int = 1400) {
        var clientSeq: UInt32 = 101, serverSeq: UInt32 = 5001
        func frame(fromClient: Bool, seq: UInt32, flags: UInt8, _ payload: [UInt8]) -> [UInt8] {
            let (src, dst) = fromClient ? (Self.client, Self.server) : (Self.server, Self.client)
            let (sp, dp) = fromClient ? (40000, 80) : (80, 40000)
            let tcp = be16(sp) + be16(dp) + be32(seq) + be32(0) + [0x50, flags] + be16(65535) + [0, 0, 0, 0] + payload
            let ip: [UInt8] = [0x45, 0] + be16(20 + tcp.count) + [0, 1, 0x40, 0, 64, 6, 0, 0] + src + dst
            return [UInt8](repeating: 0xAA, count: 6) + [UInt8](repeating: 0xBB, count: 6) + [0x08, 0x00] + ip + tcp
        }
        let syn: UInt8 = 0x02, ack: UInt8 = 0x10, psh: UInt8 = 0x08
        setup.append(frame(fromClient: true, seq: 100, flags: syn, []))
        setup.append(frame(fromClient: false, seq: 5000, flags: syn | ack, []))
        setup.append(frame(fromClient: true, seq: 101, flags: ack, []))
        let request = Array("GET /model/weights HTTP/1.1\r\nHost: downloads.example.com\r\n\r\n".utf8)
        setup.append(frame(fromClient: true, seq: clientSeq, flags: ack | psh, request))
        clientSeq &+= UInt32(request.count)
        let head = Array("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 900000000\r\n\r\n".utf8)
        setup.append(frame(fromClient: false, seq: serverSeq, flags: ack | psh, head))
        serverSeq &+= UInt32(head.count)
        let body = [UInt8](repeating: 0x5A, count: segmentSize)
        for k in 0..<(16 + steadySegments) {
            let data = frame(fromClient: false, seq: serverSeq, flags: ack, body)
            serverSeq &+= UInt32(segmentSize)
            let clientAck = frame(fromClient: true, seq: clientSeq, flags: ack, [])
            if k < 16 { setup += [data, clientAck] } else { steady += [data, clientAck] }
        }
    }

    private func be16(_ v: Int) -> [UInt8] { [UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
}

@Suite struct InOrderAllocationTests {
    /// In-order data goes from the capture buffer through decode, flow lookup, reassembly and the HTTP/1
    /// body parser without one heap allocation (in the spirit of gopacket's no-allocation decoding test).
    @Test func inOrderBodySegmentsAllocateNothing() {
        let frames = DownloadFrames(steadySegments: 4000)
        var calls: [CallRecord] = []
        let analyzer = Analyzer { calls.append($0) }
        var decoder = PacketDecoder(linkType: .ethernet)
        var time: Nanos = 1_700_000_000_000_000_000
        func feed(_ frame: [UInt8]) {
            time += 20_000 // 20 µs apart: the whole download stays inside one housekeeping second
            frame.withUnsafeBytes { raw in
                if let p = decoder.decode(raw, wireLength: raw.count, timestamp: time) { analyzer.process(p) }
            }
        }
        for f in frames.setup { feed(f) }

        // A while loop: a debug build's generic iterator would allocate in the test's own loop.
        let steady = frames.steady
        var k = 0
        calltap_allocations_start()
        while k < steady.count {
            feed(steady[k])
            k += 1
        }
        let allocations = calltap_allocations_stop()

        #expect(allocations == 0, "allocations on the in-order path: \(allocations) for \(frames.steady.count) packets")
        analyzer.finish()
        let bytes = 1400 * (16 + 4000)
        #expect(calls.count == 1)
        #expect(calls.first?.path == "/model/weights")
        #expect(calls.first?.responseBodyBytes == bytes)
        #expect(decoder.counters.packets == frames.setup.count + frames.steady.count)
    }

    /// The counter itself works: an allocation in the window is seen, so a zero above means something.
    @Test func counterSeesAnAllocation() {
        calltap_allocations_start()
        let array = [Int](repeating: 7, count: 1000)
        let allocations = calltap_allocations_stop()
        #expect(array.count == 1000)
        #expect(allocations >= 1)
    }
}
