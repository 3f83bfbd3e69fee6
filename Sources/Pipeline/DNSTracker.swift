import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

/// Pairs DNS queries with answers and turns lookups into calls. Resolver noise is folded away:
/// NXDOMAINs from search-list expansion go into the outcome of the final lookup, and a NODATA
/// answer beside a successful lookup of the other address family counts as ok — also when the asker
/// used its IPv6 address for some lookups and its IPv4 address for others (one resolver per family).
final class DNSTracker {
    struct QueryKey: Hashable {
        var client: IPAddress
        var clientPort: UInt16
        var server: IPAddress
        var id: UInt16
        /// 17 for UDP, 6 for DNS over TCP.
        var proto: UInt8 = 17
    }

    struct Lookup {
        var key: QueryKey
        var serverPort: UInt16
        var name: String
        var qtype: UInt16
        var queryTime: Nanos
        var answerTime: Nanos?
        var rcode: UInt8?
        var answers: [DNSAnswer] = []
        var folded = false
    }

    private unowned let owner: Analyzer
    private var pending: [QueryKey: Lookup] = [:]
    /// Answered (or timed out) lookups held for folding, in completion order.
    private var held: [Lookup] = []
    private let maxPending = 65_536

    init(owner: Analyzer) { self.owner = owner }

    func process(_ p: DecodedPacket) {
        process(p.payload, from: p.src, p.srcPort, to: p.dst, p.dstPort, at: p.timestamp, proto: 17)
    }

    /// One DNS message from `src` to `dst`: over UDP a datagram, over TCP one length-prefixed message
    /// of the stream (`DNSLayer`). Queries and answers pair the same way on both.
    func process(_ payload: UnsafeRawBufferPointer, from src: IPAddress, _ srcPort: UInt16, to dst: IPAddress, _ dstPort: UInt16,
                 at time: Nanos, proto: UInt8) {
        switch DNSParser.parse(payload) {
        case .failure:
            owner.stats.dnsMalformed += 1
        case .success(let m):
            if m.isResponse {
                let key = QueryKey(client: dst, clientPort: dstPort, server: src, id: m.id, proto: proto)
                if var l = pending.removeValue(forKey: key) {
                    l.answerTime = time
                    l.rcode = m.rcode
                    l.answers = m.answers
                    owner.learn(m.answers, for: l.name)
                    held.append(l)
                } else {
                    // An answer without its query (capture started late): still useful for naming.
                    owner.learn(m.answers, for: m.questionName)
                }
            } else {
                let key = QueryKey(client: src, clientPort: srcPort, server: dst, id: m.id, proto: proto)
                if pending[key] != nil { return } // a retransmitted query: keep the first
                if pending.count >= maxPending { expire(now: .max) }
                pending[key] = Lookup(key: key, serverPort: dstPort, name: m.questionName, qtype: m.questionType,
                                      queryTime: time)
            }
        }
    }

    /// Times out unanswered queries and emits held lookups older than the fold window.
    func expire(now: Nanos) {
        let timeout = owner.options.dnsTimeout
        let stale = pending.values.filter { now == .max || now.minus($0.queryTime) >= timeout }
        for l in stale.sorted(by: { $0.queryTime < $1.queryTime }) {
            pending.removeValue(forKey: l.key)
            owner.stats.dnsUnanswered += 1
            held.append(l)
        }
        guard !held.isEmpty else { return }
        fold()
        let window = owner.options.dnsFoldWindow
        var keep: [Lookup] = []
        for l in held {
            if now == .max || now.minus(l.answerTime ?? l.queryTime) >= window {
                if l.folded { owner.stats.dnsFolded += 1 } else { owner.emit(record(l)) }
            } else {
                keep.append(l)
            }
        }
        held = keep
    }

    /// Earliest query time of anything not yet emitted.
    var earliestOpenStart: Nanos? {
        let a = pending.values.map(\.queryTime).min()
        let b = held.map(\.queryTime).min()
        switch (a, b) {
        case let (x?, y?): return min(x, y)
        default: return a ?? b
        }
    }

    private func succeeded(_ l: Lookup) -> Bool {
        l.rcode == 0 && l.answers.contains { $0.type == l.qtype }
    }

    private func fold() {
        for i in held.indices where !held[i].folded && held[i].rcode == 3 {
            // Search-list expansion: "name.suffix" NXDOMAIN, then a lookup of "name" from the same client.
            let n = held[i].name
            let client = held[i].key.client, time = held[i].queryTime
            if held.contains(where: { o in
                Self.sameAsker(o.key.client, client) && o.queryTime >= time && Self.isSearchListExpansion(n, of: o.name)
            }) {
                held[i].folded = true
            }
        }
    }

