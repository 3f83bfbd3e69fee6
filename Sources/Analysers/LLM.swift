import Core
import Foundation

/// The LLM APIs calltap reads the bodies of: OpenAI Chat Completions and Responses (also Azure OpenAI
/// and the Codex transport), Anthropic Messages, Gemini generateContent / streamGenerateContent.
public enum LLMAPI: String, Sendable {
    case openAIChat, openAIResponses, anthropicMessages, gemini

    /// The provider as the call's `llm_provider` names it.
    public var provider: String {
        switch self {
        case .openAIChat, .openAIResponses: return "openai"
        case .anthropicMessages: return "anthropic"
        case .gemini: return "gemini"
        }
    }

    /// The API a request goes to, from its method and target; nil for anything else.
    public static func match(method: String?, target: String?) -> LLMAPI? {
        guard method == "POST", let target else { return nil }
        let path = target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[..<$0] } ?? target[...]
        if path.hasSuffix("/chat/completions") { return .openAIChat }
        if path.hasSuffix("/responses") { return .openAIResponses }
        if path.hasSuffix("/v1/messages") { return .anthropicMessages }
        if path.hasSuffix(":generateContent") || path.hasSuffix(":streamGenerateContent") { return .gemini }
        return nil
    }
}

/// What one LLM exchange said: read from the request and response bodies in memory, never kept.
public struct LLMFacts: Sendable, Equatable {
    public var model: String?
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var cacheReadTokens: Int?
    public var stopReason: String?
    /// Tool calls the model asked for, as "name id".
    public var toolCalls: [String] = []
    /// The session key OpenAI-style requests carry (`prompt_cache_key`).
    public var promptCacheKey: String?
    /// Ids of tool calls whose results the request sends back (the newest last, at most four): they tie
    /// the call to the conversation that asked for them. Kept in memory for attribution, never stored.
    public var toolResultIds: [String] = []
    /// When the first SSE data event arrived (streams only).
    public var firstTokenAt: Nanos?
    /// The body could not be read: too large, compressed in a way not undone, or not JSON.
    public var unreadable = false
    public init() {}
}

/// The bytes of one LLM exchange while it is on the wire: the request body (bounded) and the response,
/// either as SSE read event by event (only the line being read is held) or as a bounded JSON body.
/// Bodies are dropped once read.
public struct LLMCapture: Sendable {
    public let api: LLMAPI
    public let cap: Int
    public var requestBody: [UInt8] = []
    public var responseBody: [UInt8] = []
    public var requestOverflow = false
    public var responseOverflow = false
    /// Set once the response head says `text/event-stream` with no content encoding.
    public var streaming = false
    /// The bodies' `Content-Encoding`, undone when they are read.
    public var requestEncoding: String?
    public var responseEncoding: String?
    public var sse = SSEScanner()
    public var facts = LLMFacts()
    /// Bytes of this capture counted in the parsers' shared budget.
    public var charged = 0
    /// The budget ran out while the bodies were read: nothing more is kept.
    public private(set) var gaveUp = false

    /// What the capture holds now.
    public var heldBytes: Int { requestBody.capacity + responseBody.capacity + sse.line.capacity + sse.data.capacity }

    /// Drops what is held and reads no more (the shared budget is spent).
    public mutating func giveUp() {
        requestBody = []
        responseBody = []
        sse = SSEScanner()
        streaming = false
        gaveUp = true
        facts = LLMFacts()
        facts.unreadable = true
    }

    public init(api: LLMAPI, cap: Int, requestEncoding: String? = nil) {
        self.api = api
        self.cap = cap
        self.requestEncoding = requestEncoding
    }

    /// Request body bytes, kept up to the cap.
    public mutating func request(_ bytes: UnsafeRawBufferPointer) {
        if gaveUp { return }
        let room = cap - requestBody.count
        if bytes.count > room { requestOverflow = true }
        if room > 0 { requestBody.append(contentsOf: bytes.prefix(room)) }
    }

    /// The response head: decides between reading SSE as it comes and keeping the body.
    public mutating func responseHead(contentType: String?, contentEncoding: String?) {
        responseEncoding = contentEncoding
        let identity = contentEncoding == nil || contentEncoding == "identity"
        streaming = identity && (contentType?.lowercased().hasPrefix("text/event-stream") ?? false)
    }

