import Analysers
import Attribution
import CallModel
import Core
import Decode
import Source
import Foundation
import OTLP
import Pipeline
import Transcripts

/// One fuzz target: a parser that takes outside bytes, and how one input is fed to it.
public struct FuzzTarget: Sendable {
    public let name: String
    public let summary: String
    public let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

/// Link types a fuzz input can pick with its first byte.
let fuzzLinkTypes: [LinkType] = [.ethernet, .linuxSLL, .linuxSLL2, .raw, .null, .loop, .ipv4, .ipv6, .rawLinktype, .rawAlt]

func fuzzLinkIndex(_ t: LinkType) -> UInt8 { UInt8(fuzzLinkTypes.firstIndex(of: t) ?? 0) }

/// Every target. Input formats (the seed maker in Seeds.swift writes the same):
/// - decode: [link index][one frame]
/// - pipeline: [link index] then frames as [u16 length][bytes], 100 ms apart, through reassembly, every
///   analyser, call building and the JSON line
/// - http1, tls, http2: [u16 client length][client bytes][server bytes], delivered in alternating chunks
/// - quic: [mode] then records [u16: top bit set for the server, low 15 bits the length][bytes] into one
///   connection's Initial reader; mode 0 takes each record as a UDP payload, mode 1 as the frames of an
///   Initial packet it protects first (so the frame and CRYPTO reassembly code is reached past the AEAD)
/// - dns: one DNS message; dns-tcp: [u16 client length][client bytes][server bytes] of a DNS-over-TCP
///   connection, in alternating chunks; keylog: key log text; registry: one registry line; pcapfile: a whole file
/// - registration: one request on the registration socket; redaction: a request target, then (after a
///   NUL) a body, through every redaction rule
/// - llm: [api index][split point] then bytes: the first part as a request body, the rest as a response
///   read both as SSE (in chunks of the split point) and as one JSON body, for every API; the whole
///   as a gzip, deflate or br body (by the split point)
/// - transcripts: [mode] then transcript lines (pi's JSON Lines); each line also as an ISO-8601 time and
///   a URL; the whole as a Zstandard frame; then calls joined against what the lines said
/// - fragments: [mode] then records [u8 time step, in quarter seconds][u16 length][bytes], through a decoder with
///   small reassembly caps and on into the pipeline. Mode 1: [link index] after the mode, and each record a frame;
///   mode 0: each record [flags][u16 offset in 8-byte units][data] built into an IPv4 or IPv6 fragment
///   (see `fragmentFrame`)
/// - otlp: NUL-separated strings (a traceparent, method, host, path, session, OTEL_EXPORTER_OTLP_HEADERS,
///   OTEL_RESOURCE_ATTRIBUTES) into a call, its span request and the exporter's configuration
public let fuzzTargets: [FuzzTarget] = [
    FuzzTarget(name: "decode", summary: "link layer, IPv4/IPv6, TCP/UDP headers") { data in
        guard let first = data.first else { return }
        var decoder = PacketDecoder(linkType: fuzzLinkTypes[Int(first) % fuzzLinkTypes.count])
        let frame = UnsafeRawBufferPointer(rebasing: data.dropFirst())
        _ = decoder.decode(frame, wireLength: frame.count + Int(first >> 4), timestamp: 1)
    },
    FuzzTarget(name: "pipeline", summary: "frames through reassembly, detection, all analysers and call records") { data in
        guard let first = data.first else { return }
        runPipeline(linkType: fuzzLinkTypes[Int(first) % fuzzLinkTypes.count], records: UnsafeRawBufferPointer(rebasing: data.dropFirst()))
    },
    FuzzTarget(name: "http1", summary: "HTTP/1.x requests and responses") { data in
        let a = HTTP1Analyser()
        deliverStreams(data) { fromClient, chunk, t in
            _ = a.deliver(fromClient ? .toServer : .toClient, chunk, at: t)
            _ = a.takeCompleted()
        }
        a.gap(.toClient, length: 100, at: 9)
        a.endOfStream(.toClient, at: 10)
        a.finish()
        _ = a.takeCompleted()
    },
    FuzzTarget(name: "tls", summary: "TLS records, handshake messages, JA4, decryption with a key log") { data in
        let a = TLSAnalyser(keyLog: fuzzKeyLog)
        deliverStreams(data) { fromClient, chunk, t in a.deliver(fromClient ? .toServer : .toClient, chunk, at: t) }
        a.gap(.toClient, length: 100)
        a.finishWaitingForKeys()
    },
    FuzzTarget(name: "http2", summary: "HTTP/2 frames and HPACK") { data in
        let a = HTTP2Analyser()
        deliverStreams(data) { fromClient, chunk, t in
            a.deliver(fromClient ? .toServer : .toClient, chunk, at: t)
            _ = a.takeCompleted()
        }
        a.finish()
        _ = a.takeCompleted()
    },
    FuzzTarget(name: "dns", summary: "DNS messages (names, compression, records)") { data in
        _ = DNSParser.parse(data)
    },
    FuzzTarget(name: "dns-tcp", summary: "DNS over TCP: length-prefixed messages, several per stream, within the parser budget") { data in
        // A budget just above one message: partial messages past it give their direction up.
        let budget = ParserBudget(limit: 70_000)
        do {
            let framer = DNSStreamFramer(budget: budget)
            deliverStreams(data) { fromClient, chunk, _ in
                framer.deliver(fromClient ? 0 : 1, chunk) { message in
                    precondition(message.count <= 65_535)
                    _ = DNSParser.parse(message)
                }
                precondition(framer.bufferedBytes <= 2 * 65_537 && budget.used == framer.bufferedBytes)
            }
            framer.gap(1)
            precondition(framer.bufferedBytes == budget.used)
        }
        precondition(budget.used == 0, "DNS over TCP left bytes counted in the parser budget")
    },
    FuzzTarget(name: "quic", summary: "QUIC Initial packets: headers, protection, frames, CRYPTO reassembly") { data in
        runQUIC(data)
    },
    FuzzTarget(name: "keylog", summary: "SSLKEYLOGFILE lines") { data in
        let log = KeyLog()
        log.add(text: String(decoding: data, as: UTF8.self))
        _ = log.secret(.clientTrafficSecret0, clientRandom: [UInt8](repeating: 0, count: 32))
    },
    FuzzTarget(name: "registry", summary: "PID → session registry lines") { data in
        _ = SessionRegistry.parse(Substring(String(decoding: data, as: UTF8.self)))
    },
    FuzzTarget(name: "registration", summary: "requests on the verified registration socket") { data in
        // A small made-up process tree: the caller 100 and its child 200, both uid 1000.
        let tree: [Int: RegistrationSocket.Facts] = [100: .init(ppid: 1, uid: 1000, startTime: 10),
                                                     200: .init(ppid: 100, uid: 1000, startTime: 20)]
        _ = RegistrationSocket.request(Array(data), peerPID: 100, peerUID: 1000, facts: { tree[$0] })
    },
    FuzzTarget(name: "redaction", summary: "request targets and body summaries through every redaction rule") { data in
        let bytes = Array(data)
        let cut = bytes.firstIndex(of: 0) ?? bytes.count
        _ = Redaction.target(String(decoding: bytes[..<cut], as: UTF8.self))
        let body = Array(bytes[min(cut + 1, bytes.count)...])
        for type in ["application/json", "application/x-www-form-urlencoded", "text/plain"] {
            _ = Redaction.summary(contentType: type, bytes: body, totalBytes: body.count + 1)
        }
    },
    FuzzTarget(name: "llm", summary: "LLM API bodies: requests, JSON responses and SSE streams of every provider") { data in
        guard data.count >= 2 else { return }
        let apis: [LLMAPI] = [.openAIChat, .openAIResponses, .anthropicMessages, .gemini]
        let api = apis[Int(data[0]) % apis.count]
        let rest = Array(data.dropFirst(2))
        let cut = min(Int(data[1]), rest.count)
        var f = LLMFacts()
        LLMParsing.request(api, Array(rest[..<cut]), target: "/v1beta/models/m:generateContent", into: &f)
        LLMParsing.response(api, Array(rest[cut...]), into: &f)
        var c = LLMCapture(api: api, cap: 4096)
        c.responseHead(contentType: "text/event-stream", contentEncoding: nil)
        let step = max(1, Int(data[1]) % 17 + 1)
        var i = cut
        while i < rest.count {
            let n = min(step, rest.count - i)
            rest[i..<(i + n)].withUnsafeBytes { c.response($0, at: Nanos(i)) }
            i += n
        }
        precondition(c.heldBytes <= 3 * 4096 + 1024, "an SSE capture held \(c.heldBytes) bytes")
        precondition(c.facts.toolCalls.count <= 64)
        // The same bytes as a compressed body: never more out than the limit.
        let encoding = ["gzip", "deflate", "br"][Int(data[1]) % 3]
        if let out = Decompression.decode(rest, encoding: encoding, limit: 4096) { precondition(out.count <= 4096 + 16_384) }
    },
    FuzzTarget(name: "transcripts", summary: "OpenClaw transcript entries, Zstandard rows, times and URLs, and the join") { data in
        guard let mode = data.first else { return }
        let rest = UnsafeRawBufferPointer(rebasing: data.dropFirst())
        let index = TranscriptIndex(limits: .init(toolCallIds: 64, fetches: 16, turns: 16))
        var strings: [String] = []
        for line in Array(rest).split(separator: 0x0A) {
            _ = index.add(entry: Data(line), session: mode & 1 == 0 ? "s-a" : "s-b")
            let text = String(decoding: line, as: UTF8.self)
            _ = TranscriptIndex.parseISO8601(text)
            if let u = TranscriptIndex.normalised(text) {
                precondition(TranscriptIndex.normalised(u) == u, "normalising is not idempotent: \(u)")
                _ = TranscriptIndex.host(of: u)
            }
            if strings.count < 8 { strings.append(text) }
        }
        if let out = Zstd.decompress(rest, expected: mode & 2 == 0 ? nil : Int(mode), limit: 4096) {
            precondition(out.count <= 4096)
        }
        let join = TranscriptJoin(index: index, hold: 1_000, maxHeld: 4)
        for (i, text) in strings.enumerated() {
            var r = CallRecord(kind: i % 2 == 0 ? .http : .tls, ts: Int64(i) * 500)
            r.endedAt = r.ts + Int64(mode) * 10
            r.url = text
            r.host = text
            r.llmProvider = i % 3 == 0 ? "anthropic" : nil
            r.llmToolCalls = [text]
            r.llmToolResultIds = [text]
            r.llmOutputTokens = Int(mode)
            r.traceId = i % 2 == 0 ? "t" : nil
            _ = join.add(r, now: r.ts)
            precondition(join.heldCount <= 4)
        }
        _ = join.finish()
        precondition(join.heldCount == 0)
    },
    FuzzTarget(name: "otlp", summary: "traceparent values, calls with any text as OTLP spans and metrics, OTEL_* settings") { data in
        let parts = Array(data).split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        func part(_ k: Int) -> String? { k < parts.count ? parts[k] : nil }
        var r = CallRecord(kind: .http, ts: Int64(parts.count) &* 1_000_000_007)
        if let tp = part(0), let c = TraceParent.parse(tp) {
            precondition(c.traceId.utf8.count == 32 && c.parentSpanId.utf8.count == 16)
            r.traceId = c.traceId
            r.parentSpanId = c.parentSpanId
        }
        r.method = part(1)
        r.host = part(2)
        r.path = part(3)
        r.url = part(3).map { "http://x\($0)" }
        r.sessionId = part(4)
        r.statusCode = data.count % 600
        r.outcome = data.count % 3 == 0 ? .httpError : .ok
        r.latencyMicros = Int64(data.count) * 997
        r.ttfbMicros = Int64(data.count) * 1_500 // may exceed the latency: events stay inside the span
        r.target = part(2)
        let resource = OTLPResource(attributes: [OTLPAttribute("service.name", .string(part(6) ?? ""))])
        let (bytes, spans) = OTLPTraceRequest.encode([r, r], resource: resource, version: "fuzz")
        precondition(spans == 2 && traceRequestReadsBack(bytes, spans: 2))
        let metrics = OTLPMetrics(start: 1)
        metrics.record(r)
        let request = metrics.encode(resource: resource, version: "fuzz", now: 2)
        precondition(ProtoReader.messages(request[...], 1).allSatisfy { ProtoReader.fields($0) != nil })
        _ = try? OTLPConfiguration.resolve(endpoint: "http://127.0.0.1:4318", headers: part(5).map { [$0] } ?? [], timeout: 1,
                                           environment: ["OTEL_EXPORTER_OTLP_HEADERS": part(5) ?? "",
                                                         "OTEL_RESOURCE_ATTRIBUTES": part(6) ?? ""],
                                           hostName: "fuzz")
    },
    FuzzTarget(name: "pcapng-times", summary: "two interfaces with any if_tsoffset: capture-time arithmetic") { data in
        guard let file = pcapngWithTimeOffsets(data) else { return }
        let path = fuzzScratchFile
        guard FileManager.default.createFile(atPath: path, contents: Data(file)) else { return }
        guard let reader = try? PcapFileReader(path: path) else { return }
        var options = AnalysisOptions()
        options.includeLocal = true
        let analyzer = Analyzer(options: options) { r in _ = CallJSON.line(r) }
        _ = analyzer.read(reader)
        analyzer.finish()
    },
    FuzzTarget(name: "fragments", summary: "IPv4/IPv6 fragment reassembly: overlaps, duplicates, caps, timeouts, the datagrams") { data in
        runFragments(data)
    },
    FuzzTarget(name: "pcapfile", summary: "pcap and pcapng files through libpcap and the decoder") { data in
        let path = fuzzScratchFile
        guard FileManager.default.createFile(atPath: path, contents: Data(data)) else { return }
        guard let reader = try? PcapFileReader(path: path) else { return }
        var decoder = PacketDecoder(linkType: reader.linkType)
        let analyzer = Analyzer { _ in }
        _ = reader.forEach { frame, wireLength, ts in
            if let p = decoder.decode(frame, wireLength: wireLength, timestamp: ts) { analyzer.process(p) }
        }
        analyzer.finish()
    },
]

/// A pcapng file with two Ethernet interfaces whose `if_tsoffset` options come from the input, and the
/// input's frames alternating between them: times from different interfaces may be ±9.2e18 ns apart, and
/// every duration computed from them must saturate, not trap.
/// Input: [i64 BE offset of interface 0, seconds][i64 BE offset of interface 1] then [u16 length][frame]…
public func pcapngWithTimeOffsets(_ data: UnsafeRawBufferPointer) -> [UInt8]? {
    guard data.count >= 16 else { return nil }
    func be64(_ at: Int) -> Int64 { (0..<8).reduce(Int64(0)) { $0 << 8 | Int64(data[at + $1]) } }
    var out: [UInt8] = []
    func u16(_ v: Int) { out += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: Int) { out += (0..<4).map { UInt8(v >> ($0 * 8) & 0xFF) } }
    func block(_ type: Int, _ body: [UInt8]) {
        let padded = body + [UInt8](repeating: 0, count: (4 - body.count % 4) % 4)
        u32(type); u32(padded.count + 12); out += padded; u32(padded.count + 12)
    }
    block(0x0A0D_0D0A, [0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 8))
    for i in 0..<2 {
        let offset = be64(i * 8)
        var idb: [UInt8] = [1, 0, 0, 0, 0xFF, 0xFF, 0, 0]              // Ethernet, snaplen 65535
        idb += [9, 0, 1, 0, 9, 0, 0, 0]                                  // if_tsresol: nanoseconds
        idb += [14, 0, 8, 0] + (0..<8).map { UInt8(truncatingIfNeeded: offset >> ($0 * 8)) } // if_tsoffset
        idb += [0, 0, 0, 0]
        block(1, idb)
    }
    var i = 16, n = 0
    var t: UInt64 = 1_700_000_000_000_000_000
    while i + 2 <= data.count {
        let length = Int(data[i]) << 8 | Int(data[i + 1])
        i += 2
        let end = min(data.count, i + length)
        let frame = Array(UnsafeRawBufferPointer(rebasing: data[i..<end]))
        i = end
        t += 1_000_000
        var epb: [UInt8] = []
        epb += [UInt8(n % 2), 0, 0, 0]
        epb += (0..<4).map { UInt8(truncatingIfNeeded: (t >> 32) >> UInt64($0 * 8)) } + (0..<4).map { UInt8(truncatingIfNeeded: t >> UInt64($0 * 8)) }
        let size = (0..<4).map { UInt8(truncatingIfNeeded: frame.count >> ($0 * 8)) }
        epb += size + size
        block(6, epb + frame)
        n += 1
    }
    return out
}

/// A key log whose secrets match no real connection: the decryption paths still run on every
/// ClientHello (lookups, waiting for keys, giving up).
let fuzzKeyLog: KeyLog = {
    let log = KeyLog()
    log.add(text: "CLIENT_RANDOM " + String(repeating: "00", count: 32) + " " + String(repeating: "11", count: 48) + "\n")
    return log
}()

public let fuzzScratchFile = "/dev/shm/calltap-fuzz-\(getpid()).pcap"

/// Splits `[u16 client length][client][server]` and hands out the two sides in alternating chunks of
/// 509 bytes (an odd size, so messages are cut in odd places).
func deliverStreams(_ data: UnsafeRawBufferPointer, _ deliver: (Bool, UnsafeRawBufferPointer, Nanos) -> Void) {
    guard data.count >= 2 else { return }
    let clientLength = min(data.count - 2, Int(data[0]) << 8 | Int(data[1]))
    let client = UnsafeRawBufferPointer(rebasing: data[2..<(2 + clientLength)])
    let server = UnsafeRawBufferPointer(rebasing: data[(2 + clientLength)...])
    var ci = 0, si = 0
    var t: Nanos = 1_000
    while ci < client.count || si < server.count {
        if ci < client.count {
            let end = min(client.count, ci + 509)
            deliver(true, UnsafeRawBufferPointer(rebasing: client[ci..<end]), t)
            ci = end
        }
        if si < server.count {
            let end = min(server.count, si + 509)
            deliver(false, UnsafeRawBufferPointer(rebasing: server[si..<end]), t + 500)
            si = end
        }
        t += 1_000
    }
}

func runPipeline(linkType: LinkType, records: UnsafeRawBufferPointer) {
    var decoder = PacketDecoder(linkType: linkType)
    var options = AnalysisOptions()
    options.includeLocal = true
    options.summaries = true
    options.keyLog = fuzzKeyLog
    let analyzer = Analyzer(options: options) { r in _ = CallJSON.line(r) }
    var i = 0
    var t: Nanos = 1_600_000_000_000_000_000
    while i + 2 <= records.count {
        let length = Int(records[i]) << 8 | Int(records[i + 1])
        i += 2
        let end = min(records.count, i + length)
        let frame = UnsafeRawBufferPointer(rebasing: records[i..<end])
        i = end
        t += 100_000_000
        if let p = decoder.decode(frame, wireLength: frame.count, timestamp: t) { analyzer.process(p) }
    }
    analyzer.finish()
}

/// Whether an encoded `ExportTraceServiceRequest` reads back as resource spans → scope spans → spans,
/// each span a well-formed message with its name: a length the writer got wrong anywhere shows here.
func traceRequestReadsBack(_ b: [UInt8], spans expected: Int) -> Bool {
    var spans = 0
    for rs in ProtoReader.messages(b[...], 1) {
        for ss in ProtoReader.messages(rs, 2) {
            for span in ProtoReader.messages(ss, 2) {
                guard let fields = ProtoReader.fields(span), fields.contains(where: { $0.field == 5 }) else { return false }
                for f in fields where f.field == 9 || f.field == 11 || f.field == 15 {
                    guard case let .bytes(inner) = f.value, ProtoReader.fields(inner) != nil else { return false }
                }
                spans += 1
            }
        }
    }
    return spans == expected
}

/// The caps of the `fragments` target: small, so that they are reached.
let fuzzFragmentLimits: FragmentLimits = {
    var l = FragmentLimits()
    l.maxDatagrams = 8
    l.maxBytes = 24 << 10
    return l
}()

/// The `fragments` target: sequences of fragments through the decoder, whose bookkeeping is checked after
/// every packet (within the caps; every fragment reassembled, given up for a reason, or held), and the
/// datagrams they make through the pipeline (which reads each one before the next decode).
func runFragments(_ data: UnsafeRawBufferPointer) {
    guard let mode = data.first else { return }
    var i = 1
    var linkType = LinkType.raw
    if mode & 1 == 1 {
        guard data.count >= 2 else { return }
        linkType = fuzzLinkTypes[Int(data[1]) % fuzzLinkTypes.count]
        i = 2
    }
    var decoder = PacketDecoder(linkType: linkType, fragmentLimits: fuzzFragmentLimits)
    var options = AnalysisOptions()
    options.includeLocal = true
    let analyzer = Analyzer(options: options) { r in _ = CallJSON.line(r) }
    var t: Nanos = 1_600_000_000_000_000_000
    func balanced() -> Bool {
        let f = decoder.counters.fragments
        return decoder.counters.count(.ipFragment) == f.fragmentsReassembled + f.duplicate + f.overlapping + f.invalid
            + f.timedOut + f.overCap + decoder.fragmentsHeld.fragments
    }
    func feed(_ frame: UnsafeRawBufferPointer, wireLength: Int) {
        if let p = decoder.decode(frame, wireLength: wireLength, timestamp: t) {
            precondition(p.payload.count <= 65_535 && p.payload.count <= max(0, p.wireLength))
            analyzer.process(p)
        }
        let held = decoder.fragmentsHeld
        precondition(held.datagrams <= fuzzFragmentLimits.maxDatagrams && held.bytes <= fuzzFragmentLimits.maxBytes)
        precondition(balanced(), "a fragment went uncounted")
    }
    while i + 3 <= data.count {
        t += Nanos(data[i]) * 250_000_000
        let length = Int(data[i + 1]) << 8 | Int(data[i + 2])
        i += 3
        let end = min(data.count, i + length)
        let record = UnsafeRawBufferPointer(rebasing: data[i..<end])
        i = end
        if mode & 1 == 1 {
            feed(record, wireLength: record.count)
        } else if let (frame, wire) = fragmentFrame(record) {
            frame.withUnsafeBytes { feed($0, wireLength: wire) }
        }
    }
    decoder.finish()
    precondition(decoder.fragmentsHeld == (0, 0, 0) && balanced())
    analyzer.finish()
}

/// A raw IPv4 or IPv6 fragment from 10.0.0.1 (fd00::1) to 10.0.0.53 (fd00::53), UDP, built from
/// [flags][u16 offset in 8-byte units][data]. Flags: bit 0 IPv6, bit 1 more fragments, bits 2-4 which of
/// eight identifications, bit 5 cut by the snaplen (half the data captured). Returns the captured frame and
/// its length on the wire.
func fragmentFrame(_ record: UnsafeRawBufferPointer) -> ([UInt8], Int)? {
    guard record.count >= 3 else { return nil }
    let flags = record[0]
    let offset = (Int(record[1]) << 8 | Int(record[2])) & 0x1FFF
    let data = Array(record[3...])
    let more = flags & 2 != 0
    let id = Int(flags >> 2) & 7
    var frame: [UInt8]
    if flags & 1 == 0 {
        let total = 20 + data.count
        guard total <= 65_535 else { return nil }
        let frag = offset | (more ? 0x2000 : 0)
        frame = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, UInt8(id), UInt8(frag >> 8), UInt8(frag & 0xFF),
                 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 53]
    } else {
        let payload = 8 + data.count
        guard payload <= 65_535 else { return nil }
        let frag = offset << 3 | (more ? 1 : 0)
        frame = [0x60, 0, 0, 0, UInt8(payload >> 8), UInt8(payload & 0xFF), 44, 64]
        frame += [0xFD] + [UInt8](repeating: 0, count: 14) + [1] + [0xFD] + [UInt8](repeating: 0, count: 14) + [0x53]
        frame += [17, 0, UInt8(frag >> 8), UInt8(frag & 0xFF), 0, 0, 0, UInt8(id)]
    }
    frame += data
    let wire = frame.count
    if flags & 0x20 != 0 { frame.removeLast(data.count / 2) }
    return (frame, wire)
}

