@testable import Analysers
import Core
import NIOCore
import NIOHPACK
import Testing

/// NIOHPACK against the examples of RFC 7541 appendix C (dynamic table carried across blocks).
@Suite struct HPACKTests {
    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.filter { !$0.isWhitespace }.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    static func decode(_ blocks: [String]) throws -> [[String]] {
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        return try blocks.map { hex in
            var buffer = ByteBuffer(bytes: bytes(hex))
            return try decoder.decodeHeaders(from: &buffer).map { "\($0.name): \($0.value)" }
        }
    }

    static let expected = [
        [":method: GET", ":scheme: http", ":path: /", ":authority: www.example.com"],
        [":method: GET", ":scheme: http", ":path: /", ":authority: www.example.com", "cache-control: no-cache"],
        [":method: GET", ":scheme: https", ":path: /index.html", ":authority: www.example.com", "custom-key: custom-value"],
    ]

    @Test func c3RequestsWithoutHuffman() throws {
        #expect(try Self.decode([
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ]) == Self.expected)
    }

    @Test func c4RequestsWithHuffman() throws {
        #expect(try Self.decode([
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ]) == Self.expected)
    }

    @Test func junkIsAnError() {
        #expect(throws: (any Error).self) { _ = try Self.decode(["ff"]) }
    }
}

/// Builds HTTP/2 frames for tests.
enum H2 {
    static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(stream >> 24), UInt8((stream >> 16) & 0xFF), UInt8((stream >> 8) & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func block(_ headers: [(String, String)], _ encoder: inout HPACKEncoder) throws -> [UInt8] {
        var buffer = ByteBuffer()
        try encoder.encode(headers: HPACKHeaders(headers), to: &buffer)
        return Array(buffer.readableBytesView)
    }
}

@Suite struct HTTP2AnalyserTests {
    func feed(_ a: HTTP2Analyser, client: Bool, _ bytes: [UInt8], at t: Nanos, chunk: Int = .max) {
        var i = 0
        while i < bytes.count {
            let n = min(chunk, bytes.count - i)
            bytes[i..<(i + n)].withUnsafeBytes { a.deliver(client ? .toServer : .toClient, $0, at: t) }
            i += n
        }
    }

    @Test(arguments: [Int.max, 1, 7])
    func streamsResetsAndGoAway(chunk: Int) throws {
        var client = HPACKEncoder(allocator: ByteBufferAllocator())
        var server = HPACKEncoder(allocator: ByteBufferAllocator())
        let a = HTTP2Analyser()
        func req(_ path: String) throws -> [UInt8] {
            try H2.block([(":method", "POST"), (":scheme", "https"), (":authority", "api.example.com"), (":path", path),
                          ("authorization", "Bearer secret"), ("content-type", "application/json")], &client)
        }
        var c: [UInt8] = HTTP2Analyser.preface + H2.frame(4, stream: 0, [])
        c += H2.frame(1, flags: 0x04, stream: 1, try req("/v1/a"))
        c += H2.frame(0, flags: 0x01, stream: 1, Array(repeating: 0x61, count: 10))
        c += H2.frame(1, flags: 0x05, stream: 3, try req("/v1/b"))
        c += H2.frame(1, flags: 0x05, stream: 5, try req("/v1/c"))
        feed(a, client: true, c, at: 10, chunk: chunk)
        var s: [UInt8] = H2.frame(4, stream: 0, [0, 1, 0, 0, 0x10, 0]) // SETTINGS header table size
        s += H2.frame(1, flags: 0x04, stream: 1, try H2.block([(":status", "200"), ("content-type", "text/event-stream")], &server))
        s += H2.frame(0, flags: 0x08, stream: 1, [3] + Array(repeating: 0x62, count: 20) + [0, 0, 0]) // padded DATA
        s += H2.frame(0, flags: 0x01, stream: 1, Array(repeating: 0x62, count: 5))
        s += H2.frame(3, stream: 3, [0, 0, 0, 0x08]) // RST_STREAM CANCEL
        s += H2.frame(7, stream: 0, [0, 0, 0, 3, 0, 0, 0, 0x0B]) // GOAWAY last=3 ENHANCE_YOUR_CALM
        feed(a, client: false, s, at: 20, chunk: chunk)
        a.finish()
        let streams = a.takeCompleted().sorted { $0.id < $1.id }
        #expect(streams.map(\.id) == [1, 3, 5])
        #expect(streams[0].method == "POST" && streams[0].path == "/v1/a" && streams[0].authority == "api.example.com")
        #expect(streams[0].status == 200 && streams[0].responseContentType == "text/event-stream")
        #expect(streams[0].requestBodyBytes == 10 && streams[0].responseBodyBytes == 25)
        #expect(streams[0].requestStart == 10 && streams[0].responseEnd == 20 && streams[0].responseComplete)
        #expect(streams[1].resetCode == 8 && !streams[1].resetByClient)
        #expect(streams[2].goAwayCode == 0x0B)
        #expect(HTTP2Analyser.errorName(0x0B) == "ENHANCE_YOUR_CALM")
    }