    /// Response body bytes (de-chunked), arriving at `time`.
    public mutating func response(_ bytes: UnsafeRawBufferPointer, at time: Nanos) {
        if gaveUp { return }
        if streaming {
            let api = self.api
            var facts = self.facts
            sse.feed(bytes, at: time, maxLine: cap) { data, at in
                if facts.firstTokenAt == nil && LLMParsing.isOutput(api, data) { facts.firstTokenAt = at }
                LLMParsing.event(api, data, into: &facts)
            }
            self.facts = facts
            return
        }
        let room = cap - responseBody.count
        if bytes.count > room { responseOverflow = true }
        if room > 0 { responseBody.append(contentsOf: bytes.prefix(room)) }
    }
}

/// Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html), incrementally:
/// `data:` lines are joined until a blank line ends the event. Only the event being read is held: a line,
/// or an event's data, longer than `maxLine` is skipped (counted).
public struct SSEScanner: Sendable {
    var line: [UInt8] = []
    var data: [UInt8] = []
    var hasData = false
    var skipping = false
    /// The event's data outgrew the cap: it is dropped when it ends.
    var eventTooLong = false
    var lastWasCR = false
    public private(set) var events = 0
    public private(set) var linesSkipped = 0
    public init() {}

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, at time: Nanos, maxLine: Int,
                              _ onEvent: (_ data: [UInt8], _ at: Nanos) -> Void) {
        var i = 0
        let n = bytes.count
        while i < n {
            if lastWasCR && bytes[i] == 0x0A {
                lastWasCR = false
                i += 1
                continue
            }
            lastWasCR = false
            // The rest of this line: appended in one piece, not byte by byte.
            var j = i
            while j < n && bytes[j] != 0x0A && bytes[j] != 0x0D { j += 1 }
            if j > i && !skipping {
                if line.count + (j - i) > maxLine {
                    skipping = true
                    linesSkipped += 1
                    line.removeAll()
                } else {
                    line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<j]))
                }
            }
            guard j < n else { break }
            lastWasCR = bytes[j] == 0x0D
            endLine(at: time, maxData: maxLine, onEvent)
            i = j + 1
        }
    }

    private mutating func endLine(at time: Nanos, maxData: Int, _ onEvent: (_ data: [UInt8], _ at: Nanos) -> Void) {
        defer { line.removeAll(keepingCapacity: true); skipping = false }
        if skipping { return }
        if line.isEmpty {
            if hasData && !eventTooLong {
                events += 1
                onEvent(data, time)
            }
            data.removeAll(keepingCapacity: true)
            hasData = false
            eventTooLong = false
            return
        }
        // "data:" with an optional space; other fields (event:, id:, retry:) and comments are not needed:
        // every API puts what we read inside the data.
        guard line.starts(with: "data:".utf8) else { return }
        var value = line[5...]
        if value.first == 0x20 { value = value.dropFirst() }
        let had = hasData
        hasData = true
        if eventTooLong { return }
        if data.count + value.count + 1 > maxData {
            eventTooLong = true
            linesSkipped += 1
            data = []
            return
        }
        if had { data.append(0x0A) }
        data.append(contentsOf: value)
    }
}

/// Reading the JSON of each API. Everything is optional: a field that is not there stays nil.
public enum LLMParsing {
    /// Values (outside strings) a body may hold before it is not parsed: a Foundation tree costs tens of
    /// bytes per value, so a body of a million tiny values would cost far more than its bytes. Real
    /// answers hold their text in a few strings.
    static let maxValues = 20_000

