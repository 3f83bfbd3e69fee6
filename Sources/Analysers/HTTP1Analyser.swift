import Core

/// Incremental HTTP/1.x parser for one connection, both directions. Bytes in, exchanges out:
/// requests and responses are paired in order (pipelining included); bodies are framed by
/// Content-Length, chunked encoding (with trailers) or connection close; HEAD, 1xx, 204 and 304
/// carry no body. After CONNECT 2xx or 101 the analyser stops and says how many bytes it used,
/// so the caller can hand the rest of the stream to protocol detection.
public final class HTTP1Analyser {
    enum State: Equatable {
        case idle
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        /// After a CONNECT or Upgrade request: hold client bytes until the response decides.
        case awaitingSwitch
        case switched
        /// Lost sync after a gap or garbage; wait for a segment that starts a message.
        case lost
    }

    struct Stream {
        var state: State = .idle
        var buffer: [UInt8] = []
        var messageStart: Nanos = 0
        var bodyBytes = 0
        var missed = 0
        var seenEOF = false
        /// Time of the last body byte, which ends a close-delimited message (not the FIN after it).
        var lastBodyTime: Nanos = 0
    }

    public let limits: HTTPLimits
    private var streams = [Stream(), Stream()]
    /// Exchanges whose request was seen, waiting for (or receiving) their response, oldest first.
    private var pending: [HTTPExchange] = []
    /// Index in `pending` of the exchange whose request is being received.
    private var requestIndex: Int?
    /// Finished exchanges, oldest first; the caller takes them with `takeCompleted()`.
    private var completed: [HTTPExchange] = []
    /// Bytes held from the client while a switch is pending.
    public private(set) var heldClientBytes: [UInt8] = []
    public private(set) var malformedMessages = 0
    public private(set) var droppedPendingRequests = 0
    /// Set once the connection switched protocols; the caller re-detects what follows.
    public private(set) var switched = false

    /// Shared with the other connections' parsers; nil: only the per-buffer caps apply.
    private let budget: ParserBudget?
    /// Buffer capacity of each side currently counted in `budget`.
    private var charged = [0, 0]

    public init(limits: HTTPLimits = HTTPLimits(), budget: ParserBudget? = nil) {
        self.limits = limits
        self.budget = budget
    }

    /// Requests waiting for their responses, as counted in `budget`.
    private var chargedPending = 0
    /// What one waiting exchange is counted as: the record and its head's strings.
    public static let pendingCost = MemoryLayout<HTTPExchange>.stride + 256

    /// What the LLM captures of waiting exchanges hold, as counted in `budget`.
    private var chargedLLM = 0
    /// Waiting exchanges with an LLM capture: the body path looks for one only when there is one.
    private var openLLM = 0

    deinit { budget?.adjust(by: -(charged[0] + charged[1] + chargedPending + chargedLLM)) }

    /// Counts the waiting exchanges in the shared budget.
    private func settlePending() {
        guard let budget else { return }
        let bytes = pending.count * Self.pendingCost
        if bytes != chargedPending {
            budget.adjust(by: bytes - chargedPending)
            chargedPending = bytes
        }
    }

    public func takeCompleted() -> [HTTPExchange] {
        defer { completed.removeAll(keepingCapacity: true) }
        if openLLM > 0 { for x in completed where x.llm != nil { openLLM -= 1 } }
        if let budget, chargedLLM > 0 {
            for i in completed.indices where (completed[i].llm?.charged ?? 0) > 0 {
                budget.adjust(by: -completed[i].llm!.charged)
                chargedLLM -= completed[i].llm!.charged
                completed[i].llm!.charged = 0
            }
        }
        return completed
    }


    /// Feeds bytes from one side. Returns how many were consumed: fewer than given only after a
    /// protocol switch, when the rest belongs to whatever runs inside.
    @discardableResult
    public func deliver(_ side: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) -> Int {
        let used = parse(side, data, at: time)
        if budget != nil {
            settleBudget(side)
            settlePending()
        }
        return used
    }

