import Foundation

/// The call's fields, declared once: `CallRecord.visitFields` names every field with its wire name and
/// shape, in contract order. JSON Lines, the SQLite insert and row reading, the API and the checks of
/// `openapi.json` and the database schema all walk this one list, so a new field is added here (plus its
/// stored property, a migration and its README row) and reaches every output.
///
/// Shapes and how they are written:
///
/// | shape | JSON | SQLite |
/// |---|---|---|
/// | `time` | ISO-8601 UTC with µs | INTEGER µs since the epoch |
/// | `millis` (held as µs) | number, 3 decimals | REAL milliseconds |
/// | `text`, `choice` | string | TEXT |
/// | `integer`, `count` | integer | INTEGER |
/// | `flag` | boolean | INTEGER 0/1 |
/// | `list` | array of strings | TEXT (a JSON array) |
public protocol CallFieldVisitor {
    /// A required time in nanoseconds since the epoch (`ts`).
    mutating func time(_ name: String, _ value: inout Int64)
    mutating func optionalTime(_ name: String, _ value: inout Int64?)
    /// A duration held in microseconds and shown in milliseconds.
    mutating func millis(_ name: String, _ value: inout Int64?)
    mutating func text(_ name: String, _ value: inout String?)
    mutating func integer(_ name: String, _ value: inout Int?)
    /// A non-null integer (a counter that starts at zero).
    mutating func count(_ name: String, _ value: inout Int)
    mutating func flag(_ name: String, _ value: inout Bool)
    mutating func list(_ name: String, _ value: inout [String]?)
    /// A non-null list (empty when there is nothing to say).
    mutating func requiredList(_ name: String, _ value: inout [String])
    /// One of a fixed set of words; `required` is false when the field may be null.
    mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?)
    mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E)
}

/// A field whose value is one of a fixed set of words.
public protocol CallFieldChoice: RawRepresentable, CaseIterable, Sendable where RawValue == String {}

extension CallKind: CallFieldChoice {}
extension Outcome: CallFieldChoice {}
extension Visibility: CallFieldChoice {}
extension Attribution: CallFieldChoice {}
extension OwnerSource: CallFieldChoice {}
extension AttributionKey: CallFieldChoice {}

extension CallRecord {
    /// Every field, in contract order. The only list of the call's fields.
    @inlinable
    public mutating func visitFields<V: CallFieldVisitor>(_ v: inout V) {
        // Identity and time
        v.requiredChoice("kind", &kind)
        v.time("ts", &ts)
        v.optionalTime("ended_at", &endedAt)
        v.millis("latency_ms", &latencyMicros)
        v.text("connection_id", &connectionId)
        v.integer("stream_id", &streamId)
        v.flag("estimated", &estimated)
        v.text("trace_id", &traceId)
        v.text("parent_span_id", &parentSpanId)
        // Attribution
        v.text("session_id", &sessionId)
        v.choice("attribution", &attribution)
        v.choice("attribution_key", &attributionKey)
        v.choice("owner_source", &ownerSource)
        v.integer("pid", &pid)
        v.text("process", &process)
        v.text("exe", &exe)
        v.text("cgroup", &cgroup)
        v.text("agent", &agent)
        v.text("target", &target)
        // Endpoints
        v.text("client_ip", &clientIp)
        v.integer("client_port", &clientPort)
        v.text("server_ip", &serverIp)
        v.integer("server_port", &serverPort)
        v.text("proxy", &proxy)
        // HTTP
        v.text("scheme", &scheme)
        v.text("host", &host)
        v.text("method", &method)
        v.text("path", &path)
        v.text("url", &url)
        v.integer("status_code", &statusCode)
        v.text("http_version", &httpVersion)
        v.text("request_content_type", &requestContentType)
        v.text("response_content_type", &responseContentType)
        v.integer("request_body_bytes", &requestBodyBytes)
        v.integer("response_body_bytes", &responseBodyBytes)
        v.text("request_summary", &requestSummary)
        v.text("response_summary", &responseSummary)
        // LLM
        v.text("llm_provider", &llmProvider)
        v.text("llm_model", &llmModel)
        v.integer("llm_input_tokens", &llmInputTokens)
        v.integer("llm_output_tokens", &llmOutputTokens)
        v.integer("llm_cache_read_tokens", &llmCacheReadTokens)
        v.millis("llm_ttft_ms", &llmTtftMicros)
        v.text("llm_stop_reason", &llmStopReason)
        v.list("llm_tool_calls", &llmToolCalls)
        // TLS
        v.text("sni", &sni)
        v.text("alpn", &alpn)
        v.list("alpn_offered", &alpnOffered)
        v.text("tls_version", &tlsVersion)
        v.text("tls_cipher", &tlsCipher)
        v.text("ja4", &ja4)
        v.text("cert_subject", &certSubject)
        v.list("cert_san", &certSan)
        // DNS
        v.text("dns_qtype", &dnsQtype)
        v.text("dns_rcode", &dnsRcode)
        v.list("dns_answers", &dnsAnswers)
        // Timings
        v.millis("connect_ms", &connectMicros)
        v.millis("tls_handshake_ms", &tlsHandshakeMicros)
        v.millis("ttfb_ms", &ttfbMicros)
        // Outcome
        v.requiredChoice("outcome", &outcome)
        v.text("error", &error)
        v.requiredList("weirds", &weirds)
        v.count("missed_bytes", &missedBytes)
        v.choice("visibility", &visibility)
        // Sizes
        v.integer("bytes_sent", &bytesSent)
        v.integer("bytes_received", &bytesReceived)
    }