    /// With summaries on, each body's first bytes are kept, padding and pad length left out, across
    /// frames and chunk boundaries, up to the limit; with summaries off nothing is kept.
    @Test(arguments: [Int.max, 1, 5])
    func bodyPrefixesForSummaries(chunk: Int) throws {
        for limit in [0, 24] {
            var client = HPACKEncoder(allocator: ByteBufferAllocator())
            var server = HPACKEncoder(allocator: ByteBufferAllocator())
            var limits = HTTP2Limits()
            limits.summaryBytes = limit
            let a = HTTP2Analyser(limits: limits)
            var c: [UInt8] = HTTP2Analyser.preface + H2.frame(4, stream: 0, [])
            c += H2.frame(1, flags: 0x04, stream: 1, try H2.block([(":method", "POST"), (":scheme", "https"),
                                                                 (":authority", "a.example"), (":path", "/x")], &client))
            c += H2.frame(0, flags: 0x08, stream: 1, [2] + Array("{\"k\":".utf8) + [0, 0]) // padded
            c += H2.frame(0, flags: 0x01, stream: 1, Array("\"v\"}".utf8))
            feed(a, client: true, c, at: 10, chunk: chunk)
            var s: [UInt8] = H2.frame(4, stream: 0, [])
            s += H2.frame(1, flags: 0x04, stream: 1, try H2.block([(":status", "200")], &server))
            s += H2.frame(0, flags: 0x01, stream: 1, Array(repeating: 0x7a, count: 40))
            feed(a, client: false, s, at: 20, chunk: chunk)
            a.finish()
            let st = try #require(a.takeCompleted().first)
            #expect(st.requestBodyBytes == 9 && st.responseBodyBytes == 40)
            #expect(st.requestBodyPrefix == (limit > 0 ? Array("{\"k\":\"v\"}".utf8) : []))
            #expect(st.responseBodyPrefix == Array(repeating: 0x7a, count: limit))
        }
    }

    @Test func gapMarksLaterStreamsAndHPACKJunkStopsTheDirection() throws {
        var client = HPACKEncoder(allocator: ByteBufferAllocator())
        let a = HTTP2Analyser()
        let first = H2.frame(1, flags: 0x05, stream: 1, try H2.block([(":method", "GET"), (":path", "/1")], &client))
        feed(a, client: true, HTTP2Analyser.preface + first, at: 1)
        a.gap(.toClient, length: 100)
        let second = H2.frame(1, flags: 0x05, stream: 3, try H2.block([(":method", "GET"), (":path", "/2")], &client))
        feed(a, client: true, second, at: 2)
        a.finish()
        let s = a.takeCompleted().sorted { $0.id < $1.id }
        #expect(s.map(\.afterGap) == [false, true])
        #expect(a.weirds.contains(.http2Gap))

        let b = HTTP2Analyser()
        feed(b, client: true, HTTP2Analyser.preface + H2.frame(1, flags: 0x05, stream: 1, [0xFF, 0xFF, 0xFF, 0xFF]), at: 1)
        #expect(b.hpackErrors == 1 && b.weirds.contains(.http2HPACKError))
        let c = HTTP2Analyser()
        feed(c, client: true, Array("GET / HTTP/1.1\r\n\r\n".utf8), at: 1)
        #expect(c.weirds.contains(.http2BadPreface))
    }

    @Test func streamCapIsCounted() throws {
        var limits = HTTP2Limits()
        limits.maxOpenStreams = 4
        var client = HPACKEncoder(allocator: ByteBufferAllocator())
        let a = HTTP2Analyser(limits: limits)
        var bytes = HTTP2Analyser.preface
        for id in stride(from: UInt32(1), through: 19, by: 2) {
            bytes += H2.frame(1, flags: 0x05, stream: id, try H2.block([(":method", "GET"), (":path", "/\(id)")], &client))
        }
        feed(a, client: true, bytes, at: 1)
        #expect(a.droppedStreams == 6)
    }
}
