/// Parses a complete HTTP/1.x message head (start line and header fields) from bytes.
enum HTTPHeadParser {
    /// Fills `head` and returns false when the start line is not HTTP. Header lines that do not parse are
    /// noted as a weird and skipped.
    static func parse(_ bytes: UnsafeRawBufferPointer, into head: inout HTTPHead) -> Bool {
        var lines = LineIterator(bytes)
        guard let start = lines.next() else { return false }
        if head.isRequest {
            guard parseRequestLine(start, into: &head) else {
                // Keep a readable method even when the rest is garbage, for the record.
                if let sp = start.firstIndex(of: 0x20), sp > start.startIndex, isToken(start[start.startIndex..<sp]) {
                    head.method = String(decoding: start[start.startIndex..<sp], as: UTF8.self)
                }
                return false
            }
        } else {
            guard parseStatusLine(start, into: &head) else { return false }
        }
        while let line = lines.next() {
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex else {
                if !head.weirds.contains(.malformedHeader) { head.weirds.append(.malformedHeader) }
                continue
            }
            let name = line[line.startIndex..<colon]
            var vs = colon + 1
            var ve = line.endIndex
            while vs < ve && (line[vs] == 0x20 || line[vs] == 0x09) { vs += 1 }
            while ve > vs && (line[ve - 1] == 0x20 || line[ve - 1] == 0x09) { ve -= 1 }
            let value = line[vs..<ve]
            applyHeader(name, value, to: &head)
        }
        return true
    }

    /// Just the request line, for a head given up as too long: the record still says what was asked.
    static func requestLine(_ bytes: UnsafeRawBufferPointer) -> HTTPHead? {
        var lines = LineIterator(bytes)
        var head = HTTPHead(isRequest: true)
        guard let start = lines.next(), parseRequestLine(start, into: &head) else { return nil }
        return head
    }

    private static func applyHeader(_ name: UnsafeRawBufferPointer.SubSequence, _ value: UnsafeRawBufferPointer.SubSequence,
                                    to head: inout HTTPHead) {
        // Only a few names matter; compare case-insensitively without building strings first.
        switch name.count {
        case 4 where equalsLower(name, "host"):
            head.host = String(decoding: value, as: UTF8.self)
        case 12 where equalsLower(name, "content-type"):
            head.contentType = String(decoding: value, as: UTF8.self)
        case 16 where equalsLower(name, "content-encoding"):
            head.contentEncoding = String(String(decoding: value, as: UTF8.self).lowercased().filter { $0 != " " && $0 != "\t" })
        case 14 where equalsLower(name, "content-length"):
            var v = 0
            var ok = !value.isEmpty
            for b in value {
                guard b >= 0x30 && b <= 0x39, v < Int.max / 10 - 10 else { ok = false; break }
                v = v * 10 + Int(b - 0x30)
            }
            if ok, head.contentLength == nil || head.contentLength == v {
                head.contentLength = v
            } else {
                head.weirds.append(.badContentLength)
            }
        case 17 where equalsLower(name, "transfer-encoding"):
            if containsLower(value, "chunked") { head.chunked = true }
        case 10 where equalsLower(name, "connection"):
            if containsLower(value, "close") { head.connectionClose = true }
            if containsLower(value, "upgrade") { head.connectionUpgrade = true }
        case 7 where equalsLower(name, "upgrade"):
            head.upgrade = String(decoding: value, as: UTF8.self).lowercased()
        case 6 where equalsLower(name, "expect"):
            if containsLower(value, "100-continue") { head.expectContinue = true }
        case 7 where equalsLower(name, "baggage"):
            head.sessionHints["baggage"] = String(decoding: value, as: UTF8.self)
        case 12 where equalsLower(name, "x-session-id"):
            head.sessionHints["x-session-id"] = String(decoding: value, as: UTF8.self)
        case 10 where equalsLower(name, "session_id"):
            // The Codex transport's session headers (the agent's session id).
            head.sessionHints["session_id"] = String(decoding: value, as: UTF8.self)
        case 15 where equalsLower(name, "conversation_id"):
            head.sessionHints["conversation_id"] = String(decoding: value, as: UTF8.self)
        case 11 where equalsLower(name, "traceparent"):
            // 55 bytes when well formed; anything longer is not a version-00 trace context.
            if value.count <= 128 { head.sessionHints["traceparent"] = String(decoding: value, as: UTF8.self) }
        default:
            break
        }
    }

    /// "METHOD SP target SP HTTP/x.y". Like Zeek, a line whose version is damaged still yields its
    /// method and target, and a line with no version at all is taken as HTTP/0.9.
    private static func parseRequestLine(_ line: UnsafeRawBufferPointer.SubSequence, into head: inout HTTPHead) -> Bool {
        guard let sp1 = line.firstIndex(of: 0x20) else { return false }
        let method = line[line.startIndex..<sp1]
        guard !method.isEmpty, method.count <= 32, isToken(method) else { return false }
        head.method = String(decoding: method, as: UTF8.self)
        var te = line.endIndex
        head.version = "0.9"
        if let sp2 = line.lastIndex(of: 0x20), sp2 >= sp1 {
            let version = line[(sp2 + 1)...]
            if version.count >= 5, equalsLower(version.prefix(5), "http/") {
                head.version = httpVersion(version) ?? String(decoding: version.dropFirst(5), as: UTF8.self)
                te = sp2
            }
        }
        var ts = min(sp1 + 1, te) // "OPTIONS HTTP/1.1": the target is empty
        while ts < te && line[ts] == 0x20 { ts += 1 }
        while te > ts && line[te - 1] == 0x20 { te -= 1 }
        head.target = String(decoding: line[ts..<te], as: UTF8.self)
        return true
    }