    /// Whether two lookups may come from one asker: the same address, or one address of each family — a
    /// host that sends its search list to the IPv6 resolver and the final lookup to the IPv4 one asks
    /// from both of its addresses.
    static func sameAsker(_ a: IPAddress, _ b: IPAddress) -> Bool {
        a == b || a.isV4 != b.isV4
    }

    /// `name` is `base` followed by a dot and more labels ("api.corp.example" of "api"), compared on bytes.
    static func isSearchListExpansion(_ name: String, of base: String) -> Bool {
        let n = name.utf8, b = base.utf8
        guard n.count > b.count, n.starts(with: b) else { return false }
        return n[n.index(n.startIndex, offsetBy: b.count)] == UInt8(ascii: ".")
    }

    /// An answer's data as text: the address, or the alias target.
    static func answerText(_ a: DNSAnswer) -> String {
        address(a)?.description ?? a.target ?? ""
    }

    static func address(_ a: DNSAnswer) -> IPAddress? {
        let b = a.address
        if b.count == 4 {
            return IPAddress(v4: UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]))
        }
        guard b.count == 16 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for k in 0..<8 { high = high << 8 | UInt64(b[k]) }
        for k in 8..<16 { low = low << 8 | UInt64(b[k]) }
        return IPAddress(high: high, low: low)
    }

    private func record(_ l: Lookup) -> CallRecord {
        var r = CallRecord(kind: .dns, ts: l.queryTime)
        r.clientIp = l.key.client.description
        r.clientPort = Int(l.key.clientPort)
        r.serverIp = l.key.server.description
        r.serverPort = Int(l.serverPort)
        r.connectionId = CommunityID.v1(l.key.client, l.key.clientPort, l.key.server, l.serverPort, proto: l.key.proto)
        r.host = l.name
        r.dnsQtype = DNSNames.qtype(l.qtype)
        r.visibility = .plaintext
        if let t = l.answerTime {
            r.endedAt = t
            r.latencyMicros = t.micros(since: l.queryTime)
            r.ttfbMicros = r.latencyMicros
        }
        r.dnsRcode = l.rcode.map(DNSNames.rcode)
        if !l.answers.isEmpty { r.dnsAnswers = l.answers.map { "\(DNSNames.qtype($0.type)) \(Self.answerText($0))" } }
        guard let rcode = l.rcode else {
            r.outcome = .dnsFailed
            r.error = "no answer"
            return r
        }
        if succeeded(l) { return r }
        if rcode == 0 {
            // NODATA: fine when the same name resolved for the other address family.
            let otherOK = held.contains { o in
                Self.sameAsker(o.key.client, l.key.client) && o.name == l.name && o.qtype != l.qtype && succeeded(o)
            }
            if otherOK { return r }
            r.outcome = .dnsFailed
            r.error = "no \(DNSNames.qtype(l.qtype)) record (NODATA)"
            return r
        }
        r.outcome = .dnsFailed
        r.error = DNSNames.rcode(rcode)
        return r
    }
}

/// Counts UDP/443 flows as QUIC connections, with timing and bytes, and reads their Initial packets
/// (`QUICInitialParser`): SNI, offered ALPN and JA4 from the client's, version and cipher from the server's.
final class QUICTracker {
    struct Flow {
        var client: IPAddress
        var clientPort: UInt16
        var server: IPAddress
        var serverPort: UInt16
        var first: Nanos
        var last: Nanos
        var bytes = [0, 0]
        var firstReply: Nanos?
        /// Reads the Initial packets; kept after that (holding no data) to tell a new connection on the same
        /// address and port from this one.
        var initial: QUICInitialParser?
        var clientHello: ClientHello?
        var serverHello: ServerHello?
        /// The client's first Initial and its first Handshake packet (which carries its Finished).
        var firstInitial: Nanos?
        var clientHandshake: Nanos?
    }

    struct Key: Hashable {
        var a: IPAddress, ap: UInt16, b: IPAddress, bp: UInt16
    }

    private unowned let owner: Analyzer
    private var flows: [Key: Flow] = [:]

    init(owner: Analyzer) { self.owner = owner }

