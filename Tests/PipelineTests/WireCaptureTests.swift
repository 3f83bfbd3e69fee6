import Analysers
import CallModel
import Foundation
import Pipeline
import Testing

/// Captures of real clients made by Scripts/make-wire-captures (Tests/Fixtures/captures/): urls with
/// IPv6 literals and default or other ports, and responses cut short by a FIN or an RST from either side.
/// Who closed when is read from the capture itself by `WireFacts` (a few lines of pcap reading of its
/// own), so the call's `ended_at` is checked against the packet that ended it.
@Suite struct WireCaptureTests {
    static let dir = Corpus.packageRoot.appendingPathComponent("Tests/Fixtures/captures")

    static func calls(_ name: String, keyLog: String? = nil) throws -> [CallRecord] {
        var options = AnalysisOptions()
        if let keyLog {
            let k = KeyLog()
            k.add(text: try String(contentsOf: dir.appendingPathComponent(keyLog), encoding: .utf8))
            options.keyLog = k
        }
        return try Analyzer.analyzeFile(dir.appendingPathComponent(name).path, options: options).calls
    }

    static func byPath(_ calls: [CallRecord]) -> [String: CallRecord] {
        Dictionary(calls.filter { $0.kind == .http }.map { ($0.path ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: urls

    /// curl, Python's urllib and curl over TLS (decrypted) to IPv6 literals: bracketed, the port only
    /// when it is not the scheme's default; `host` stays the bare address.
    @Test func ipv6LiteralsAreBracketedAndDefaultPortsLeftOut() throws {
        let http = Self.byPath(try Self.calls("urls.pcap", keyLog: "urls.keylog"))
        let want: [String: String] = [
            "/status/200": "http://[fd00:213::11]/status/200",
            "/x?q=1": "http://[fd00:213::11]:8080/x?q=1",
            "/v4": "http://10.213.0.11/v4",
            "/secure": "https://[fd00:213::11]/secure",
            "/secure-alt": "https://[fd00:213::11]:8443/secure-alt",
            "/py": "http://[fd00:213::11]:8080/py",
        ]
        #expect(Set(http.keys) == Set(want.keys))
        for (path, url) in want {
            let c = try #require(http[path])
            #expect(c.url == url, "\(path)")
            #expect(c.outcome == .ok, "\(path): \(c.error ?? "")")
        }
        let v6 = http.values.filter { $0.serverIp == "fd00:213::11" }
        #expect(v6.count == 5 && v6.allSatisfy { $0.host == "fd00:213::11" })
        #expect(http["/secure"]?.visibility == .decrypted && http["/secure-alt"]?.serverPort == 8443)
        #expect(http["/status/200"]?.serverPort == 80 && http["/v4"]?.serverPort == 80)
    }

    // MARK: cut streams

    /// Each response of cut-streams.pcap: how it ended and the packet that ended it.
    @Test func responsesCutByAFinOrAnRSTSayWhoEndedThemAndWhen() throws {
        let facts = try WireFacts(Self.dir.appendingPathComponent("cut-streams.pcap"))
        let http = Self.byPath(try Self.calls("cut-streams.pcap"))
        #expect(http.count == 11)
        func check(_ path: String, _ outcome: Outcome, _ error: String?, endedBy: WireFacts.End?,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
            let c = try #require(http[path], sourceLocation: sourceLocation)
            #expect(c.statusCode == 200, "\(path)", sourceLocation: sourceLocation)
            #expect(c.outcome == outcome, "\(path): \(c.outcome) \(c.error ?? "")", sourceLocation: sourceLocation)
            #expect(c.error == error, "\(path)", sourceLocation: sourceLocation)
            #expect(c.missedBytes == 0, "\(path)", sourceLocation: sourceLocation)
            let conn = try facts.connection(of: c)
            if let endedBy {
                let t = try #require(conn.time(of: endedBy), "\(path): no \(endedBy) in the capture", sourceLocation: sourceLocation)
                #expect(c.endedAt == t, "\(path)", sourceLocation: sourceLocation)
                #expect(c.latencyMicros == (t - c.ts) / 1000, "\(path)", sourceLocation: sourceLocation)
            }
        }
        let left = "client closed the connection during the response"
        let hungUp = "server closed the connection during the response"
        // A client leaving an event stream with a FIN (curl --max-time, Python; curl over h2c), the
        // server closing after it.
        for path in ["/events-curl", "/events-py", "/events-h2"] {
            try check(path, .clientClosed, left, endedBy: .clientFin)
            let conn = try facts.connection(of: try #require(http[path]))
            #expect(conn.clientFin! < conn.serverFin! && conn.clientFin! < (conn.rst?.time ?? .max),
                    "\(path): the capture shows the client closing first")
        }
        #expect(http["/events-h2"]?.httpVersion == "2" && http["/events-h2"]?.streamId == 1)
        // A server hanging up inside a Content-Length body and inside a chunked body.
        try check("/cut-length", .serverClosed, hungUp, endedBy: .serverFin)
        #expect(http["/cut-length"]?.responseBodyBytes == 3000)
        try check("/cut-chunked", .serverClosed, hungUp, endedBy: .serverFin)
        // The client half-closed right after its request; the server went on answering and then hung up:
        // the client's earlier FIN is not what ended the response.
        try check("/half-closed", .serverClosed, hungUp, endedBy: .serverFin)
        let half = try facts.connection(of: try #require(http["/half-closed"]))
        #expect(half.clientFin! < half.serverFin!)
        // RSTs, from either side.
        try check("/reset-by-server", .reset, "connection reset by server", endedBy: .rst(fromClient: false))
        try check("/events-reset", .reset, "connection reset by client", endedBy: .rst(fromClient: true))
        // Complete responses keep their outcome: Content-Length, and a close-delimited body, which the
        // server's FIN completes (ending at its last byte, before the FIN).
        try check("/complete", .ok, nil, endedBy: nil)
        try check("/close-delimited", .ok, nil, endedBy: nil)
        let closeDelimited = try #require(http["/close-delimited"])
        let cd = try facts.connection(of: closeDelimited)
        #expect(closeDelimited.responseBodyBytes == 21 && closeDelimited.endedAt! < cd.serverFin!)
        // Still streaming when the capture stopped: incomplete, with no end.
        try check("/events-held", .incomplete, "capture ended during the response", endedBy: nil)
        #expect(http["/events-held"]?.endedAt == nil)
    }

    /// The same captures with one server data segment left out: a gap decides (`incomplete`), not the FIN
    /// that follows it.
    @Test func aGapBeforeTheCloseKeepsTheCallIncomplete() throws {
        let source = Self.dir.appendingPathComponent("cut-streams.pcap")
        let ports = Self.byPath(try Self.calls("cut-streams.pcap")).mapValues { $0.clientPort ?? 0 }
        let facts = try WireFacts(source)
        let victims = ["/cut-length", "/events-curl"]
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-gap-\(UUID().uuidString).pcap")
        defer { try? FileManager.default.removeItem(at: out) }
        try facts.write(to: out, droppingSecondServerDataSegmentOf: Set(victims.compactMap { ports[$0] }))
        let http = Self.byPath(try Analyzer.analyzeFile(out.path).calls)
        for path in victims {
            let c = try #require(http[path])
            #expect(c.outcome == .incomplete && c.missedBytes > 0, "\(path): \(c.outcome) \(c.error ?? "")")
        }
        #expect(http["/cut-chunked"]?.outcome == .serverClosed && http["/events-py"]?.outcome == .clientClosed)
    }
}

/// The TCP facts of a capture written by tcpdump (pcap, Ethernet, IPv4 or IPv6 without extension
/// headers), read independently of the analyser: per connection (by client port), the first FIN of
/// each side and the first RST.
struct WireFacts {
    enum End: CustomStringConvertible {
        case clientFin, serverFin
        case rst(fromClient: Bool)
        var description: String {
            switch self {
            case .clientFin: "client FIN"
            case .serverFin: "server FIN"
            case let .rst(fromClient): fromClient ? "client RST" : "server RST"
            }
        }
    }

    struct Connection {
        var clientFin: Int64?
        var serverFin: Int64?
        var rst: (time: Int64, fromClient: Bool)?

        func time(of end: End) -> Int64? {
            switch end {
            case .clientFin: clientFin
            case .serverFin: serverFin
            case let .rst(fromClient): rst?.fromClient == fromClient ? rst?.time : nil
            }
        }
    }

    struct Packet {
        var range: Range<Int>
        var clientPort: Int
        var fromClient: Bool
        var payload: Int
    }

    let data: Data
    var packets: [Packet] = []
    var connections: [Int: Connection] = [:]

    init(_ url: URL) throws {
        data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        func u32(_ o: Int) -> UInt32 { UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24 }
        func u16be(_ o: Int) -> Int { Int(bytes[o]) << 8 | Int(bytes[o + 1]) }
        guard bytes.count >= 24, u32(0) == 0xA1B2_C3D4 || u32(0) == 0xA1B2_3C4D, u32(20) == 1 else {
            throw CocoaError(.fileReadCorruptFile)
        }
        let nanos = u32(0) == 0xA1B2_3C4D
        var pos = 24
        while pos + 16 <= bytes.count {
            let time = Int64(u32(pos)) * 1_000_000_000 + Int64(u32(pos + 4)) * (nanos ? 1 : 1000)
            let caplen = Int(u32(pos + 8))
            let frame = pos + 16
            defer { pos = frame + caplen }
            let ip = frame + 14
            let type = u16be(frame + 12)
            let tcp: Int, end: Int
            if type == 0x0800, bytes[ip + 9] == 6 {
                tcp = ip + Int(bytes[ip] & 0x0F) * 4
                end = ip + u16be(ip + 2)
            } else if type == 0x86DD, bytes[ip + 6] == 6 {
                tcp = ip + 40
                end = tcp + u16be(ip + 4)
            } else {
                continue
            }
            let src = u16be(tcp), dst = u16be(tcp + 2)
            let flags = bytes[tcp + 13]
            let payload = end - (tcp + Int(bytes[tcp + 12] >> 4) * 4)
            // Servers listen on 80, 443, 8080 and 8443 in these captures; clients use ephemeral ports.
            let fromClient = src > dst
            let client = fromClient ? src : dst
            packets.append(Packet(range: pos..<(frame + caplen), clientPort: client, fromClient: fromClient, payload: payload))
            var c = connections[client] ?? Connection()
            if flags & 0x01 != 0 {
                if fromClient { c.clientFin = c.clientFin ?? time } else { c.serverFin = c.serverFin ?? time }
            }
            if flags & 0x04 != 0, c.rst == nil { c.rst = (time, fromClient) }
            connections[client] = c
        }
    }

    /// The connection a call was made on.
    func connection(of call: CallRecord) throws -> Connection {
        guard let port = call.clientPort, let c = connections[port] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "no connection from port \(call.clientPort ?? 0)"])
        }
        return c
    }

    /// Writes the capture again without the second server segment carrying data on each named connection.
    func write(to url: URL, droppingSecondServerDataSegmentOf clients: Set<Int>) throws {
        var out = data.prefix(24)
        var seen: [Int: Int] = [:]
        for p in packets {
            if clients.contains(p.clientPort), !p.fromClient, p.payload > 0 {
                seen[p.clientPort, default: 0] += 1
                if seen[p.clientPort] == 2 { continue }
            }
            out.append(data[p.range])
        }
        try out.write(to: url)
    }
}