/// The `quic` target: one connection's datagrams through `QUICInitialParser`, within a small budget that
/// must be all given back once the reader is gone.
func runQUIC(_ data: UnsafeRawBufferPointer) {
    guard let mode = data.first else { return }
    let budget = ParserBudget(limit: 8 << 10)
    do {
        let parser = QUICInitialParser(maxCryptoBytes: 6 << 10, budget: budget)
        let dcid: [UInt8] = [0x83, 0x94, 0xC8, 0xF0, 0x3E, 0x51, 0x57, 0x08]
        let scid: [UInt8] = [0xC1, 0xC2, 0xC3, 0xC4]
        var pn: Int64 = 0
        var i = 1
        while i + 2 <= data.count {
            let head = Int(data[i]) << 8 | Int(data[i + 1])
            let fromServer = head & 0x8000 != 0
            let n = min(head & 0x7FFF, data.count - i - 2)
            let record = UnsafeRawBufferPointer(rebasing: data[(i + 2)..<(i + 2 + n)])
            i += 2 + n
            if mode & 1 == 0 {
                if !fromServer { _ = parser.startsNewConnection(record) }
                parser.datagram(record, fromClient: !fromServer)
            } else if let packet = fuzzInitialPacket(frames: Array(record), dcid: dcid, scid: scid, pn: pn, server: fromServer) {
                pn += 1
                packet.withUnsafeBytes { parser.datagram($0, fromClient: !fromServer) }
            }
            precondition(budget.used <= budget.limit && parser.heldBytes <= 2 * (6 << 10))
        }
        _ = parser.clientHello.map { JA4.fingerprint($0, transport: "q") }
    }
    precondition(budget.used == 0, "the QUIC reader kept budget after it was gone")
}

/// A version 1 Initial packet carrying `frames`, protected with the keys of `dcid`.
func fuzzInitialPacket(frames: [UInt8], dcid: [UInt8], scid: [UInt8], pn: Int64, server: Bool) -> [UInt8]? {
    var payload = frames
    if payload.count < 20 { payload += [UInt8](repeating: 0, count: 20 - payload.count) }
    guard payload.count < 16_000 else { return nil }
    let ids = server ? (scid, dcid) : (dcid, scid)
    var header: [UInt8] = [0xC1, 0, 0, 0, 1, UInt8(ids.0.count)] + ids.0 + [UInt8(ids.1.count)] + ids.1 + [0]
    let length = 2 + payload.count + 16
    header += [UInt8(0x40 | (length >> 8)), UInt8(length & 0xFF)]
    let pnOffset = header.count
    header += [UInt8((pn >> 8) & 0xFF), UInt8(pn & 0xFF)]
    guard let keys = QUICInitialProtection.keys(version: 1, dcid: dcid, server: server) else { return nil }
    return QUICInitialProtection.seal(header: header, pnOffset: pnOffset, packetNumber: pn, payload: payload, keys: keys)
}