    /// Counts this side's buffer in the shared budget; when the budget is spent, the message whose
    /// buffer just grew is given up (counted) and its memory released.
    private func settleBudget(_ side: Direction) {
        guard let budget else { return }
        let k = side.rawValue
        let capacity = streams[k].buffer.capacity
        if capacity == charged[k] { return } // nothing grew or shrank: every body segment
        budget.adjust(by: capacity - charged[k])
        charged[k] = capacity
        guard budget.isSpent, capacity > 0, streams[k].state != .idle, streams[k].state != .lost else { return }
        budget.refuse()
        giveUpHead(side, &streams[k], .parserMemoryCap)
        streams[k].buffer = []
        budget.adjust(by: -charged[k])
        charged[k] = 0
    }

    private func parse(_ side: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) -> Int {
        var s = streams[side.rawValue]
        // Leave no second reference to the head buffer behind, so appending to it does not copy it;
        // every exit below writes `s` back.
        streams[side.rawValue].buffer = []
        var i = 0
        let n = data.count
        if s.state == .lost {
            if looksLikeMessageStart(side, data) { s.state = .idle } else { streams[side.rawValue] = s; return n }
        }
        while i < n {
            switch s.state {
            case .idle:
                let b = data[i]
                if b == 0x0D || b == 0x0A { i += 1; continue } // tolerate stray CRLF between messages
                s.state = .head
                s.messageStart = time
                // Keep a small buffer for the next head; give a large one (an earlier huge head) back.
                if s.buffer.capacity > 8192 { s.buffer = [] } else { s.buffer.removeAll(keepingCapacity: true) }
                s.bodyBytes = 0
                s.missed = 0
                if side == .toServer { beginRequest(at: time) } else { beginResponse(at: time) }
            case .head:
                // Copy line by line up to the blank line ("\n\n" or "\n\r\n") that ends the head.
                var done = false
                while i < n && !done {
                    guard let lf = indexOfLF(data, from: i) else {
                        s.buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<n]))
                        i = n
                        break
                    }
                    s.buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i...lf]))
                    i = lf + 1
                    let c = s.buffer.count
                    done = (c >= 2 && s.buffer[c - 2] == 0x0A) || (c >= 3 && s.buffer[c - 2] == 0x0D && s.buffer[c - 3] == 0x0A)
                    if s.buffer.count > limits.maxHeadBytes { break }
                }
                if s.buffer.count > limits.maxHeadBytes {
                    giveUpHead(side, &s, .headerTooLong)
                    continue
                }
                if done {
                    streams[side.rawValue] = s
                    headComplete(side, &s, at: time)
                    if s.state == .switched {
                        streams[side.rawValue] = s
                        return i
                    }
                }
            case let .body(remaining):
                let take = min(remaining, n - i)
                addBody(side, &s, UnsafeRawBufferPointer(rebasing: data[i..<(i + take)]), at: time)
                i += take
                if take == remaining { messageComplete(side, &s, at: time) } else { s.state = .body(remaining: remaining - take) }
            case .chunkSize, .trailers, .chunkDataEnd:
                guard let lineEnd = indexOfLF(data, from: i) else {
                    s.buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<n]))
                    i = n
                    if s.buffer.count > 4096 { markWeird(side, .badChunkSize); abandonMessage(side, &s) }
                    continue
                }
                s.buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<lineEnd]))
                i = lineEnd + 1
                let line = trimmedLine(s.buffer)
                s.buffer.removeAll(keepingCapacity: true)
                switch s.state {
                case .chunkSize:
                    guard let size = parseChunkSize(line) else {
                        markWeird(side, .badChunkSize)
                        abandonMessage(side, &s)
                        continue
                    }
                    s.state = size == 0 ? .trailers : .chunkData(remaining: size)
                case .chunkDataEnd:
                    if !line.isEmpty { markWeird(side, .badChunkSize) }
                    s.state = .chunkSize
                default: // trailers: an empty line ends the message
                    if line.isEmpty { messageComplete(side, &s, at: time) }
                }
            case let .chunkData(remaining):
                let take = min(remaining, n - i)
                addBody(side, &s, UnsafeRawBufferPointer(rebasing: data[i..<(i + take)]), at: time)
                i += take
                s.state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .untilClose:
                addBody(side, &s, UnsafeRawBufferPointer(rebasing: data[i..<n]), at: time)
                i = n
            case .awaitingSwitch:
                let room = max(0, limits.maxHeldBytes - heldClientBytes.count)
                heldClientBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<min(n, i + room)]))
                i = n
            case .switched:
                streams[side.rawValue] = s
                return i
            case .lost:
                i = n
            }
        }
        streams[side.rawValue] = s
        return n
    }

    /// `length` bytes from `side` were lost. Inside a body of known length parsing goes on; anywhere
    /// else the message in progress is given up and the parser waits for a new message to start.
    public func gap(_ side: Direction, length: Int, at time: Nanos) {
        var s = streams[side.rawValue]
        defer { streams[side.rawValue] = s }
        switch s.state {
        case let .body(remaining) where length < remaining:
            s.state = .body(remaining: remaining - length)
            noteMissed(side, length, weird: .contentGap)
        case let .body(remaining) where length == remaining:
            noteMissed(side, length, weird: .contentGap)
            messageComplete(side, &s, at: time)
        case let .chunkData(remaining) where length <= remaining:
            s.state = length == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - length)
            noteMissed(side, length, weird: .contentGap)
        case .untilClose:
            noteMissed(side, length, weird: .contentGap)
        case .idle, .lost, .switched:
            if s.state == .idle { s.state = .lost }
        case .awaitingSwitch:
            break
        default:
            noteMissed(side, length, weird: .gapInHeaders)
            abandonMessage(side, &s)
        }
    }

    /// The side closed its stream: a close-delimited response is complete.
    public func endOfStream(_ side: Direction, at time: Nanos) {
        var s = streams[side.rawValue]
        s.seenEOF = true
        if s.state == .untilClose { messageComplete(side, &s, at: s.bodyBytes > 0 ? s.lastBodyTime : time) }
        streams[side.rawValue] = s
    }

    /// The connection is over: every exchange still open is handed out as it stands.
    public func finish() {
        if streams[0].state == .head { keepRequestLine(from: streams[0].buffer) }
        // Messages cut short keep the body bytes seen so far.
        if let r = requestIndex { pending[r].requestBodyBytes = streams[0].bodyBytes }
        if let r = responseIndex, pending[r].response != nil { pending[r].responseBodyBytes = streams[1].bodyBytes }
        completed.append(contentsOf: pending)
        pending.removeAll()
        settlePending()
        requestIndex = nil
    }

    // MARK: - Message events

    private func beginRequest(at time: Nanos) {
        // Beyond the per-connection cap, or once all parsers together spent the shared budget, the oldest
        // unanswered request is handed out as it stands (counted), so pipelining cannot grow memory.
        if pending.count >= limits.maxPendingRequests || (budget?.isSpent == true && !pending.isEmpty) {
            var oldest = pending.removeFirst()
            oldest.weirds.append(.pendingRequestsCap)
            droppedPendingRequests += 1
            completed.append(oldest)
            if let r = requestIndex { requestIndex = r > 0 ? r - 1 : nil }
        }
        var x = HTTPExchange()
        x.requestStart = time
        pending.append(x)
        requestIndex = pending.count - 1
        settlePending()
    }

    /// The exchange a response belongs to: the oldest one without a final response.
    private var responseIndex: Int? { pending.firstIndex { !$0.responseComplete } }

    private func beginResponse(at time: Nanos) {
        if let r = responseIndex {
            if pending[r].responseStart == nil { pending[r].responseStart = time }
        } else {
            var x = HTTPExchange()
            x.responseStart = time
            x.weirds.append(.unmatchedResponse)
            pending.append(x)
        }
    }

    private func headComplete(_ side: Direction, _ s: inout Stream, at time: Nanos) {
        var head = HTTPHead(isRequest: side == .toServer)
        let ok = s.buffer.withUnsafeBytes { HTTPHeadParser.parse($0, into: &head) }
        s.buffer.removeAll(keepingCapacity: true)
        if !ok {
            malformedMessages += 1
            markWeird(side, side == .toServer ? .malformedRequestLine : .malformedStatusLine)
            if side == .toServer, let r = requestIndex {
                // Keep what was there (the method may still be readable) and stop parsing this stream.
                pending[r].request = head
                pending[r].requestComplete = true
                pending[r].requestEnd = time
                requestIndex = nil
            }
            s.state = .lost
            return
        }
        if side == .toServer {
            guard let r = requestIndex else { s.state = .lost; return }
            pending[r].request = head
            if limits.llmBodyBytes > 0, let api = LLMAPI.match(method: head.method, target: head.target) {
                pending[r].llm = LLMCapture(api: api, cap: limits.llmBodyBytes, requestEncoding: head.contentEncoding)
                openLLM += 1
            }
            if head.chunked {
                s.state = .chunkSize
            } else if let len = head.contentLength, len > 0 {
                s.state = .body(remaining: len)
            } else {
                messageComplete(side, &s, at: time)
            }
            if head.method == "CONNECT" || (head.upgrade != nil && head.connectionUpgrade) {
                if s.state == .idle { s.state = .awaitingSwitch }
            }
            return
        }
        guard let r = responseIndex else { s.state = .lost; return }
        let status = head.status
        if status >= 100 && status < 200 && status != 101 {
            pending[r].interimStatuses.append(status)
            pending[r].weirds.append(contentsOf: head.weirds)
            s.state = .idle
            return
        }
        pending[r].response = head
        pending[r].llm?.responseHead(contentType: head.contentType, contentEncoding: head.contentEncoding)
        let method = pending[r].request?.method ?? ""
        if status == 101 || (method == "CONNECT" && status >= 200 && status < 300) {
            pending[r].switchedProtocols = true
            pending[r].responseEnd = time
            pending[r].responseComplete = true
            s.state = .switched
            streams[Direction.toServer.rawValue].state = .switched
            switched = true
            flushCompleted()
            return
        }
        if streams[0].state == .awaitingSwitch {
            // The switch was refused: the held client bytes are ordinary HTTP again.
            streams[0].state = .idle
            let held = heldClientBytes
            heldClientBytes = []
            if !held.isEmpty {
                streams[1] = s
                held.withUnsafeBytes { _ = deliver(.toServer, $0, at: time) }
                s = streams[1]
            }
        }
        if method == "HEAD" || status == 204 || status == 304 || (status >= 100 && status < 200) {
            messageComplete(side, &s, at: time)
        } else if head.chunked {
            s.state = .chunkSize
        } else if let len = head.contentLength {
            if len > 0 { s.state = .body(remaining: len) } else { messageComplete(side, &s, at: time) }
        } else {
            s.state = .untilClose
            if s.seenEOF { messageComplete(side, &s, at: time) }
        }
    }

    private func addBody(_ side: Direction, _ s: inout Stream, _ bytes: UnsafeRawBufferPointer, at time: Nanos) {
        s.bodyBytes += bytes.count
        if !bytes.isEmpty { s.lastBodyTime = time }
        if openLLM > 0 {
            if side == .toServer, let r = requestIndex, pending[r].llm != nil {
                pending[r].llm!.request(bytes)
                if let budget { chargedLLM += budget.settle(&pending[r].llm!) }
            } else if side == .toClient, let r = responseIndex, pending[r].llm != nil {
                pending[r].llm!.response(bytes, at: time)
                if let budget { chargedLLM += budget.settle(&pending[r].llm!) }
            }
        }
        guard limits.summaryBytes > 0 else { return }
        if side == .toServer, let r = requestIndex, pending[r].requestBodyPrefix.count < limits.summaryBytes {
            let take = min(bytes.count, limits.summaryBytes - pending[r].requestBodyPrefix.count)
            pending[r].requestBodyPrefix.append(contentsOf: bytes.prefix(take))
        } else if side == .toClient, let r = responseIndex, pending[r].responseBodyPrefix.count < limits.summaryBytes {
            let take = min(bytes.count, limits.summaryBytes - pending[r].responseBodyPrefix.count)
            pending[r].responseBodyPrefix.append(contentsOf: bytes.prefix(take))
        }
    }

    private func messageComplete(_ side: Direction, _ s: inout Stream, at time: Nanos) {
        if side == .toServer {
            if let r = requestIndex {
                pending[r].requestEnd = time
                pending[r].requestBodyBytes = s.bodyBytes
                pending[r].requestComplete = true
            }
            requestIndex = nil
        } else if let r = responseIndex {
            pending[r].responseEnd = time
            pending[r].responseBodyBytes = s.bodyBytes
            pending[r].responseComplete = true
        }
        s.state = .idle
        s.bodyBytes = 0
        flushCompleted()
    }

    /// Moves exchanges whose response is complete (and request, when one was seen) out, in order.
    private func flushCompleted() {
        var moved = 0
        while moved < pending.count, pending[moved].responseComplete,
              pending[moved].requestComplete || pending[moved].request == nil, moved != requestIndex {
            moved += 1
        }
        guard moved > 0 else { return }
        completed.append(contentsOf: pending[0..<moved])
        pending.removeFirst(moved)
        if let r = requestIndex { requestIndex = r - moved }
    }

    /// A head given up before its end (too long, or the shared budget spent): the message is abandoned,
    /// but a request keeps its request line so the record still says what was asked.
    private func giveUpHead(_ side: Direction, _ s: inout Stream, _ weird: Weird) {
        if side == .toServer { keepRequestLine(from: s.buffer) }
        markWeird(side, weird)
        abandonMessage(side, &s)
    }

    /// Parses just the request line of the request being received, when its head never completed.
    private func keepRequestLine(from buffer: [UInt8]) {
        guard let r = requestIndex, pending[r].request == nil else { return }
        pending[r].request = buffer.withUnsafeBytes { HTTPHeadParser.requestLine($0) }
    }

    private func abandonMessage(_ side: Direction, _ s: inout Stream) {
        malformedMessages += 1
        s.buffer.removeAll(keepingCapacity: true)
        s.state = .lost
        if side == .toServer { requestIndex = nil }
    }

    private func markWeird(_ side: Direction, _ weird: Weird) {
        if side == .toServer, let r = requestIndex {
            pending[r].weirds.append(weird)
        } else if side == .toClient, let r = responseIndex {
            pending[r].weirds.append(weird)
        } else if let last = pending.indices.last {
            pending[last].weirds.append(weird)
        }
    }

    private func noteMissed(_ side: Direction, _ length: Int, weird: Weird) {
        let index = side == .toServer ? requestIndex : responseIndex
        if let r = index ?? pending.indices.last {
            pending[r].missedBytes += length
            if !pending[r].weirds.contains(weird) { pending[r].weirds.append(weird) }
        }
    }

    /// Whether a segment plausibly begins a message, to resume after losing sync.
    private func looksLikeMessageStart(_ side: Direction, _ data: UnsafeRawBufferPointer) -> Bool {
        if side == .toClient { return HTTPDetector.looksLikeResponse(data) }
        return HTTPDetector.looksLikeRequest(data)
    }
}

@inline(__always) func indexOfLF(_ data: UnsafeRawBufferPointer, from: Int) -> Int? {
    var j = from
    while j < data.count {
        if data[j] == 0x0A { return j }
        j += 1
    }
    return nil
}

func trimmedLine(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
    var end = bytes.count
    while end > 0 && (bytes[end - 1] == 0x0D || bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
    return bytes[0..<end]
}

/// Parses a chunk-size line (hex digits, optional extensions after ';').
func parseChunkSize(_ line: ArraySlice<UInt8>) -> Int? {
    var value = 0
    var digits = 0
    for b in line {
        let d: Int
        switch b {
        case 0x30...0x39: d = Int(b - 0x30)
        case 0x41...0x46: d = Int(b - 0x41 + 10)
        case 0x61...0x66: d = Int(b - 0x61 + 10)
        case 0x3B, 0x20, 0x09: return digits > 0 ? value : nil
        default: return nil
        }
        digits += 1
        if digits > 15 { return nil }
        value = value * 16 + d
    }
    return digits > 0 ? value : nil
}