    static func object(_ bytes: [UInt8]) -> [String: Any]? {
        guard !bytes.isEmpty, !bytes.elementsEqual("[DONE]".utf8) else { return nil }
        var values = 0, inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
            } else if b == 0x22 {
                inString = true
            } else if b == 0x2C || b == 0x5B || b == 0x7B {
                values += 1
                if values > maxValues { return nil }
            }
        }
        return (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) as? [String: Any]
    }

    /// A count within what a provider could report. (Foundation on Linux cannot tell a JSON 0 from
    /// `false` by type; a boolean where a count belongs is nonsense either way.)
    static func int(_ v: Any?) -> Int? {
        let n: Int?
        if let i = v as? Int { n = i } else if let d = v as? Double, d.isFinite, abs(d) < 1e15 { n = Int(d) } else { n = nil }
        guard let n, n >= 0, n <= 1_000_000_000_000 else { return nil }
        return n
    }

    /// A name or word from a body, bounded (a hostile body may make it anything).
    static func text(_ v: Any?, _ limit: Int) -> String? {
        guard let s = v as? String else { return nil }
        return s.count > limit ? String(s.prefix(limit)) : s
    }

    /// Where `needle` next occurs in `data` at or after `from`: the index just past it.
    static func find(_ needle: StaticString, in data: [UInt8], from: Int = 0) -> Int? {
        needle.withUTF8Buffer { n -> Int? in
            guard let needleBase = n.baseAddress, !n.isEmpty, from >= 0 else { return nil }
            return data.withUnsafeBufferPointer { d -> Int? in
                guard let base = d.baseAddress, from <= d.count - n.count else { return nil }
                // memchr finds one byte of the needle that is rare in JSON, memcmp checks the whole. The
                // bodies searched are whole requests and streamed events, read once per call.
                let anchor = anchorIndex(n)
                var start = from
                let last = d.count - n.count
                while start <= last {
                    guard let hit = memchr(base + start + anchor, Int32(n[anchor]), last - start + 1) else { return nil }
                    let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self)) - anchor
                    if memcmp(base + at, needleBase, n.count) == 0 { return at + n.count }
                    start = at + 1
                }
                return nil
            }
        }
    }

    /// The byte of a needle that `find` looks for first: one that is rare in JSON text, so few places
    /// need a full comparison — an underscore, else a capital letter, else the first byte that is not a
    /// quote.
    static func anchorIndex(_ n: UnsafeBufferPointer<UInt8>) -> Int {
        if let u = n.firstIndex(of: UInt8(ascii: "_")) { return u }
        if let c = n.firstIndex(where: { $0 >= 65 && $0 <= 90 }) { return c }
        return n.count > 1 && n[0] == 0x22 ? 1 : 0
    }

    static func has(_ needle: StaticString, in data: [UInt8]) -> Bool { find(needle, in: data) != nil }

    /// Whether some occurrence of `key` has a value (after `:` and spaces) whose first two bytes pass
    /// `test`: a non-empty string, an object, without parsing the event.
    static func value(after key: StaticString, in data: [UInt8], _ test: (UInt8, UInt8?) -> Bool) -> Bool {
        var from = 0
        while let end = find(key, in: data, from: from) {
            var j = end
            while j < data.count && (data[j] == 0x20 || data[j] == 0x3A) { j += 1 }
            if j < data.count && test(data[j], j + 1 < data.count ? data[j + 1] : nil) { return true }
            from = end
        }
        return false
    }

    static func isString(_ first: UInt8, _: UInt8?) -> Bool { first == 0x22 }
    static func isNonEmptyString(_ first: UInt8, _ second: UInt8?) -> Bool { first == 0x22 && second != nil && second != 0x22 }
    static func isObject(_ first: UInt8, _: UInt8?) -> Bool { first == 0x7B }

    /// Whether an SSE event carries output (text, a tool call): the first such event is the first token.
    /// Events before it (a stream's `response.created`, `message_start`, `ping`) are not.
    public static func isOutput(_ api: LLMAPI, _ data: [UInt8]) -> Bool {
        switch api {
        case .openAIChat: return value(after: "\"content\"", in: data, isNonEmptyString) || has("\"tool_calls\"", in: data)
        case .openAIResponses: return has(".delta\"", in: data) || has("\"function_call\"", in: data)
        case .anthropicMessages: return has("content_block_delta", in: data) || has("content_block_start", in: data)
        case .gemini: return has("\"parts\"", in: data)
        }
    }

    static func addTool(_ name: String?, _ id: String?, into f: inout LLMFacts) {
        guard name != nil || id != nil else { return }
        let entry = [name, id].compactMap { $0 }.joined(separator: " ")
        if !f.toolCalls.contains(entry), f.toolCalls.count < 64 { f.toolCalls.append(String(entry.prefix(300))) }
    }

    /// The request body: the model, the session key, and nothing of the prompt. Requests carry the
    /// whole conversation, so they are not parsed: the top-level object's keys are walked and only the
    /// two string values needed are decoded.
    public static func request(_ api: LLMAPI, _ body: [UInt8], target: String?, into f: inout LLMFacts) {
        let path = target.map { $0.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? $0 }
        if api == .gemini, let path, let r = path.range(of: "/models/") {
            // …/models/{model}:generateContent
            let rest = path[r.upperBound...]
            if let colon = rest.firstIndex(of: ":") { f.model = f.model ?? String(rest[..<colon]) }
        }
        let found = TopLevelJSON.strings(body, keys: ["model", "prompt_cache_key"])
        if let m = found["model"] { f.model = f.model ?? String(m.prefix(200)) }
        if let k = found["prompt_cache_key"], k.utf8.count <= 512 { f.promptCacheKey = k }
        f.toolResultIds = toolResultIds(api, body)
    }

    /// The ids of the tool results a request sends back: Anthropic `tool_use_id`, OpenAI Chat
    /// `tool_call_id`, OpenAI Responses `call_id`, Gemini `functionResponse.id`. One byte search per key
    /// over the body; the last four distinct ids (the newest results) are kept.
    static func toolResultIds(_ api: LLMAPI, _ body: [UInt8]) -> [String] {
        let key: StaticString
        switch api {
        case .anthropicMessages: key = "\"tool_use_id\""
        case .openAIChat: key = "\"tool_call_id\""
        case .openAIResponses: key = "\"call_id\""
        case .gemini: key = "\"functionResponse\""
        }
        var found: [String] = []
        var from = 0
        while let end = find(key, in: body, from: from) {
            from = end
            var j = end
            if api == .gemini {
                // functionResponse: {"id": "…", …}: the id inside the object that follows.
                // Searched only in the next 68 bytes: a body of many `functionResponse`s costs one pass.
                let window = Array(body[j..<min(body.count, j + 68)])
                guard let idEnd = find("\"id\"", in: window) else { continue }
                j += idEnd
            }
            while j < body.count && (body[j] == 0x20 || body[j] == 0x3A || body[j] == 0x0A) { j += 1 }
            guard j < body.count, body[j] == 0x22 else { continue }
            var k = j + 1
            while k < body.count, body[k] != 0x22, body[k] != 0x5C, k - j <= 256 { k += 1 }
            guard k < body.count, body[k] == 0x22, k > j + 1 else { continue }
            let id = String(decoding: body[(j + 1)..<k], as: UTF8.self)
            found.removeAll { $0 == id }
            found.append(id)
            if found.count > 4 { found.removeFirst() }
        }
        return found
    }

    /// Whether an SSE event can hold anything read from it; most events are text deltas that cannot,
    /// and are not parsed.
    static func worthReading(_ api: LLMAPI, _ data: [UInt8], modelKnown: Bool) -> Bool {
        switch api {
        case .openAIChat:
            return !modelKnown || value(after: "\"usage\"", in: data, isObject)
                || value(after: "\"finish_reason\"", in: data, isString) || has("\"tool_calls\"", in: data)
        case .openAIResponses:
            return has("\"response\":", in: data) || has("function_call", in: data)
        case .anthropicMessages:
            return has("message_start", in: data) || has("message_delta", in: data) || has("tool_use", in: data)
        case .gemini:
            return !modelKnown || has("usageMetadata", in: data) || has("finishReason", in: data) || has("functionCall", in: data)
        }
    }

    /// A whole JSON response body (not streamed).
    public static func response(_ api: LLMAPI, _ body: [UInt8], into f: inout LLMFacts) {
        guard let o = object(body) else {
            if !body.isEmpty { f.unreadable = true }
            return
        }
        read(api, o, into: &f)
    }

    /// One SSE event's data.
    public static func event(_ api: LLMAPI, _ data: [UInt8], into f: inout LLMFacts) {
        guard worthReading(api, data, modelKnown: f.model != nil), let o = object(data) else { return }
        switch api {
        case .openAIResponses:
            // response.created / .in_progress / .completed / .incomplete / .failed carry the response;
            // response.output_item.added / .done carry an item.
            if let r = o["response"] as? [String: Any] { read(api, r, into: &f) }
            if let item = o["item"] as? [String: Any], item["type"] as? String == "function_call" {
                addTool(item["name"] as? String, item["call_id"] as? String, into: &f)
            }
        case .anthropicMessages:
            switch o["type"] as? String {
            case "message_start": if let m = o["message"] as? [String: Any] { read(api, m, into: &f) }
            case "content_block_start":
                if let b = o["content_block"] as? [String: Any], b["type"] as? String == "tool_use" {
                    addTool(b["name"] as? String, b["id"] as? String, into: &f)
                }
            case "message_delta":
                if let d = o["delta"] as? [String: Any], let s = text(d["stop_reason"], 100) { f.stopReason = s }
                if let u = o["usage"] as? [String: Any] {
                    if let n = int(u["output_tokens"]) { f.outputTokens = n }
                    if let n = int(u["input_tokens"]) { f.inputTokens = n }
                    if let n = int(u["cache_read_input_tokens"]) { f.cacheReadTokens = n }
                }
            default: break
            }
        case .openAIChat, .gemini:
            read(api, o, into: &f)
        }
    }

    /// The fields of a response object (or of a stream chunk shaped like one).
    static func read(_ api: LLMAPI, _ o: [String: Any], into f: inout LLMFacts) {
        switch api {
        case .openAIChat:
            if let m = text(o["model"], 200) { f.model = m }
            for c in o["choices"] as? [[String: Any]] ?? [] {
                if let r = text(c["finish_reason"], 100) { f.stopReason = r }
                let message = (c["message"] as? [String: Any]) ?? (c["delta"] as? [String: Any])
                for t in message?["tool_calls"] as? [[String: Any]] ?? [] {
                    let fn = t["function"] as? [String: Any]
                    // A stream names each tool call once (its first delta), with later deltas by index only.
                    if t["id"] != nil || fn?["name"] != nil { addTool(fn?["name"] as? String, t["id"] as? String, into: &f) }
                }
            }
            if let u = o["usage"] as? [String: Any] {
                if let n = int(u["prompt_tokens"]) { f.inputTokens = n }
                if let n = int(u["completion_tokens"]) { f.outputTokens = n }
                if let n = int((u["prompt_tokens_details"] as? [String: Any])?["cached_tokens"]) { f.cacheReadTokens = n }
            }
        case .openAIResponses:
            if let m = text(o["model"], 200) { f.model = m }
            if let s = text(o["status"], 100), s != "in_progress" && s != "queued" {
                f.stopReason = text((o["incomplete_details"] as? [String: Any])?["reason"], 100) ?? s
            }
            for item in o["output"] as? [[String: Any]] ?? [] where item["type"] as? String == "function_call" {
                addTool(item["name"] as? String, item["call_id"] as? String, into: &f)
            }
            if let u = o["usage"] as? [String: Any] {
                if let n = int(u["input_tokens"]) { f.inputTokens = n }
                if let n = int(u["output_tokens"]) { f.outputTokens = n }
                if let n = int((u["input_tokens_details"] as? [String: Any])?["cached_tokens"]) { f.cacheReadTokens = n }
            }
        case .anthropicMessages:
            if let m = text(o["model"], 200) { f.model = m }
            if let s = text(o["stop_reason"], 100) { f.stopReason = s }
            for b in o["content"] as? [[String: Any]] ?? [] where b["type"] as? String == "tool_use" {
                addTool(b["name"] as? String, b["id"] as? String, into: &f)
            }
            if let u = o["usage"] as? [String: Any] {
                if let n = int(u["input_tokens"]) { f.inputTokens = n }
                if let n = int(u["output_tokens"]), n > 0 || f.outputTokens == nil { f.outputTokens = n }
                if let n = int(u["cache_read_input_tokens"]) { f.cacheReadTokens = n }
            }
        case .gemini:
            if let m = text(o["modelVersion"], 200) { f.model = m }
            for c in o["candidates"] as? [[String: Any]] ?? [] {
                if let r = text(c["finishReason"], 100) { f.stopReason = r }
                let parts = (c["content"] as? [String: Any])?["parts"] as? [[String: Any]] ?? []
                for p in parts {
                    if let call = p["functionCall"] as? [String: Any] { addTool(call["name"] as? String, call["id"] as? String, into: &f) }
                }
            }
            if let u = o["usageMetadata"] as? [String: Any] {
                if let n = int(u["promptTokenCount"]) { f.inputTokens = n }
                if let n = int(u["candidatesTokenCount"]) { f.outputTokens = n }
                if let n = int(u["cachedContentTokenCount"]) { f.cacheReadTokens = n }
            }
        }
    }
}