    private static func parseStatusLine(_ line: UnsafeRawBufferPointer.SubSequence, into head: inout HTTPHead) -> Bool {
        guard let sp1 = line.firstIndex(of: 0x20), let v = httpVersion(line[line.startIndex..<sp1]) else { return false }
        var i = sp1
        while i < line.endIndex && line[i] == 0x20 { i += 1 }
        var status = 0
        var digits = 0
        while i < line.endIndex, digits < 3, line[i] >= 0x30 && line[i] <= 0x39 {
            status = status * 10 + Int(line[i] - 0x30)
            digits += 1
            i += 1
        }
        guard digits == 3, i == line.endIndex || line[i] == 0x20 else { return false }
        head.version = v
        head.status = status
        return true
    }

    /// "HTTP/1.1" → "1.1".
    private static func httpVersion(_ s: UnsafeRawBufferPointer.SubSequence) -> String? {
        guard s.count == 8, equalsLower(s.prefix(5), "http/"),
              let major = s.dropFirst(5).first, major >= 0x30 && major <= 0x39,
              s[s.startIndex + 6] == 0x2E,
              let minor = s.last, minor >= 0x30 && minor <= 0x39 else { return nil }
        return String(decoding: [major, 0x2E, minor], as: UTF8.self)
    }

    static func isToken(_ s: UnsafeRawBufferPointer.SubSequence) -> Bool {
        for b in s {
            switch b {
            case 0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x30...0x39, 0x41...0x5A, 0x5E...0x7A, 0x7C, 0x7E: continue
            default: return false
            }
        }
        return true
    }
}

@inline(__always) func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

/// Whether `bytes` equal the lower-case ASCII `literal`, ignoring case.
func equalsLower<C: Collection>(_ bytes: C, _ literal: StaticString) -> Bool where C.Element == UInt8 {
    guard bytes.count == literal.utf8CodeUnitCount else { return false }
    var p = literal.utf8Start
    for b in bytes {
        if lower(b) != p.pointee { return false }
        p += 1
    }
    return true
}

/// Whether the lower-case ASCII `literal` occurs in `bytes`, ignoring case.
func containsLower(_ bytes: UnsafeRawBufferPointer.SubSequence, _ literal: StaticString) -> Bool {
    let n = literal.utf8CodeUnitCount
    guard bytes.count >= n else { return false }
    let lit = UnsafeBufferPointer(start: literal.utf8Start, count: n)
    var i = bytes.startIndex
    while i + n <= bytes.endIndex {
        var k = 0
        while k < n && lower(bytes[i + k]) == lit[k] { k += 1 }
        if k == n { return true }
        i += 1
    }
    return false
}

/// Splits bytes into lines at LF, dropping a trailing CR.
struct LineIterator {
    let bytes: UnsafeRawBufferPointer
    var position = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func next() -> UnsafeRawBufferPointer.SubSequence? {
        guard position < bytes.count else { return nil }
        let start = position
        var end = start
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        position = end + 1
        var stop = end
        if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
        return bytes[start..<stop]
    }
}

/// Recognises protocols from the first bytes of a stream, whatever the port.
public enum HTTPDetector {
    /// A request line start: a known method, or any upper-case token, followed by a space.
    public static func looksLikeRequest(_ data: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < data.count && i < 32 {
            let b = data[i]
            if b == 0x20 { return i >= 3 }
            guard (b >= 0x41 && b <= 0x5A) || b == 0x2D || b == 0x5F else { return false }
            i += 1
        }
        return false
    }

    public static func looksLikeResponse(_ data: UnsafeRawBufferPointer) -> Bool {
        data.count >= 5 && equalsLower(data.prefix(5), "http/")
    }

    /// A server's opening HTTP/2 SETTINGS frame (servers may speak first with prior knowledge).
    public static func looksLikeHTTP2Settings(_ data: UnsafeRawBufferPointer) -> Bool {
        guard data.count >= 9 else { return false }
        let length = Int(data[0]) << 16 | Int(data[1]) << 8 | Int(data[2])
        return data[3] == 0x04 && data[4] & 0xFE == 0 && data[5] == 0 && data[6] == 0 && data[7] == 0 && data[8] == 0
            && length % 6 == 0 && length <= 16384
    }

    /// The HTTP/2 connection preface "PRI * HTTP/2.0".
    private static let preface: [UInt8] = Array("PRI * HTTP/2.0".utf8)

    public static func looksLikeHTTP2Preface(_ data: UnsafeRawBufferPointer) -> Bool {
        guard data.count >= preface.count else { return false }
        for k in 0..<preface.count where data[k] != preface[k] { return false }
        return true
    }
}
