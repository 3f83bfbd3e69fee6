import Analysers
import Core
import Decode
import Source
import Foundation
import Reassembly

/// Writes seed inputs for every target from real captures: frames for the decoder and the pipeline,
/// reassembled client/server streams for the HTTP/1, TLS and HTTP/2 parsers, DNS payloads, small files
/// whole, key logs that sit beside the captures, and registry lines.
public struct SeedMaker {
    let output: String
    private let maxStreamBytes = 16 * 1024

    public init(output: String) { self.output = output }

    /// `quic` inputs in mode 1 (frames the target protects): a ClientHello in CRYPTO frames out of order
    /// with PING, ACK and PADDING, and a ServerHello.
    static var quicFrameSeeds: [[UInt8]] {
        func record(_ bytes: [UInt8], server: Bool = false) -> [UInt8] {
            let head = bytes.count | (server ? 0x8000 : 0)
            return [UInt8(head >> 8), UInt8(head & 0xFF)] + bytes
        }
        func crypto(_ offset: Int, _ data: ArraySlice<UInt8>) -> [UInt8] {
            [0x06, UInt8(0x40 | (offset >> 8)), UInt8(offset & 0xFF), UInt8(0x40 | (data.count >> 8)), UInt8(data.count & 0xFF)] + data
        }
        var ext: [UInt8] = [0x00, 0x00, 0x00, 0x0F, 0x00, 0x0D, 0x00, 0x00, 0x0A] + Array("agent.test".utf8)
        ext += [0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02] + Array("h3".utf8)
        ext += [0x00, 0x2B, 0x00, 0x03, 0x02, 0x03, 0x04]
        var body: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 0x11, count: 32) + [0x00, 0x00, 0x04, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]
        body += [UInt8(ext.count >> 8), UInt8(ext.count & 0xFF)] + ext
        let hello: [UInt8] = [0x01, 0x00, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        let half = hello.count / 2
        var sh: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 0x22, count: 32) + [0x00, 0x13, 0x01, 0x00, 0x00, 0x06, 0x00, 0x2B, 0x00, 0x02, 0x03, 0x04]
        sh = [0x02, 0x00, UInt8(sh.count >> 8), UInt8(sh.count & 0xFF)] + sh
        return [
            [1] + record([0x01] + crypto(half, hello[half...])) + record([0x02, 0x01, 0x00, 0x00, 0x00] + crypto(0, hello[..<half]))
                + record(crypto(0, sh[...]), server: true),
            [1] + record(crypto(0, hello[...]) + [0x00, 0x00, 0x1C, 0x00, 0x00, 0x00]),
            [1] + record([0x03, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03] + crypto(0, hello[..<10])),
        ]
    }

    public func make(from captures: [String]) {
        var written: [String: Int] = [:]
        func write(_ target: String, _ name: String, _ bytes: [UInt8]) {
            let dir = "\(output)/\(target)"
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(bytes))
            written[target, default: 0] += 1
        }
        for path in captures {
            let base = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            if path.hasSuffix(".keylog") || path.hasSuffix(".keys") {
                if let text = try? Data(contentsOf: URL(fileURLWithPath: path)) { write("keylog", base, Array(text.prefix(4096))) }
                continue
            }
            guard let reader = try? PcapFileReader(path: path) else { continue }
            var decoder = PacketDecoder(linkType: reader.linkType)
            let link = fuzzLinkIndex(reader.linkType)
            var pipeline: [UInt8] = [link]
            var frames = 0, dns = 0
            // Fragments (and the packets among them) for the `fragments` target, as frames (mode 1).
            var fragments: [UInt8] = [1, link]
            var fragmentFrames = 0
            var quic: [UInt8] = [0]
            let collector = StreamCollector(limit: maxStreamBytes)
            let reassembler = Reassembler { c in collector.handler(for: c) }
            _ = reader.forEach { frame, wireLength, ts in
                frames += 1
                if frames <= 12 { write("decode", "\(base)-\(frames)", [link] + Array(frame)) }
                if frames <= 400 && pipeline.count + frame.count < 64 * 1024 {
                    pipeline += [UInt8(frame.count >> 8), UInt8(frame.count & 0xFF)] + Array(frame)
                }
                let seen = decoder.counters.count(.ipFragment)
                let decoded = decoder.decode(frame, wireLength: wireLength, timestamp: ts)
                if decoder.counters.count(.ipFragment) > seen || fragmentFrames > 0 && fragments.count + frame.count < 64 * 1024 {
                    fragmentFrames += 1
                    fragments += [0, UInt8(frame.count >> 8), UInt8(frame.count & 0xFF)] + Array(frame)
                }
                guard let p = decoded else { return }
                if p.transport == .tcp {
                    reassembler.process(p)
                } else if (p.srcPort == 53 || p.dstPort == 53) && dns < 8 && !p.payload.isEmpty {
                    dns += 1
                    write("dns", "\(base)-\(dns)", Array(p.payload))
                } else if (p.srcPort == 443 || p.dstPort == 443) && quic.count < 16 * 1024 && !p.payload.isEmpty
                            && p.payload.count < 0x8000 {
                    let head = p.payload.count | (p.srcPort == 443 ? 0x8000 : 0)
                    quic += [UInt8(head >> 8), UInt8(head & 0xFF)] + Array(p.payload)
                }
            }
            reassembler.finishAll()
            write("pipeline", base, pipeline)
            if fragmentFrames > 0 { write("fragments", base, fragments) }
            if quic.count > 1 { write("quic", base, quic) }
            if let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, size <= 256 * 1024,
               let whole = try? Data(contentsOf: URL(fileURLWithPath: path)) {
                write("pcapfile", base, Array(whole))
            }
            var perTarget: [String: Int] = [:]
            for (k, s) in collector.streams.enumerated() {
                guard let target = Self.classify(s.client), perTarget[target, default: 0] < 4 else { continue }
                perTarget[target, default: 0] += 1
                let n = min(s.client.count, 0xFFFF)
                write(target, "\(base)-\(k)", [UInt8(n >> 8), UInt8(n & 0xFF)] + s.client.prefix(n) + s.server)
            }
        }
        let registryLines = [
            #"{"pid":4242,"session_id":"s-1","started_at":"2026-11-25T10:00:00Z","agent":"planner"}"#,
            #"{"pid":17,"session_id":"s-2","started_at":1764064800.25,"ended_at":1764064900,"pid_start_time":123456}"#,
            #"{"pid":9,"session_id":"s-3","pid_ns":4026531836}"#,
            #"{"pid":-1,"session_id":""}"#,
        ]
        for (i, seed) in Self.quicFrameSeeds.enumerated() { write("quic", "frames-\(i)", seed) }
        for (i, seed) in Self.fragmentSeeds.enumerated() { write("fragments", "built-\(i)", seed) }
        for (i, line) in registryLines.enumerated() { write("registry", "line-\(i)", Array(line.utf8)) }
        for (i, request) in Self.registrationSeeds.enumerated() { write("registration", "request-\(i)", Array(request.utf8)) }
        for (i, seed) in Self.redactionSeeds.enumerated() { write("redaction", "planted-\(i)", Array(seed.utf8)) }
        for (i, seed) in Self.otlpSeeds.enumerated() { write("otlp", "call-\(i)", Array(seed.utf8)) }
        for (i, seed) in Self.http2Seeds().enumerated() { write("http2", "built-\(i)", seed) }
        for (i, seed) in Self.transcriptSeeds.enumerated() { write("transcripts", "lines-\(i)", seed) }
        for (target, count) in written.sorted(by: { $0.key < $1.key }) { print("\(target): \(count) seeds") }
    }

    /// `fragments` inputs in mode 0 (fragments the target builds, see `fragmentFrame`): a UDP DNS answer of 88
    /// A records (1,447 bytes with its UDP header) in three fragments over IPv4 in order, over IPv6 reversed
    /// with a duplicate, with an overlap, with its last fragment 50 s late, cut by the snaplen, with two
    /// different last fragments, and ten datagrams at once (over the cap of eight).
    static var fragmentSeeds: [[UInt8]] {
        var dns: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 88, 0, 0, 0, 0]
        dns += [3] + Array("big".utf8) + [4] + Array("frag".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
        for k in 0..<88 { dns += [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 215, 1, UInt8(k + 1)] }
        let datagram: [UInt8] = [0, 53, 0x82, 0x35, UInt8((8 + dns.count) >> 8), UInt8((8 + dns.count) & 0xFF), 0, 0] + dns
        func fragment(_ from: Int, _ to: Int, v6: Bool = false, more: Bool? = nil, id: Int = 0, cut: Bool = false,
                      after quarters: UInt8 = 0) -> [UInt8] {
            let mf = more ?? (to < datagram.count)
            let flags = UInt8((v6 ? 1 : 0) | (mf ? 2 : 0) | id << 2 | (cut ? 0x20 : 0))
            let body = [flags, UInt8((from / 8) >> 8), UInt8((from / 8) & 0xFF)] + datagram[from..<to]
            return [quarters, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        }
        let n = datagram.count
        let thirds = [(0, 512), (512, 1024), (1024, n)]
        func all(v6: Bool = false, id: Int = 0) -> [[UInt8]] { thirds.map { fragment($0.0, $0.1, v6: v6, id: id) } }
        let v4 = all(), v6 = all(v6: true)
        var many: [UInt8] = [0]
        for k in 0..<10 { many += fragment(0, 512, v6: k >= 8, id: k % 8) }
        // Newest first: the eight held complete, the two given up start again and time out.
        for k in (0..<10).reversed() { many += fragment(512, 1024, v6: k >= 8, id: k % 8) + fragment(1024, n, v6: k >= 8, id: k % 8) }
        return [
            [0] + v4.joined(),
            [0] + v6[2] + v6[1] + v6[1] + v6[0],
            [0] + v4[0] + fragment(400, 1024) + v4[1] + v4[2],
            [0] + v4[0] + v4[1] + fragment(1024, n, after: 200) + v6[0] + v6[1] + fragment(1024, n, v6: true, after: 100),
            [0] + v4[0] + fragment(512, 1024, cut: true) + v4[2],
            [0] + v4[2] + fragment(512, 1000, more: false) + v6[0] + v6[2] + fragment(1024, n - 8, v6: true, more: false),
            many,
        ]
    }

    static let registrationSeeds = [
        #"{"pid": 100, "session_id": "s-1", "agent": "planner"}"# + "\n",
        #"{"pid": 200, "session_id": "s-1", "ended": true}"# + "\n",
        #"{"pid": 1, "session_id": "stolen"}"# + "\n",
        "{\"pid\": 100, \"session_id\": \"" + String(repeating: "a", count: 300) + "\"}\n",
    ]

    /// A mode byte, then pi transcript lines: a header, an assistant message with tool calls, a web_fetch
    /// result, a cache hit, and broken shapes (wrong types, a bad time, an OpenAI id pair).
    static let transcriptSeeds: [[UInt8]] = [
        [2] + Array((#"{"type":"session","version":3,"id":"5f0c1a2e-1111-4a4a-9c9c-000000000001","timestamp":"2026-11-29T10:00:00.000Z","cwd":"/"}"# + "\n"
            + #"{"type":"message","id":"a1","parentId":null,"timestamp":"2026-11-29T10:00:01.000Z","message":{"role":"assistant","content":[{"type":"toolCall","id":"call_1|fc_1","name":"web_fetch","arguments":{"url":"https://docs.test/a"}}],"model":"gpt-5","usage":{"input":10,"output":5,"cacheRead":0},"timestamp":1764410400000}}"# + "\n"
            + #"{"type":"message","id":"a2","parentId":"a1","timestamp":"2026-11-29T10:00:02.000Z","message":{"role":"toolResult","toolCallId":"call_1|fc_1","toolName":"web_fetch","details":{"url":"https://Docs.test:443/a#x","finalUrl":"https://docs.test/b","status":200,"fetchedAt":"2026-11-29T10:00:02.000Z","tookMs":500},"isError":false}}"# + "\n"
            + "https://docs.test/a\n2026-11-29T10:00:02.000+01:00").utf8),
        [1] + Array((#"{"type":"message","message":{"role":"toolResult","toolCallId":"t","toolName":"web_fetch","details":{"url":"http://[fd00::1]:80/","fetchedAt":"2026-13-29T10:00:02Z","tookMs":-5,"cached":true}}}"# + "\n"
            + #"{"type":"message","message":{"role":"assistant","content":"not a list","usage":{"input":"x","output":1e300},"timestamp":true}}"# + "\n"
            + #"{"type":"message","message":{"role":"toolResult","toolCallId":"|","toolName":"web_fetch","details":{"url":"ftp://x","fetchedAt":"2026-11-29T10:00:02.123456789Z","tookMs":1e20}}}"#).utf8),
        [0x40, 0x28, 0xB5, 0x2F, 0xFD, 0x24, 0x05, 0x29, 0x00, 0x00, 0x68, 0x65, 0x6C, 0x6C, 0x6F, 0xFF, 0xFF, 0xFF, 0xFF],
    ]

    /// NUL-separated: traceparent, method, host, path, session, OTLP headers, resource attributes.
    static let otlpSeeds = [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{0}GET\u{0}api.example.com\u{0}/v1/x?a=1\u{0}sess-1\u{0}api-key=a%20b\u{0}service.name=x",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra\u{0}PROPFIND\u{0}\u{0}\u{0}\u{0}=,\u{0}k=%zz",
        "ff-00000000000000000000000000000000-0000000000000000-00\u{0}\u{0}" + String(repeating: "h", count: 300) + "\u{0}/"
            + String(repeating: "é", count: 200) + "\u{0}s\u{0}x=a\r\nInjected: 1",
    ]

    /// A target, a NUL, a body: the shapes redaction must see through.
    static let redactionSeeds = [
        "/x?api_key[]=a&q=sk-proj-abcdefghijklmnop;t=Bearer%2520abcdefgh&u=https%3A%2F%2Fa%3Fcode%3Dx\0"
            + #"{"password" : ["a", {"b": "c"}], "note": "sk\u002dant\u002dapi03-abcdefghijklmnop", "x": "\u0301"}"#,
        "/v1/sk%2Dproj-abcdefghijklmnop/api/v10/webhooks/1/t\0Authorization: Token abc postgres://u:p@h/db",
        "/q?x=wJalrXUtnFEMI+K7MDENG/bPxRfiCYEXAMPLEKEY\0{\"a\":\"\\u12\",\"token\":\"unterminated",
    ]

    /// HTTP/2 conversations built frame by frame (cleartext HTTP/2 is rare in captures): a GET with its
    /// answer, a POST with DATA and a reset, and a GOAWAY.
    static func http2Seeds() -> [[UInt8]] {
        func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            let n = payload.count
            return [UInt8(n >> 16), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), type, flags,
                    UInt8(stream >> 24), UInt8((stream >> 16) & 0xFF), UInt8((stream >> 8) & 0xFF), UInt8(stream & 0xFF)] + payload
        }
        func literal(_ name: String, _ value: String) -> [UInt8] {
            [0x00, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
        }
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let settings = frame(4, 0, 0, [0, 3, 0, 0, 0, 100])
        let get = [0x82, 0x86, 0x84] + literal(":authority", "api.example.com") // GET, http, /
        let post = [0x83, 0x86] + literal(":path", "/v1/chat?api_key=x") + literal(":authority", "api.example.com")
        let client1 = preface + settings + frame(1, 0x05, 1, get)
        let server1 = settings + frame(4, 1, 0, []) + frame(1, 0x04, 1, [0x88]) + frame(0, 0x01, 1, Array("hello".utf8))
        let client2 = preface + settings + frame(1, 0x04, 3, post) + frame(0, 0x00, 3, Array("{\"a\":1}".utf8))
            + frame(3, 0, 3, [0, 0, 0, 8])
        let server2 = settings + frame(1, 0x05, 3, [0x8D]) + frame(7, 0, 0, [0, 0, 0, 3, 0, 0, 0, 2])
        func seed(_ c: [UInt8], _ s: [UInt8]) -> [UInt8] { [UInt8(c.count >> 8), UInt8(c.count & 0xFF)] + c + s }
        return [seed(client1, server1), seed(client2, server2), seed(client1 + frame(8, 0, 0, [0, 0, 0x10, 0]), server2)]
    }

    /// Which parser a client stream belongs to, by its first bytes.
    static func classify(_ client: [UInt8]) -> String? {
        guard client.count >= 4 else { return nil }
        if client[0] == 0x16 && client[1] == 0x03 { return "tls" }
        if client.starts(with: Array("PRI * HTTP/2.0".utf8)) { return "http2" }
        if client.prefix(8).contains(0x20) && client[0] >= 0x41 && client[0] <= 0x5A { return "http1" }
        return nil
    }
}

/// Keeps the first bytes of each direction of every connection.
final class StreamCollector {
    final class Stream: TCPStreamHandler {
        var client: [UInt8] = []
        var server: [UInt8] = []
        let limit: Int
        init(limit: Int) { self.limit = limit }
        func deliver(_ c: TCPConnection, _ d: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
            if d == .toServer {
                client += data.prefix(max(0, limit - client.count))
            } else {
                server += data.prefix(max(0, limit - server.count))
            }
        }
        func gap(_ c: TCPConnection, _ d: Direction, length: Int, at time: Nanos) {}
        func endOfStream(_ c: TCPConnection, _ d: Direction, at time: Nanos) {}
        func finish(_ c: TCPConnection, reason: FinishReason) {}
    }

    let limit: Int
    var streams: [Stream] = []
    init(limit: Int) { self.limit = limit }

    func handler(for c: TCPConnection) -> TCPStreamHandler {
        let s = Stream(limit: limit)
        streams.append(s)
        return s
    }
}
