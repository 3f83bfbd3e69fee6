import Core
import Decode
import Source
import Testing

@Suite struct DuplicateFilterTests {
    func packet(seq: UInt32, at t: Nanos) -> DecodedPacket {
        DecodedPacket(timestamp: t, src: IPAddress(v4: 1), dst: IPAddress(v4: 2), srcPort: 40000, dstPort: 443,
                      transport: .tcp, flags: [.ack, .psh], seq: seq, ack: 9,
                      payload: UnsafeRawBufferPointer(start: nil, count: 0), wireLength: 3)
    }

    @Test func secondCopyWithinAMillisecondIsDroppedRetransmissionsAreNot() {
        var f = DuplicateFilter()
        let first = f.isDuplicate(packet(seq: 100, at: 1_000_000))
        let bridged = f.isDuplicate(packet(seq: 100, at: 1_000_050))       // the same packet on the bridge
        let next = f.isDuplicate(packet(seq: 103, at: 1_000_060))          // the next segment
        let retransmitted = f.isDuplicate(packet(seq: 100, at: 201_000_000)) // a retransmission 200 ms later
        #expect(!first && bridged && !next && !retransmitted)
        #expect(f.duplicates == 1)
    }
}
