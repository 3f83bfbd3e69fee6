@testable import Analysers
import Core
import Testing

/// Builds TLS records for tests.
enum TLSBuilder {
    static func u16(_ v: Int) -> [UInt8] { [UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    static func u24(_ v: Int) -> [UInt8] { [UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    static func ext(_ type: Int, _ body: [UInt8]) -> [UInt8] { u16(type) + u16(body.count) + body }

    static func clientHello(sni: String?, alpn: [String], versions: [Int] = [0x0304, 0x0303]) -> [UInt8] {
        var exts: [UInt8] = ext(0x0A0A, []) // GREASE
        if let sni {
            let name = Array(sni.utf8)
            exts += ext(0x0000, u16(name.count + 3) + [0] + u16(name.count) + name)
        }
        if !alpn.isEmpty {
            let list = alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
            exts += ext(0x0010, u16(list.count) + list)
        }
        let sv = versions.flatMap(u16)
        exts += ext(0x002B, [UInt8(sv.count)] + sv)
        exts += ext(0x000D, u16(4) + [0x04, 0x03, 0x08, 0x04])
        let body = u16(0x0303) + Array(repeating: 7, count: 32) + [0] + u16(6) + [0x1A, 0x1A, 0x13, 0x01, 0x13, 0x02] + [1, 0]
            + u16(exts.count) + exts
        return [1] + u24(body.count) + body
    }

    static func serverHello(version: Int?, cipher: Int = 0x1301, alpn: String? = nil) -> [UInt8] {
        var exts: [UInt8] = []
        if let version { exts += ext(0x002B, u16(version)) }
        if let alpn { exts += ext(0x0010, u16(alpn.utf8.count + 1) + [UInt8(alpn.utf8.count)] + Array(alpn.utf8)) }
        let body = u16(0x0303) + Array(repeating: 9, count: 32) + [0] + u16(cipher) + [0] + u16(exts.count) + exts
        return [2] + u24(body.count) + body
    }

    static func record(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] { [type, 3, 3] + u16(payload.count) + payload }
}

@Suite struct TLSAnalyserTests {
    func feed(_ a: TLSAnalyser, client: Bool, _ bytes: [UInt8], at t: Nanos, chunk: Int = .max) {
        var i = 0
        while i < bytes.count {
            let n = min(chunk, bytes.count - i)
            bytes[i..<(i + n)].withUnsafeBytes { a.deliver(client ? .toServer : .toClient, $0, at: t) }
            i += n
        }
    }

    @Test(arguments: [Int.max, 1, 5, 100])
    func tls13HandshakeFactsAndTimes(chunk: Int) {
        let a = TLSAnalyser()
        // The ClientHello split across two records, as some clients do.
        let ch = TLSBuilder.clientHello(sni: "api.openai.com", alpn: ["h2", "http/1.1"])
        feed(a, client: true, TLSBuilder.record(22, Array(ch.prefix(40))) + TLSBuilder.record(22, Array(ch.dropFirst(40))), at: 10, chunk: chunk)
        feed(a, client: false, TLSBuilder.record(22, TLSBuilder.serverHello(version: 0x0304)) + TLSBuilder.record(20, [1])
             + TLSBuilder.record(23, Array(repeating: 0, count: 40)), at: 20, chunk: chunk)
        feed(a, client: true, TLSBuilder.record(20, [1]) + TLSBuilder.record(23, Array(repeating: 0, count: 30)), at: 30, chunk: chunk)
        feed(a, client: true, TLSBuilder.record(23, Array(repeating: 0, count: 300)), at: 40, chunk: chunk)
        feed(a, client: false, TLSBuilder.record(23, Array(repeating: 0, count: 500)), at: 50, chunk: chunk)
        #expect(a.clientHello?.serverName == "api.openai.com")
        #expect(a.clientHello?.alpnNames == ["h2", "http/1.1"])
        #expect(a.serverHello?.version == 0x0304 && a.isTLS13)
        #expect(a.clientHelloTime == 10 && a.serverHelloTime == 20 && a.handshakeDoneTime == 30)
        #expect(a.firstApplicationData[0] == 40 && a.firstApplicationData[1] == 50)
        #expect(a.clientEncryptedRecords == 2)
        #expect(a.weirds.isEmpty)
    }

    @Test func tls12ServerFinishedEndsTheHandshakeAndAlertsAreNamed() {
        let a = TLSAnalyser()
        feed(a, client: true, TLSBuilder.record(22, TLSBuilder.clientHello(sni: nil, alpn: [], versions: [])), at: 1)
        feed(a, client: false, TLSBuilder.record(22, TLSBuilder.serverHello(version: nil, cipher: 0xC02F, alpn: "http/1.1")), at: 2)
        feed(a, client: false, TLSBuilder.record(21, [2, 40]), at: 3)
        #expect(a.serverHello?.alpn == "http/1.1" && !a.isTLS13)
        #expect(a.alerts.first?.name == "handshake_failure" && a.alerts.first?.isFatal == true)
        #expect(a.alerts.first?.fromClient == false)
        let b = TLSAnalyser()
        feed(b, client: true, TLSBuilder.record(22, TLSBuilder.clientHello(sni: "x", alpn: [])), at: 1)
        feed(b, client: false, TLSBuilder.record(22, TLSBuilder.serverHello(version: nil)) + TLSBuilder.record(20, [1])
             + TLSBuilder.record(22, Array(repeating: 0x55, count: 40)), at: 5)
        #expect(b.handshakeDoneTime == 5)
    }

    @Test func absurdRecordLengthStopsParsingAndIsNamed() {
        let a = TLSAnalyser()
        feed(a, client: true, [22, 3, 1, 0xFF, 0xFF] + Array(repeating: 0, count: 100), at: 1)
        #expect(a.weirds.contains(.tlsRecordTooLong))
        #expect(a.clientBytes == 105)
    }

    @Test func hugeHandshakeMessageIsCapped() {
        let a = TLSAnalyser()
        feed(a, client: true, TLSBuilder.record(22, [1, 0xFF, 0xFF, 0xFF]), at: 1)
        #expect(a.weirds.contains(.tlsHandshakeTooLong))
    }

    @Test func truncatedHelloIsMalformedNotACrash() {
        let ch = TLSBuilder.clientHello(sni: "a", alpn: ["h2"])
        let whole = Array(ch.dropFirst(4)).withUnsafeBytes { TLSHelloParser.clientHello($0) }
        #expect(whole?.serverName == "a")
        // Every cut inside the fixed part or inside an extension is refused (nil), never a half-read hello
        // that names a server; the cuts are counted so the loop cannot pass by running zero times.
        var refused = 0, cuts = 0
        for cut in stride(from: 4, to: ch.count - 1, by: 3) {
            cuts += 1
            let parsed = Array(ch[4..<cut]).withUnsafeBytes { TLSHelloParser.clientHello($0) }
            if let parsed {
                #expect(parsed.serverName == nil || parsed.serverName == "a")
                #expect(parsed.cipherSuites.count <= 3)
            } else {
                refused += 1
            }
        }
        #expect(cuts > 10)
        #expect(refused >= cuts - 2, "\(cuts - refused) of \(cuts) truncated hellos were accepted")
        // Through the analyser: a hello cut by the end of its record is a malformed handshake, named.
        let a = TLSAnalyser()
        var record: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x00]
        var handshake = ch
        handshake[1] = 0; handshake[2] = UInt8((ch.count - 4 - 10) >> 8); handshake[3] = UInt8((ch.count - 4 - 10) & 0xFF)
        handshake.removeLast(10)
        record[3] = UInt8(handshake.count >> 8); record[4] = UInt8(handshake.count & 0xFF)
        (record + handshake).withUnsafeBytes { a.deliver(.toServer, $0, at: 1) }
        #expect(a.clientHello == nil)
        #expect(a.weirds.contains(.tlsMalformedHandshake))
    }

    @Test func ja4OfABuiltHello() throws {
        let ch = TLSBuilder.clientHello(sni: "example.com", alpn: ["h2"])
        let parsed = try #require(Array(ch.dropFirst(4)).withUnsafeBytes { TLSHelloParser.clientHello($0) })
        // 2 ciphers without GREASE; 5 extensions without GREASE (SNI, ALPN, supported_versions, sig algs… ).
        #expect(JA4.raw(parsed) == "t13d0204h2_1301,1302_000d,002b_0403,0804")
        #expect(JA4.fingerprint(parsed).hasPrefix("t13d0204h2_"))
        #expect(format4hexList([0x0A0B, 0x1301, 0xFFFF, 0]) == "0a0b,1301,ffff,0000")
        #expect(format4hexList([]) == "")
        #expect(format4hex(0x00AF) == "00af")
        #expect(JA4.alpnChars(nil) == "00")
        #expect(JA4.alpnChars(Array("http/1.1".utf8)) == "h1")
        #expect(JA4.alpnChars([0x01, 0x02]) == "02")
    }
}

@Suite struct DNSParserTests {
    static func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static let question: [UInt8] = [3] + Array("api".utf8) + [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
        + u16(1) + u16(1)

    @Test func answersWithCompressionAndCNAME() throws {
        var msg = u16(0x1234) + u16(0x8180) + u16(1) + u16(2) + u16(0) + u16(0) + Self.question
        // CNAME api.example.com → edge.example.com (compressed), then A 192.0.2.7
        let cname: [UInt8] = [4] + Array("edge".utf8) + [0xC0, 16] // "edge" + pointer to "example.com"
        msg += [0xC0, 12] + u16(5) + u16(1) + [0, 0, 0, 60] + u16(cname.count) + cname
        msg += [0xC0, UInt8(12 + Self.question.count + 12)] + u16(1) + u16(1) + [0, 0, 1, 0] + u16(4) + [192, 0, 2, 7]
        let m = try msg.withUnsafeBytes { try DNSParser.parse($0).get() }
        #expect(m.id == 0x1234 && m.isResponse && m.rcode == 0)
        #expect(m.questionName == "api.example.com" && m.questionType == 1)
        #expect(m.answers.map(\.target) == ["edge.example.com", nil])
        #expect(m.answers.map(\.address) == [[], [192, 0, 2, 7]])
    }

    func u16(_ v: Int) -> [UInt8] { Self.u16(v) }

    @Test func compressionLoopIsReportedNotFollowed() {
        let msg = u16(1) + u16(0x8180) + u16(1) + u16(0) + u16(0) + u16(0) + [0xC0, 12] + u16(1) + u16(1)
        let r = msg.withUnsafeBytes { DNSParser.parse($0) }
        guard case .failure(let f) = r else { Issue.record("loop parsed"); return }
        #expect(f == .pointerLoop)
    }

    @Test func truncatedMessagesFailCleanly() {
        let full = u16(1) + u16(0x0100) + u16(1) + u16(0) + u16(0) + u16(0) + Self.question
        for n in 0..<full.count {
            let r = Array(full.prefix(n)).withUnsafeBytes { DNSParser.parse($0) }
            if case .success = r { Issue.record("prefix \(n) parsed") }
        }
    }
}