    /// The fields' names and shapes, in contract order.
    public static let fieldList: [CallFieldDescription] = {
        var collector = CallFieldCollector()
        var r = CallRecord(kind: .http, ts: 0)
        r.visitFields(&collector)
        return collector.fields
    }()

    public static var fieldNames: [String] { fieldList.map(\.name) }
}

/// A field's name and shape, for checks of the schema, `openapi.json` and the README.
public struct CallFieldDescription: Sendable, Equatable {
    public enum Shape: String, Sendable {
        case time, millis, text, integer, flag, list, choice
    }
    public var name: String
    public var shape: Shape
    public var nullable: Bool
    /// The allowed words of a `choice`.
    public var choices: [String]
}

struct CallFieldCollector: CallFieldVisitor {
    var fields: [CallFieldDescription] = []
    mutating func add(_ name: String, _ shape: CallFieldDescription.Shape, _ nullable: Bool, _ choices: [String] = []) {
        fields.append(CallFieldDescription(name: name, shape: shape, nullable: nullable, choices: choices))
    }
    mutating func time(_ name: String, _ value: inout Int64) { add(name, .time, false) }
    mutating func optionalTime(_ name: String, _ value: inout Int64?) { add(name, .time, true) }
    mutating func millis(_ name: String, _ value: inout Int64?) { add(name, .millis, true) }
    mutating func text(_ name: String, _ value: inout String?) { add(name, .text, true) }
    mutating func integer(_ name: String, _ value: inout Int?) { add(name, .integer, true) }
    mutating func count(_ name: String, _ value: inout Int) { add(name, .integer, false) }
    mutating func flag(_ name: String, _ value: inout Bool) { add(name, .flag, false) }
    mutating func list(_ name: String, _ value: inout [String]?) { add(name, .list, true) }
    mutating func requiredList(_ name: String, _ value: inout [String]) { add(name, .list, false) }
    mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) {
        add(name, .choice, true, E.allCases.map(\.rawValue))
    }
    mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) {
        add(name, .choice, false, E.allCases.map(\.rawValue))
    }
}

/// Writes the fields as one JSON object, in contract order, every field present.
struct CallJSONFieldWriter: CallFieldVisitor {
    var w = JSONObjectWriter()
    mutating func time(_ name: String, _ value: inout Int64) { w.string(name, Timestamps.iso8601(value)) }
    mutating func optionalTime(_ name: String, _ value: inout Int64?) { w.string(name, value.map(Timestamps.iso8601)) }
    mutating func millis(_ name: String, _ value: inout Int64?) { w.millis(name, value) }
    mutating func text(_ name: String, _ value: inout String?) { w.string(name, value) }
    mutating func integer(_ name: String, _ value: inout Int?) { w.int(name, value) }
    mutating func count(_ name: String, _ value: inout Int) { w.int(name, value) }
    mutating func flag(_ name: String, _ value: inout Bool) { w.bool(name, value) }
    mutating func list(_ name: String, _ value: inout [String]?) { w.strings(name, value) }
    mutating func requiredList(_ name: String, _ value: inout [String]) { w.strings(name, value) }
    mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) { w.string(name, value?.rawValue) }
    mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) { w.string(name, value.rawValue) }
}

/// Reads a call back from a JSON object (as parsed by JSONSerialization): the inverse of `CallJSON.line`.
/// A field missing or of the wrong type is an error naming it.
public struct CallJSONFieldReader: CallFieldVisitor {
    public struct BadField: Error, CustomStringConvertible {
        public var name: String
        public var description: String { "call field '\(name)' is missing or malformed" }
    }
    let object: [String: Any]
    public private(set) var problem: BadField?

    public init(_ object: [String: Any]) { self.object = object }

    private mutating func value(_ name: String) -> Any? {
        guard let v = object[name] else { problem = problem ?? BadField(name: name); return nil }
        return v is NSNull ? nil : v
    }
    private mutating func fail(_ name: String) { problem = problem ?? BadField(name: name) }

