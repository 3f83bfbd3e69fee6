import Core


/// Named oddities seen while parsing, attached to the call they affect (in the spirit of Zeek's weirds).
public enum Weird: String, Sendable, CaseIterable {
    case malformedRequestLine = "malformed_request_line"
    case malformedStatusLine = "malformed_status_line"
    case malformedHeader = "malformed_header"
    case headerTooLong = "header_too_long"
    case badChunkSize = "bad_chunk_size"
    case badContentLength = "bad_content_length"
    case unmatchedResponse = "unmatched_response"
    case pendingRequestsCap = "pending_requests_cap"
    case contentGap = "content_gap"
    case gapInHeaders = "gap_in_headers"
    case dataAfterClose = "data_after_close"
    case tlsRecordTooLong = "tls_record_too_long"
    case tlsHandshakeTooLong = "tls_handshake_too_long"
    case tlsMalformedHandshake = "tls_malformed_handshake"
    case tlsGap = "tls_gap"
    case http2BadPreface = "http2_bad_preface"
    case http2FrameTooLarge = "http2_frame_too_large"
    case http2MalformedFrame = "http2_malformed_frame"
    case http2HPACKError = "http2_hpack_error"
    case http2Gap = "http2_gap"
    case http2StreamsCap = "http2_streams_cap"
    case dnsMalformed = "dns_malformed"
    case dnsPointerLoop = "dns_pointer_loop"
    case parserMemoryCap = "parser_memory_cap"
    /// A QUIC Retry whose integrity tag does not match the client's first Destination Connection ID
    /// (RFC 9001 §5.8): not from the server the client wrote to, so it was not followed.
    case quicRetryInvalid = "quic_retry_invalid"
}

/// Bytes that parsers of many connections may hold at once in message buffers (HTTP/1 heads and chunk
/// lines). Each buffer is capped on its own; this caps their sum, so thousands of connections that each
/// send a never-ending head cannot take more than `limit`. One per analysis pipeline, not shared across
/// threads.
public final class ParserBudget {
    public let limit: Int
    public private(set) var used = 0
    /// Messages given up because the budget was spent.
    public private(set) var refusals = 0

    public init(limit: Int) { self.limit = limit }

    var isSpent: Bool { used > limit }
    func adjust(by delta: Int) { used += delta }
    func refuse() { refusals += 1 }

    /// Takes `bytes` from the budget for a buffer held outside the parsers (bytes held while a stream's
    /// protocol is undecided); false, and counted as a refusal, when that would overspend it.
    public func reserve(_ bytes: Int) -> Bool {
        guard used + bytes <= limit else { refusals += 1; return false }
        used += bytes
        return true
    }

    /// Gives back what `reserve` took.
    public func release(_ bytes: Int) { used -= bytes }

    /// Counts what an LLM capture holds after it was fed; when the budget is spent, the capture gives up
    /// (its bodies are dropped, the call gets no token counts) and that is counted as a refusal.
    /// Returns the change in bytes counted.
    func settle(_ c: inout LLMCapture) -> Int {
        let held = c.heldBytes
        var delta = held - c.charged
        adjust(by: delta)
        c.charged = held
        if isSpent && held > 0 {
            refuse()
            adjust(by: -c.charged)
            delta -= c.charged
            c.charged = 0
            c.giveUp()
        }
        return delta
    }
}

/// Bounds-checked big-endian reader over bytes. Reads return nil past the end and leave the position unchanged.
public struct ByteCursor {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position: Int

    public init(_ bytes: UnsafeRawBufferPointer, position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    public var remaining: Int { bytes.count - position }

    public mutating func u8() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { position += 2 }
        return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }

    public mutating func u24() -> Int? {
        guard remaining >= 3 else { return nil }
        defer { position += 3 }
        return Int(bytes[position]) << 16 | Int(bytes[position + 1]) << 8 | Int(bytes[position + 2])
    }

    public mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { position += 4 }
        return UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }

    /// The next `count` bytes as a slice of the same memory, or nil if fewer remain.
    public mutating func slice(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, remaining >= count else { return nil }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    public mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, remaining >= count else { return false }
        position += count
        return true
    }

    public mutating func seek(_ to: Int) -> Bool {
        guard to >= 0, to <= bytes.count else { return false }
        position = to
        return true
    }
}

extension UnsafeRawBufferPointer {
    /// Bytes as text, lossy: invalid UTF-8 becomes U+FFFD.
    public var text: String { String(decoding: self, as: UTF8.self) }
}