    func process(_ p: DecodedPacket) {
        let toServer = p.dstPort == 443
        let key = toServer ? Key(a: p.src, ap: p.srcPort, b: p.dst, bp: p.dstPort) : Key(a: p.dst, ap: p.dstPort, b: p.src, bp: p.srcPort)
        // A long header (first bit set) is the only kind of packet the Initial parser reads.
        let long = p.payload.first.map { $0 & 0x80 != 0 } ?? false
        if long && toServer, let parser = flows[key]?.initial, parser.startsNewConnection(p.payload) {
            // The same address and port, a new connection: the old one is reported now.
            if let old = flows.removeValue(forKey: key) { report(old) }
        }
        if flows[key] == nil {
            if flows.count >= owner.options.maxQUICFlows { reportIdlest() }
            flows[key] = Flow(client: key.a, clientPort: key.ap, server: key.b, serverPort: key.bp, first: p.timestamp, last: p.timestamp)
            if long && toServer { flows[key]!.initial = QUICInitialParser(budget: owner.parserBudget) }
        }
        flows[key]!.last = p.timestamp
        flows[key]!.bytes[toServer ? 0 : 1] += p.wireLength
        if !toServer && flows[key]!.firstReply == nil { flows[key]!.firstReply = p.timestamp }
        if long, let parser = flows[key]!.initial {
            parser.datagram(p.payload, fromClient: toServer)
            if toServer && flows[key]!.firstInitial == nil && parser.clientSCID != nil { flows[key]!.firstInitial = p.timestamp }
            if toServer && flows[key]!.clientHandshake == nil && flows[key]!.firstInitial != nil
                && QUICInitialParser.containsHandshakePacket(p.payload) {
                flows[key]!.clientHandshake = p.timestamp
            }
            if flows[key]!.clientHello == nil, let ch = parser.clientHello { flows[key]!.clientHello = ch }
            if flows[key]!.serverHello == nil, let sh = parser.serverHello { flows[key]!.serverHello = sh }
        }
    }

    func expire(now: Nanos) {
        let idle = owner.options.quicIdleTimeout
        let done = flows.filter { now == .max || now.minus($0.value.last) >= idle }
        for (key, f) in done.sorted(by: { $0.value.first < $1.value.first }) {
            flows.removeValue(forKey: key)
            report(f)
        }
    }

    /// More flows than the cap: the idlest half is reported now (a flood of Initials from new ports
    /// cannot grow the table), counted in `quic_flows_reported_early`.
    private func reportIdlest() {
        let idlest = flows.sorted { $0.value.last < $1.value.last }.prefix(max(1, flows.count / 2))
        for (key, f) in idlest.sorted(by: { $0.value.first < $1.value.first }) {
            flows.removeValue(forKey: key)
            owner.stats.quicFlowsReportedEarly += 1
            report(f)
        }
    }

    private func report(_ f: Flow) {
        var r = CallRecord(kind: .quic, ts: f.first)
        r.clientIp = f.client.description
        r.clientPort = Int(f.clientPort)
        r.serverIp = f.server.description
        r.serverPort = Int(f.serverPort)
        r.connectionId = CommunityID.v1(f.client, f.clientPort, f.server, f.serverPort, proto: 17)
        r.host = owner.dnsName(for: f.server)
        if let ch = f.clientHello {
            r.sni = ch.serverName
            if let sni = ch.serverName { r.host = sni }
            if !ch.alpn.isEmpty { r.alpnOffered = ch.alpnNames }
            r.ja4 = JA4.fingerprint(ch, transport: "q")
        }
        if let sh = f.serverHello, !sh.isHelloRetryRequest {
            r.tlsVersion = TLSNames.version(sh.version)
            r.tlsCipher = TLSNames.cipher(sh.cipherSuite)
        }
        if let start = f.firstInitial, let end = f.clientHandshake { r.tlsHandshakeMicros = end.micros(since: start) }
        r.endedAt = f.last
        r.latencyMicros = f.last.micros(since: f.first)
        r.ttfbMicros = f.firstReply.map { $0.micros(since: f.first) }
        r.bytesSent = f.bytes[0]
        r.bytesReceived = f.bytes[1]
        r.visibility = .encrypted
        if let parser = f.initial, parser.invalidRetries > 0 { r.weirds = [Weird.quicRetryInvalid.rawValue] }
        if f.firstReply == nil {
            r.outcome = .timeout
            r.error = "no reply from the server"
        }
        owner.emit(r)
    }

    var earliestOpenStart: Nanos? { flows.values.map(\.first).min() }
}

/// DNS over TCP (port 53): length-prefixed messages, several per connection, each paired with its
/// answer by the same tracker as UDP lookups, so a lookup is one `dns` call whichever way it went.
final class DNSLayer: StreamLayer {
    private unowned let conn: ConnectionAnalysis
    private let framer: DNSStreamFramer

    init(_ conn: ConnectionAnalysis) {
        self.conn = conn
        framer = DNSStreamFramer(budget: conn.budget)
    }

    /// Messages read so far: a connection that carried any has its calls, not a `connect` record.
    var messages: Int { framer.messages }

    func deliver(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) -> Int? {
        let c = conn.connection
        framer.deliver(d.rawValue, data) { message in
            if d == .toServer {
                conn.dnsMessage(message, from: c.client, c.clientPort, to: c.server, c.serverPort, at: t)
            } else {
                conn.dnsMessage(message, from: c.server, c.serverPort, to: c.client, c.clientPort, at: t)
            }
        }
        return nil
    }

    func gap(_ d: Direction, length: Int, at t: Nanos) { framer.gap(d.rawValue) }

    func endOfStream(_ d: Direction, at t: Nanos) {}

    func finish(_ reason: FinishReason) {}
}