    public mutating func time(_ name: String, _ value: inout Int64) {
        if let s = self.value(name) as? String, let t = Timestamps.parse(s) { value = t } else { fail(name) }
    }
    public mutating func optionalTime(_ name: String, _ value: inout Int64?) {
        guard let v = self.value(name) else { value = nil; return }
        if let s = v as? String, let t = Timestamps.parse(s) { value = t } else { fail(name) }
    }
    public mutating func millis(_ name: String, _ value: inout Int64?) {
        guard let v = self.value(name) else { value = nil; return }
        if let d = Self.number(v) { value = Int64((d * 1000).rounded()) } else { fail(name) }
    }
    public mutating func text(_ name: String, _ value: inout String?) {
        guard let v = self.value(name) else { value = nil; return }
        if let s = v as? String { value = s } else { fail(name) }
    }
    public mutating func integer(_ name: String, _ value: inout Int?) {
        guard let v = self.value(name) else { value = nil; return }
        if let d = Self.number(v), let i = Int(exactly: d) { value = i } else { fail(name) }
    }
    public mutating func count(_ name: String, _ value: inout Int) {
        var v: Int? = nil
        integer(name, &v)
        if let v { value = v } else { fail(name) }
    }
    public mutating func flag(_ name: String, _ value: inout Bool) {
        if let b = self.value(name) as? Bool { value = b } else { fail(name) }
    }
    public mutating func list(_ name: String, _ value: inout [String]?) {
        guard let v = self.value(name) else { value = nil; return }
        if let a = v as? [String] { value = a } else { fail(name) }
    }
    public mutating func requiredList(_ name: String, _ value: inout [String]) {
        if let a = self.value(name) as? [String] { value = a } else { fail(name) }
    }
    public mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) {
        guard let v = self.value(name) else { value = nil; return }
        if let s = v as? String, let e = E(rawValue: s) { value = e } else { fail(name) }
    }
    public mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) {
        if let s = self.value(name) as? String, let e = E(rawValue: s) { value = e } else { fail(name) }
    }

    static func number(_ v: Any) -> Double? {
        if v is Bool { return nil }
        if let i = v as? Int { return Double(i) }
        if let i = v as? Int64 { return Double(i) }
        return v as? Double
    }
}

extension CallRecord {
    /// A call read back from a JSON Lines object; throws naming the first missing or malformed field.
    public static func fromJSONObject(_ object: [String: Any]) throws -> CallRecord {
        var r = CallRecord(kind: .connect, ts: 0)
        var reader = CallJSONFieldReader(object)
        r.visitFields(&reader)
        if let p = reader.problem { throw p }
        return r
    }
}

/// Sets every field to a value distinct from every other field's (and from its default), for round-trip
/// checks of the outputs: a field left out of any of them shows up as a difference.
public struct CallFieldFiller: CallFieldVisitor {
    private var n = 0
    public init() {}

    public static func filledRecord() -> CallRecord {
        var r = CallRecord(kind: .connect, ts: 0)
        var filler = CallFieldFiller()
        r.visitFields(&filler)
        return r
    }

    private mutating func next() -> Int { n += 1; return n }
    /// Text that needs escaping in JSON (a quote, a backslash, a control character, non-ASCII).
    private mutating func word(_ name: String) -> String { "\(name)-\(next()) \"q\" \\ \u{1} ü" }

    public mutating func time(_ name: String, _ value: inout Int64) {
        value = 1_717_243_200_000_000_000 + Int64(next()) * 1_000_123_000 // whole microseconds
    }
    public mutating func optionalTime(_ name: String, _ value: inout Int64?) {
        value = 1_717_243_200_000_000_000 + Int64(next()) * 1_000_123_000
    }
    public mutating func millis(_ name: String, _ value: inout Int64?) { value = Int64(next()) * 1_001 }
    public mutating func text(_ name: String, _ value: inout String?) { value = word(name) }
    public mutating func integer(_ name: String, _ value: inout Int?) { value = 1_000 + next() }
    public mutating func count(_ name: String, _ value: inout Int) { value = 1_000 + next() }
    public mutating func flag(_ name: String, _ value: inout Bool) { _ = next(); value = !value }
    public mutating func list(_ name: String, _ value: inout [String]?) { value = [word(name), "\(name)-second"] }
    public mutating func requiredList(_ name: String, _ value: inout [String]) { value = [word(name), "\(name)-second"] }
    public mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) {
        let all = Array(E.allCases)
        value = all[next() % all.count]
    }
    public mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) {
        let all = Array(E.allCases).filter { $0 != value }
        value = all[next() % all.count]
    }
}
