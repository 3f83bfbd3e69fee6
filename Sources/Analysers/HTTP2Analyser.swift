import Core
import NIOCore
import NIOHPACK

/// One HTTP/2 stream: a request and its response.
public struct HTTP2Stream: Sendable {
    public var id: UInt32
    public var method: String?
    public var authority: String?
    public var path: String?
    public var scheme: String?
    public var status: Int?
    public var interimStatuses: [Int] = []
    public var requestContentType: String?
    public var responseContentType: String?
    public var sessionHints: [String: String] = [:]
    public var requestStart: Nanos?
    public var requestEnd: Nanos?
    public var responseStart: Nanos?
    public var responseEnd: Nanos?
    public var requestBodyBytes = 0
    public var responseBodyBytes = 0
    /// The first `HTTP2Limits.summaryBytes` of each body (DATA payload without padding), for summaries.
    public var requestBodyPrefix: [UInt8] = []
    public var responseBodyPrefix: [UInt8] = []
    /// The bodies of an LLM API exchange, read for its facts (`HTTP2Limits.llmBodyBytes` > 0).
    public var llm: LLMCapture?
    public var requestComplete = false
    public var responseComplete = false
    /// RST_STREAM error code, and whether the client sent it.
    public var resetCode: UInt32?
    public var resetByClient = false
    /// GOAWAY error code when the server did not process the stream.
    public var goAwayCode: UInt32?
    /// Header state was unreliable (a capture gap came before this stream's headers).
    public var afterGap = false
    /// The request arrived as HTTP/1.1 with Upgrade: h2c.
    public var upgraded = false

    init(id: UInt32) { self.id = id }
}

public struct HTTP2Limits: Sendable {
    /// Largest frame payload buffered (headers, settings) whatever a peer's SETTINGS_MAX_FRAME_SIZE allows;
    /// DATA is only counted. A frame longer than the receiver's SETTINGS_MAX_FRAME_SIZE (16,384 until it
    /// says otherwise) is a protocol error (RFC 9113 §4.2) and stops that direction.
    public var maxBufferedFrame = 1 << 20
    /// Largest header block collected across CONTINUATION frames.
    public var maxHeaderBlock = 256 << 10
    /// Streams open at once; beyond it the oldest is handed out unfinished (counted).
    public var maxOpenStreams = 1024
    /// Largest HPACK dynamic table accepted from either side (the receiver's SETTINGS_HEADER_TABLE_SIZE,
    /// 4,096 until it says otherwise, is what the encoder may use).
    public var maxDynamicTable = 1 << 20
    /// Body bytes kept per stream and direction for summaries (`--summaries`); 0 keeps none.
    public var summaryBytes = 0
    /// Body bytes of an LLM API exchange held while it is read (0 = not read); SSE holds one line.
    public var llmBodyBytes = 0
    public init() {}
}

/// Incremental HTTP/2 parser for one connection (RFC 9113): frames both ways, HPACK through NIOHPACK,
/// one result per stream. After a gap in either direction HPACK state is unreliable, so later streams
/// are marked rather than guessed.
public final class HTTP2Analyser {
    struct Side {
        var header: [UInt8] = []
        var frameType: UInt8 = 0
        var flags: UInt8 = 0
        var streamID: UInt32 = 0
        var remaining = 0
        var length = 0
        var payload: [UInt8] = []
        var frameStart: Nanos = 0
        var prefaceLeft: Int
        var lost = false
        /// A header block being collected across CONTINUATION frames.
        var block: [UInt8] = []
        var blockStream: UInt32 = 0
        var blockEndsStream = false
        var blockIsPush = false
        var blockStart: Nanos = 0
        /// Made on this direction's first header block: connections that never send one cost nothing.
        var decoder: HPACKDecoder?
        /// The dynamic table size this direction's receiver allows (its SETTINGS_HEADER_TABLE_SIZE).
        var tableLimit = 4096
        /// The frame size this direction's receiver allows (its SETTINGS_MAX_FRAME_SIZE).
        var maxFrame = 16_384
        /// The receiver's SETTINGS were seen, so its limits are known (else they are not enforced).
        var settingsSeen = false
        /// Bytes of this side counted in the shared parser budget.
        var charged = 0
    }

