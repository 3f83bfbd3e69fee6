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
    public var requestStart: Timestamp?
    public var requestEnd: Timestamp?
    public var responseStart: Timestamp?
    public var responseEnd: Timestamp?
    public var requestBodyBytes = 0
    public var responseBodyBytes = 0
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
    /// Largest frame payload buffered (headers, settings); DATA is only counted.
    public var maxBufferedFrame = 1 << 20
    /// Streams open at once; beyond it the oldest is handed out unfinished (counted).
    public var maxOpenStreams = 1024
    /// Largest HPACK dynamic table accepted from either side.
    public var maxDynamicTable = 1 << 20
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
        var frameStart: Timestamp = 0
        var prefaceLeft: Int
        var lost = false
        /// A header block being collected across CONTINUATION frames.
        var block: [UInt8] = []
        var blockStream: UInt32 = 0
        var blockEndsStream = false
        var blockIsPush = false
        var blockStart: Timestamp = 0
        var decoder: HPACKDecoder
    }

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

    /// `expectPreface`: the client starts with the connection preface (false when it was already consumed).
    public init(limits: HTTP2Limits = HTTP2Limits(), expectPreface: Bool = true) {
        self.limits = limits
        let allocator = ByteBufferAllocator()
        func decoder() -> HPACKDecoder {
            HPACKDecoder(allocator: allocator, maxDynamicTableSize: limits.maxDynamicTable, maxHeaderListSize: 1 << 20)
        }
        sides = [Side(prefaceLeft: expectPreface ? Self.preface.count : 0, decoder: decoder()),
                 Side(prefaceLeft: 0, decoder: decoder())]
    }

    public func takeCompleted() -> [HTTP2Stream] {
        defer { completed.removeAll(keepingCapacity: true) }
        return completed
    }

    /// Stream 1 of an h2c Upgrade: the HTTP/1.1 request whose response arrives as HTTP/2.
    public func adoptUpgradedRequest(method: String?, path: String?, authority: String?, start: Timestamp?, end: Timestamp?) {
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

    public func deliver(fromClient: Bool, _ data: UnsafeRawBufferPointer, at time: Timestamp) {
        let k = fromClient ? 0 : 1
        guard !sides[k].lost else { return }
        var i = 0
        let n = data.count
        if sides[k].prefaceLeft > 0 {
            let offset = Self.preface.count - sides[k].prefaceLeft
            let take = min(sides[k].prefaceLeft, n)
            for j in 0..<take where data[j] != Self.preface[offset + j] {
                note(.http2BadPreface)
                sides[k].lost = true
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
                if sides[k].length > limits.maxBufferedFrame && sides[k].frameType != 0 {
                    note(.http2FrameTooLarge)
                    sides[k].lost = true
                    return
                }
                if sides[k].remaining == 0 { frameComplete(k) }
                continue
            }
            let take = min(sides[k].remaining, n - i)
            // DATA payloads are counted, not kept: only the pad-length byte matters.
            if sides[k].frameType != 0 || sides[k].payload.isEmpty {
                let keep = sides[k].frameType == 0 ? min(take, 1) : take
                sides[k].payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<(i + keep)]))
            }
            i += take
            sides[k].remaining -= take
            if sides[k].remaining == 0 { frameComplete(k) }
        }
    }

    /// Bytes lost in one direction: frame alignment and HPACK state are gone for that direction.
    public func gap(fromClient: Bool, length: Int) {
        let k = fromClient ? 0 : 1
        sawGap = true
        if !sides[k].lost {
            sides[k].lost = true
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
            sides[k].blockStream = target
            sides[k].blockEndsStream = type == 0x1 && flags & 0x01 != 0
            sides[k].blockIsPush = type == 0x5
            sides[k].blockStart = time
            if flags & 0x04 != 0 { headerBlockComplete(k) }
        case 0x9: // CONTINUATION
            guard id == sides[k].blockStream else { return malformed() }
            sides[k].block += payload
            if sides[k].block.count > limits.maxBufferedFrame { note(.http2FrameTooLarge); sides[k].lost = true; return }
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
        case 0x4: // SETTINGS: HEADER_TABLE_SIZE limits what the peer's encoder may use; we accept up to our cap.
            break
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
        let headers: HPACKHeaders
        do {
            headers = try sides[k].decoder.decodeHeaders(from: &buffer)
        } catch {
            // A header block that does not decode leaves the dynamic table unknown: stop this direction.
            hpackErrors += 1
            note(.http2HPACKError)
            sides[k].lost = true
            return
        }
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
                    for name in ["baggage", "x-session-id"] { if let v = headers.first(name: name) { s.sessionHints[name] = v } }
                }
            }
        } else {
            update(id) { s in
                if s.responseStart == nil { s.responseStart = time }
                if let st = headers.first(name: ":status").flatMap(Int.init) {
                    if st >= 100 && st < 200 { s.interimStatuses.append(st) } else if s.status == nil {
                        s.status = st
                        s.responseContentType = headers.first(name: "content-type")
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

    private func endStream(_ id: UInt32, fromClient: Bool, at time: Timestamp) {
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
