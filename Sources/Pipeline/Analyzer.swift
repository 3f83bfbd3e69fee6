import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

/// The analysis pipeline for one input: decoded packets in, call records out in order of call start.
/// Owns the reassembler, the per-connection analyses, DNS and QUIC tracking, and the reorder buffer
/// that releases calls once nothing earlier can still appear.
public final class Analyzer {
    public let options: AnalysisOptions
    var stats = CaptureStats()
    private let reassembler: Reassembler
    /// What all connections' HTTP/1 parsers may buffer together.
    let parserBudget: ParserBudget
    private var dns: DNSTracker!
    private var quic: QUICTracker!
    private let sink: (CallRecord) -> Void
    /// Completed calls waiting until the watermark passes their start.
    private var ready = CallReorderBuffer()
    private var lastHousekeeping: Nanos = 0
    private var now: Nanos = 0
    /// The latest packet time seen.
    var captureTime: Nanos { now }
    /// Address → name learned from DNS answers, to name connections without SNI or Host.
    private var names: [IPAddress: String] = [:]
    private var namesDropped = 0

    /// `sink` receives calls in order of `ts`.
    public init(options: AnalysisOptions = AnalysisOptions(), sink: @escaping (CallRecord) -> Void) {
        self.options = options
        self.sink = sink
        reassembler = Reassembler(limits: options.reassembly)
        parserBudget = ParserBudget(limit: options.maxParserBufferBytes)
        dns = DNSTracker(owner: self)
        quic = QUICTracker(owner: self)
        reassembler.makeHandler = { [unowned self] c in ConnectionAnalysis(owner: self, connection: c) }
    }

    /// Counters so far, including the reassembler's and the decoder's (pass the decoder's counters in).
    public func statistics(decoder: DecodeCounters? = nil) -> CaptureStats {
        var s = stats
        let r = reassembler.counters
        s.flows = r.connections
        s.midStreamFlows = r.midStreamConnections
        s.gaps = r.gaps
        s.missedBytes = r.missedBytes
        s.retransmittedSegments = r.retransmittedSegments
        s.outOfOrderSegments = r.outOfOrderSegments
        s.reassemblyCapFlushes = r.pendingCapFlushes
        s.evictedIdle = r.evictedIdle
        s.evictedForCapacity = r.evictedForCapacity
        s.dnsNamesDropped = namesDropped
        s.parserMemoryRefusals = parserBudget.refusals
        if let d = decoder {
            s.packets = d.packets
            s.bytes = d.bytes
            s.nonIPPackets = d.count(.notIP)
            s.ipFragments = d.count(.ipFragment)
            s.ipDatagramsReassembled = d.fragments.reassembled
            s.ipFragmentsDuplicate = d.fragments.duplicate
            s.ipFragmentsOverlapping = d.fragments.overlapping
            s.ipFragmentsInvalid = d.fragments.invalid
            s.ipFragmentsTimedOut = d.fragments.timedOut
            s.ipFragmentsOverCap = d.fragments.overCap
            s.otherTransportPackets = d.count(.otherTransport)
            s.malformedPackets = d.count(.malformed) + d.count(.truncatedHeader)
            s.snapTruncatedPackets = d.snapTruncated
        }
        return s
    }

    /// Processes one decoded packet.
    public func process(_ p: DecodedPacket) {
        if p.timestamp > now { now = p.timestamp }
        if !options.includeLocal && (p.src.isLocal || p.dst.isLocal) {
            stats.excludedLocal += 1
            return
        }
        switch p.transport {
        case .tcp:
            stats.tcpPackets += 1
            reassembler.process(p)
        case .udp:
            stats.udpPackets += 1
            if p.srcPort == 53 || p.dstPort == 53 || p.srcPort == 5353 && p.dstPort == 5353 {
                dns.process(p)
            } else if p.dstPort == 443 || p.srcPort == 443 {
                quic.process(p)
            }
        }
        if now.minus(lastHousekeeping) >= 1_000_000_000 {
            lastHousekeeping = now
            dns.expire(now: now)
            quic.expire(now: now)
            release(upTo: watermark())
        }
    }

    /// Live capture: lets time pass without packets (wall clock), so idle connections, DNS lookups
    /// and QUIC flows are finished on time.
    public func tick(now wall: Nanos) {
        if wall > now { now = wall }
        reassembler.advance(to: now)
        lastHousekeeping = now
        dns.expire(now: now)
        quic.expire(now: now)
        release(upTo: watermark())
    }