/// The string values of chosen keys of a JSON text's top-level object, found by walking it once without
/// building anything else: nested values and other strings are skipped byte by byte. A text that is not
/// an object, or is cut short, gives what was found before the damage.
enum TopLevelJSON {
    static func strings(_ bytes: [UInt8], keys: Set<String>) -> [String: String] {
        bytes.withUnsafeBufferPointer { strings($0, keys: keys) }
    }

    /// The same over the body's storage, read without a bounds check per byte.
    static func strings(_ b: UnsafeBufferPointer<UInt8>, keys: Set<String>) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        let n = b.count
        func skipSpace() { while i < n, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
        /// At an opening quote: the string's bytes (escapes kept raw) and whether it had escapes.
        func string() -> (Range<Int>, Bool)? {
            guard i < n, b[i] == 0x22, let base = b.baseAddress else { return nil }
            i += 1
            let start = i
            var escaped = false
            // The next quote ends the string unless a backslash comes before it: memchr finds both, so a
            // long prompt costs two scans of its bytes, not a comparison and a branch for each.
            while i < n {
                guard let q = memchr(base + i, 0x22, n - i) else { return nil }
                let quote = base.distance(to: q.assumingMemoryBound(to: UInt8.self))
                guard let e = memchr(base + i, 0x5C, quote - i) else {
                    i = quote + 1
                    return (start..<quote, escaped)
                }
                escaped = true
                i = base.distance(to: e.assumingMemoryBound(to: UInt8.self)) + 2
            }
            return nil
        }
        /// Skips one value of any kind.
        func skipValue() -> Bool {
            skipSpace()
            guard i < n else { return false }
            switch b[i] {
            case 0x22: return string() != nil
            case 0x7B, 0x5B:
                var depth = 0
                while i < n {
                    switch b[i] {
                    case 0x22: if string() == nil { return false }; continue
                    case 0x7B, 0x5B: depth += 1
                    case 0x7D, 0x5D:
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                while i < n, b[i] != 0x2C, b[i] != 0x7D, b[i] != 0x5D { i += 1 }
                return true
            }
        }
        skipSpace()
        guard i < n, b[i] == 0x7B else { return out }
        i += 1
        while i < n {
            skipSpace()
            guard let (keyRange, keyEscaped) = string() else { return out }
            skipSpace()
            guard i < n, b[i] == 0x3A else { return out }
            i += 1
            skipSpace()
            let key = keyEscaped ? nil : String(decoding: b[keyRange], as: UTF8.self)
            if let key, keys.contains(key), i < n, b[i] == 0x22 {
                let at = i
                guard let (valueRange, valueEscaped) = string() else { return out }
                if valueEscaped {
                    // Rare: let Foundation undo the escapes of this one string.
                    let text = Array(b[at..<i])
                    if let v = (try? JSONSerialization.jsonObject(with: Data(text), options: [.fragmentsAllowed])) as? String { out[key] = v }
                } else {
                    out[key] = String(decoding: b[valueRange], as: UTF8.self)
                }
                if out.count == keys.count { return out }
            } else if !skipValue() {
                return out
            }
            skipSpace()
            guard i < n else { return out }
            if b[i] == 0x2C { i += 1; continue }
            return out
        }
        return out
    }
}