    /// What a decoder with a dynamic table of `tableSize` may hold, counted in the shared budget: the
    /// table's RFC 7541 size twice over (Swift strings and entries) plus the static table each decoder copies.
    static func decoderCost(tableSize: Int) -> Int { 2 * tableSize + 8192 }

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    public let limits: HTTP2Limits
    private var sides: [Side]
    private var streams: [UInt32: HTTP2Stream] = [:]
    private var order: [UInt32] = []
    private var completed: [HTTP2Stream] = []
    private var sawGap = false
    public private(set) var weirds: [Weird] = []
    public private(set) var droppedStreams = 0
    public private(set) var pushedStreams = 0
    public private(set) var hpackErrors = 0
    /// Directions given up because the shared parser budget was spent.
    public private(set) var budgetRefusals = 0
    private let budget: ParserBudget?

    /// `expectPreface`: the client starts with the connection preface (false when it was already consumed).
    /// `budget`: the byte budget that frame and header-block buffers and HPACK tables draw from.
    public init(limits: HTTP2Limits = HTTP2Limits(), expectPreface: Bool = true, budget: ParserBudget? = nil) {
        self.limits = limits
        self.budget = budget
        sides = [Side(prefaceLeft: expectPreface ? Self.preface.count : 0), Side(prefaceLeft: 0)]
    }

    /// What the LLM captures of open streams hold, as counted in `budget`.
    private var chargedLLM = 0
    /// Open streams with an LLM capture: DATA looks its stream up only for summaries or when there is one.
    private var openLLM = 0

    deinit { budget?.adjust(by: -(sides[0].charged + sides[1].charged + chargedLLM)) }

    /// Counts side `k`'s buffers and HPACK table in the shared budget. When the budget is spent the
    /// direction is given up (its buffers freed, `parser_memory_cap`), so no input can grow it further.
    private func settle(_ k: Int) {
        guard let budget else { return }
        var bytes = sides[k].header.capacity + sides[k].payload.capacity + sides[k].block.capacity
        if let d = sides[k].decoder { bytes += Self.decoderCost(tableSize: d.allowedDynamicTableLength) }
        budget.adjust(by: bytes - sides[k].charged)
        sides[k].charged = bytes
        guard budget.isSpent, !sides[k].lost, bytes > 0 else { return }
        budget.refuse()
        budgetRefusals += 1
        note(.parserMemoryCap)
        lose(k)
    }

    /// Stops side `k` for good and frees what it held.
    private func lose(_ k: Int) {
        sides[k].lost = true
        sides[k].header = []
        sides[k].payload = []
        sides[k].block = []
        sides[k].decoder = nil
        if let budget {
            budget.adjust(by: -sides[k].charged)
            sides[k].charged = 0
        }
    }

    public func takeCompleted() -> [HTTP2Stream] {
        defer { completed.removeAll(keepingCapacity: true) }
        if openLLM > 0 { for s in completed where s.llm != nil { openLLM -= 1 } }
        if let budget, chargedLLM > 0 {
            for i in completed.indices where (completed[i].llm?.charged ?? 0) > 0 {
                budget.adjust(by: -completed[i].llm!.charged)
                chargedLLM -= completed[i].llm!.charged
                completed[i].llm!.charged = 0
            }
        }
        return completed
    }

    /// Stream 1 of an h2c Upgrade: the HTTP/1.1 request whose response arrives as HTTP/2.
    public func adoptUpgradedRequest(method: String?, path: String?, authority: String?, start: Nanos?, end: Nanos?) {
        var s = HTTP2Stream(id: 1)
        s.method = method
        s.path = path
        s.authority = authority
        s.scheme = "http"
        s.requestStart = start
        s.requestEnd = end
        s.requestComplete = true
        s.upgraded = true
        open(s)
    }