    /// Ends the input: every open connection and lookup is reported and all calls are released.
    public func finish() {
        reassembler.finishAll()
        dns.expire(now: .max)
        quic.expire(now: .max)
        release(upTo: .max)
    }

    // MARK: Called by the per-protocol parts

    /// One message of a DNS-over-TCP stream: paired with its answer as UDP lookups are.
    func dnsTCPMessage(_ message: UnsafeRawBufferPointer, from src: IPAddress, _ srcPort: UInt16, to dst: IPAddress, _ dstPort: UInt16,
                       at time: Nanos) {
        dns.process(message, from: src, srcPort, to: dst, dstPort, at: time, proto: 6)
    }

    func emit(_ record: consuming CallRecord) {
        var r = record
        if let host = r.host, isExcluded(host) {
            stats.excludedHost += 1
            return
        }
        // The input's own tags, on every kind of call (DNS and QUIC included).
        r.target = options.target
        if options.sessionId != nil { r.attribute(owner: nil, inputSession: options.sessionId, lookedUp: false) }
        if !options.orderedOutput {
            stats.calls += 1
            sink(r)
            return
        }
        ready.insert(r)
        if ready.count > options.maxHeldCalls, let earliest = ready.popEarliest(before: .max) {
            stats.callsReleasedEarly += 1
            stats.calls += 1
            sink(earliest)
        }
    }

    func learn(_ answers: [DNSAnswer], for name: String) {
        guard !name.isEmpty else { return }
        for a in answers {
            guard let ip = DNSTracker.address(a) else { continue }
            if names.count >= options.maxDNSNames {
                namesDropped += names.count
                names.removeAll(keepingCapacity: true)
            }
            names[ip] = name
        }
    }

    func dnsName(for ip: IPAddress) -> String? { names[ip] }

    // MARK: Ordering

    private func watermark() -> Nanos {
        var w = now
        if let t = reassembler.earliestOpenConnectionStart() { w = min(w, t) }
        if let t = dns.earliestOpenStart { w = min(w, t) }
        if let t = quic.earliestOpenStart { w = min(w, t) }
        return w
    }

    private func release(upTo watermark: Nanos) {
        while let record = ready.popEarliest(before: watermark) {
            stats.calls += 1
            sink(record)
        }
    }

    private func isExcluded(_ host: String) -> Bool {
        for h in options.excludeHosts {
            let x = h.lowercased()
            if host == x || host.hasSuffix("." + x) { return true }
        }
        return false
    }

}

extension Analyzer {
    /// Feeds one capture file (or `-`, standard input) through a decoder into this analyser, without
    /// finishing it (several files are one stream; IP datagrams still missing fragments at the end of a file
    /// are given up). `progress` is told the bytes read so far every 65,536 packets. Used by `calltap read`
    /// and by `analyzeFile` alike.
    public func read(_ reader: PcapFileReader, progress: ((Int) -> Void)? = nil) -> (ReadOutcome, DecodeCounters) {
        var decoder = PacketDecoder(linkType: reader.linkType, fragmentLimits: options.fragments)
        var seenBytes = 0
        let outcome = reader.forEach { frame, wireLength, ts in
            if let p = decoder.decode(frame, wireLength: wireLength, timestamp: ts) { process(p) }
            if let progress {
                seenBytes += frame.count + 16
                if decoder.counters.packets & 0xFFFF == 0 { progress(seenBytes) }
            }
        }
        decoder.finish()
        return (outcome, decoder.counters)
    }

    /// Analyses one capture file start to end and returns its calls in order, the statistics and how
    /// the read ended.
    public static func analyzeFile(_ path: String, options: AnalysisOptions = AnalysisOptions(),
                                   filter: String? = nil) throws -> (calls: [CallRecord], stats: CaptureStats, read: ReadOutcome) {
        let reader = try PcapFileReader(path: path, filter: filter)
        var options = options
        let embedded = DecryptionSecrets.tlsKeyLogs(path: path)
        if !embedded.isEmpty {
            let keyLog = options.keyLog ?? KeyLog()
            for text in embedded { keyLog.add(text: text) }
            options.keyLog = keyLog
        }
        var calls: [CallRecord] = []
        let analyzer = Analyzer(options: options) { calls.append($0) }
        let (outcome, counters) = analyzer.read(reader)
        analyzer.finish()
        return (calls, analyzer.statistics(decoder: counters), outcome)
    }
}