    public func deliver(_ direction: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        let k = direction.rawValue
        guard !sides[k].lost else { return }
        var i = 0
        let n = data.count
        if sides[k].prefaceLeft > 0 {
            let offset = Self.preface.count - sides[k].prefaceLeft
            let take = min(sides[k].prefaceLeft, n)
            for j in 0..<take where data[j] != Self.preface[offset + j] {
                note(.http2BadPreface)
                lose(k)
                return
            }
            sides[k].prefaceLeft -= take
            i = take
        }
        while i < n {
            if sides[k].remaining == 0 && sides[k].header.count < 9 {
                if sides[k].header.isEmpty { sides[k].frameStart = time }
                let take = min(9 - sides[k].header.count, n - i)
                sides[k].header.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<(i + take)]))
                i += take
                guard sides[k].header.count == 9 else { break }
                let h = sides[k].header
                sides[k].length = Int(h[0]) << 16 | Int(h[1]) << 8 | Int(h[2])
                sides[k].frameType = h[3]
                sides[k].flags = h[4]
                sides[k].streamID = (UInt32(h[5]) << 24 | UInt32(h[6]) << 16 | UInt32(h[7]) << 8 | UInt32(h[8])) & 0x7FFF_FFFF
                sides[k].remaining = sides[k].length
                sides[k].payload.removeAll(keepingCapacity: true)
                // Longer than the receiver allows is a protocol error whatever the type (RFC 9113 §4.2);
                // the length is never used to size a buffer.
                // DATA is counted, never kept: only the receiver's own limit applies to it. Without the
                // receiver's SETTINGS (an h2c Upgrade carries them in a header) only our buffer cap does.
                let allowed = sides[k].settingsSeen ? sides[k].maxFrame : Int.max
                if sides[k].length > (sides[k].frameType == 0 ? allowed : min(allowed, limits.maxBufferedFrame)) {
                    note(.http2FrameTooLarge)
                    lose(k)
                    return
                }
                if sides[k].remaining == 0 { frameComplete(k); if sides[k].lost { return } }
                continue
            }
            let take = min(sides[k].remaining, n - i)
            // DATA payloads are counted, not kept: only the pad-length byte matters (and, for summaries,
            // a body's first bytes).
            if sides[k].frameType != 0 || sides[k].payload.isEmpty {
                let keep = sides[k].frameType == 0 ? min(take, 1) : take
                let before = sides[k].payload.capacity
                sides[k].payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<(i + keep)]))
                if sides[k].payload.capacity != before { settle(k); if sides[k].lost { return } }
            }
            if sides[k].frameType == 0 && (limits.summaryBytes > 0 || openLLM > 0) {
                keepBodyPrefix(k, UnsafeRawBufferPointer(rebasing: data[i..<(i + take)]), at: sides[k].length - sides[k].remaining)
            }
            i += take
            sides[k].remaining -= take
            if sides[k].remaining == 0 { frameComplete(k); if sides[k].lost { return } }
        }
    }

    /// Adds the body bytes of a DATA chunk (at offset `pos` of its frame's payload) to its stream's
    /// prefix, up to `summaryBytes`: the pad-length byte and the padding are not body.
    private func keepBodyPrefix(_ k: Int, _ chunk: UnsafeRawBufferPointer, at pos: Int) {
        var start = 0, end = sides[k].length
        if sides[k].flags & 0x08 != 0 {
            guard let pad = sides[k].payload.first else { return }
            start = 1
            end -= Int(pad)
        }
        let from = max(pos, start), to = min(pos + chunk.count, end)
        let id = sides[k].streamID
        guard from < to, id != 0, streams[id] != nil else { return }
        let limit = limits.summaryBytes
        let bytes = UnsafeRawBufferPointer(rebasing: chunk[(from - pos)..<(to - pos)])
        if streams[id]!.llm != nil {
            if k == 0 { streams[id]!.llm!.request(bytes) } else { streams[id]!.llm!.response(bytes, at: sides[k].frameStart) }
            if let budget { chargedLLM += budget.settle(&streams[id]!.llm!) }
        }
        if k == 0 {
            let room = limit - streams[id]!.requestBodyPrefix.count
            if room > 0 { streams[id]!.requestBodyPrefix.append(contentsOf: bytes.prefix(room)) }
        } else {
            let room = limit - streams[id]!.responseBodyPrefix.count
            if room > 0 { streams[id]!.responseBodyPrefix.append(contentsOf: bytes.prefix(room)) }
        }
    }

    /// Bytes lost in one direction: frame alignment and HPACK state are gone for that direction.
    public func gap(_ direction: Direction, length: Int) {
        let k = direction.rawValue
        sawGap = true
        if !sides[k].lost {
            lose(k)
            note(.http2Gap)
        }
    }

    /// The connection is over: open streams are handed out as they stand.
    public func finish() {
        for id in order { if let s = streams[id] { completed.append(s) } }
        streams.removeAll()
        order.removeAll()
    }

    // MARK: Frames

    private func note(_ w: Weird) {
        if !weirds.contains(w) { weirds.append(w) }
    }

    private func frameComplete(_ k: Int) {
        let type = sides[k].frameType, flags = sides[k].flags, id = sides[k].streamID
        let time = sides[k].frameStart
        let payload = sides[k].payload
        sides[k].header.removeAll(keepingCapacity: true)
        let fromClient = k == 0
        switch type {
        case 0x0: // DATA
            var body = sides[k].length
            if flags & 0x08 != 0, let pad = payload.first { body -= 1 + Int(pad) }
            update(id) { s in
                if fromClient {
                    s.requestBodyBytes += max(0, body)
                } else {
                    if s.responseStart == nil { s.responseStart = time }
                    s.responseBodyBytes += max(0, body)
                }
            }
            if flags & 0x01 != 0 { endStream(id, fromClient: fromClient, at: time) }
        case 0x1, 0x5: // HEADERS, PUSH_PROMISE
            var c = 0
            var padding = 0
            if flags & 0x08 != 0 { guard let p = payload.first else { return malformed() }; padding = Int(p); c = 1 }
            var target = id
            if type == 0x5 {
                guard payload.count >= c + 4 else { return malformed() }
                target = (UInt32(payload[c]) << 24 | UInt32(payload[c + 1]) << 16 | UInt32(payload[c + 2]) << 8
                    | UInt32(payload[c + 3])) & 0x7FFF_FFFF
                c += 4
                pushedStreams += 1
            } else if flags & 0x20 != 0 {
                c += 5
            }
            guard payload.count >= c + padding else { return malformed() }
            sides[k].block = Array(payload[c..<(payload.count - padding)])
            settle(k)
            if sides[k].lost { return }
            sides[k].blockStream = target
            sides[k].blockEndsStream = type == 0x1 && flags & 0x01 != 0
            sides[k].blockIsPush = type == 0x5
            sides[k].blockStart = time
            if flags & 0x04 != 0 { headerBlockComplete(k) }
        case 0x9: // CONTINUATION
            guard id == sides[k].blockStream else { return malformed() }
            sides[k].block += payload
            if sides[k].block.count > limits.maxHeaderBlock { note(.http2FrameTooLarge); lose(k); return }
            settle(k)
            if sides[k].lost { return }
            if flags & 0x04 != 0 { headerBlockComplete(k) }
        case 0x3: // RST_STREAM
            guard payload.count >= 4 else { return malformed() }
            let code = UInt32(payload[0]) << 24 | UInt32(payload[1]) << 16 | UInt32(payload[2]) << 8 | UInt32(payload[3])
            update(id) { s in
                s.resetCode = code
                s.resetByClient = fromClient
                if !fromClient && s.responseEnd == nil { s.responseEnd = time }
            }
            close(id)
        case 0x7: // GOAWAY
            guard payload.count >= 8 else { return malformed() }
            let last = (UInt32(payload[0]) << 24 | UInt32(payload[1]) << 16 | UInt32(payload[2]) << 8 | UInt32(payload[3])) & 0x7FFF_FFFF
            let code = UInt32(payload[4]) << 24 | UInt32(payload[5]) << 16 | UInt32(payload[6]) << 8 | UInt32(payload[7])
            if !fromClient {
                for sid in order where sid > last && sid % 2 == 1 {
                    update(sid) { $0.goAwayCode = code }
                    close(sid)
                }
            }
        case 0x4: // SETTINGS: what this sender, as a receiver, allows the other direction to use.
            guard flags & 0x01 == 0 else { break } // an ACK carries nothing
            guard payload.count % 6 == 0 else { return malformed() }
            let other = 1 - k
            sides[other].settingsSeen = true
            var j = 0
            while j + 6 <= payload.count {
                let id = UInt16(payload[j]) << 8 | UInt16(payload[j + 1])
                let value = Int(payload[j + 2]) << 24 | Int(payload[j + 3]) << 16 | Int(payload[j + 4]) << 8 | Int(payload[j + 5])
                j += 6
                switch id {
                case 0x1: // HEADER_TABLE_SIZE
                    sides[other].tableLimit = min(value, limits.maxDynamicTable)
                    let tableSize = sides[other].tableLimit
                    sides[other].decoder?.maxDynamicTableLength = tableSize
                    if !sides[other].lost { settle(other) }
                case 0x5: // MAX_FRAME_SIZE: 16,384 to 16,777,215 (RFC 9113 §6.5.2)
                    if (16_384...16_777_215).contains(value) { sides[other].maxFrame = value }
                default: break
                }
            }
        default:
            break // PRIORITY, PING, WINDOW_UPDATE, unknown extension frames
        }
    }

    private func malformed() {
        note(.http2MalformedFrame)
    }

    private func headerBlockComplete(_ k: Int) {
        let fromClient = k == 0
        let id = sides[k].blockStream
        let time = sides[k].blockStart
        var buffer = ByteBuffer(bytes: sides[k].block)
        sides[k].block = []
        if sides[k].decoder == nil {
            // Made at the protocol's initial 4,096 (its storage is sized from that), then allowed what the
            // receiver said, or our cap when its SETTINGS were not seen; the table grows only with what the
            // encoder puts in it.
            var d = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096,
                                 maxHeaderListSize: limits.maxHeaderBlock)
            d.maxDynamicTableLength = sides[k].settingsSeen ? sides[k].tableLimit : limits.maxDynamicTable
            sides[k].decoder = d
        }
        settle(k)
        if sides[k].lost { return }
        let headers: HPACKHeaders
        do {
            headers = try sides[k].decoder!.decodeHeaders(from: &buffer)
        } catch {
            // A header block that does not decode leaves the dynamic table unknown: stop this direction.
            hpackErrors += 1
            note(.http2HPACKError)
            lose(k)
            return
        }
        settle(k) // the table may have grown (a size update)
        if sides[k].lost { return }
        if sides[k].blockIsPush { return } // pushed streams are counted, not reported as calls
        let after = sawGap
        if fromClient {
            if streams[id] == nil {
                var s = HTTP2Stream(id: id)
                s.requestStart = time
                s.afterGap = after
                open(s)
            }
            update(id) { s in
                if s.method == nil { // the request head (a later block is trailers)
                    s.method = headers.first(name: ":method")
                    s.authority = headers.first(name: ":authority") ?? headers.first(name: "host")
                    s.path = headers.first(name: ":path")
                    s.scheme = headers.first(name: ":scheme")
                    s.requestContentType = headers.first(name: "content-type")
                    for name in ["baggage", "x-session-id", "traceparent", "session_id", "conversation_id"] {
                        if let v = headers.first(name: name) { s.sessionHints[name] = v }
                    }
                    if self.limits.llmBodyBytes > 0, let api = LLMAPI.match(method: s.method, target: s.path) {
                        s.llm = LLMCapture(api: api, cap: self.limits.llmBodyBytes,
                                           requestEncoding: headers.first(name: "content-encoding")?.lowercased())
                        self.openLLM += 1
                    }
                }
            }
        } else {
            update(id) { s in
                if s.responseStart == nil { s.responseStart = time }
                if let st = headers.first(name: ":status").flatMap(Int.init) {
                    if st >= 100 && st < 200 { s.interimStatuses.append(st) } else if s.status == nil {
                        s.status = st
                        s.responseContentType = headers.first(name: "content-type")
                        s.llm?.responseHead(contentType: s.responseContentType,
                                            contentEncoding: headers.first(name: "content-encoding")?.lowercased())
                    }
                }
            }
        }
        if sides[k].blockEndsStream { endStream(id, fromClient: fromClient, at: time) }
    }

    // MARK: Streams

    private func open(_ s: HTTP2Stream) {
        if streams.count >= limits.maxOpenStreams, let oldest = order.first {
            droppedStreams += 1
            note(.http2StreamsCap)
            close(oldest)
        }
        streams[s.id] = s
        order.append(s.id)
    }

    private func update(_ id: UInt32, _ change: (inout HTTP2Stream) -> Void) {
        guard id != 0, var s = streams[id] else { return }
        change(&s)
        streams[id] = s
    }

    private func endStream(_ id: UInt32, fromClient: Bool, at time: Nanos) {
        update(id) { s in
            if fromClient {
                s.requestEnd = time
                s.requestComplete = true
            } else {
                s.responseEnd = time
                s.responseComplete = true
            }
        }
        if let s = streams[id], s.responseComplete { close(id) }
    }

    private func close(_ id: UInt32) {
        guard let s = streams.removeValue(forKey: id) else { return }
        order.removeAll { $0 == id }
        completed.append(s)
    }

    /// RFC 9113 error code names, for `error`.
    public static func errorName(_ code: UInt32) -> String {
        switch code {
        case 0x0: return "NO_ERROR"
        case 0x1: return "PROTOCOL_ERROR"
        case 0x2: return "INTERNAL_ERROR"
        case 0x3: return "FLOW_CONTROL_ERROR"
        case 0x4: return "SETTINGS_TIMEOUT"
        case 0x5: return "STREAM_CLOSED"
        case 0x6: return "FRAME_SIZE_ERROR"
        case 0x7: return "REFUSED_STREAM"
        case 0x8: return "CANCEL"
        case 0x9: return "COMPRESSION_ERROR"
        case 0xA: return "CONNECT_ERROR"
        case 0xB: return "ENHANCE_YOUR_CALM"
        case 0xC: return "INADEQUATE_SECURITY"
        case 0xD: return "HTTP_1_1_REQUIRED"
        default: return "0x" + String(code, radix: 16)
        }
    }
}
