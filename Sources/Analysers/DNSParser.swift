/// A DNS message's header, question and address/alias answers.
public struct DNSMessage: Sendable {
    public var id: UInt16 = 0
    public var isResponse = false
    public var rcode: UInt8 = 0
    public var truncated = false
    public var questionName = ""
    public var questionType: UInt16 = 0
    public var answers: [DNSAnswer] = []

    public init() {}
}

public struct DNSAnswer: Sendable, Equatable {
    public var name: String
    /// 1 = A, 28 = AAAA, 5 = CNAME.
    public var type: UInt16
    /// Network-order address for A (4 bytes) and AAAA (16 bytes); empty for CNAME.
    public var address: [UInt8] = []
    /// The alias target for CNAME.
    public var target: String?
    public var ttl: UInt32
}

public enum DNSNames {
    public static func qtype(_ t: UInt16) -> String {
        switch t {
        case 1: return "A"
        case 2: return "NS"
        case 5: return "CNAME"
        case 6: return "SOA"
        case 12: return "PTR"
        case 15: return "MX"
        case 16: return "TXT"
        case 28: return "AAAA"
        case 33: return "SRV"
        case 64: return "SVCB"
        case 65: return "HTTPS"
        case 255: return "ANY"
        default: return "TYPE\(t)"
        }
    }

    public static func rcode(_ r: UInt8) -> String {
        switch r {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        default: return "RCODE\(r)"
        }
    }
}

/// Parses DNS messages (RFC 1035) from UDP payloads. Name compression is followed with a bound on
/// pointer jumps, so a pointer loop is reported, never followed forever.
public enum DNSParser {
    public enum Failure: Error, Sendable { case malformed, pointerLoop }

    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<DNSMessage, Failure> {
        var c = ByteCursor(bytes)
        guard let id = c.u16(), let flags = c.u16(), let qd = c.u16(), let an = c.u16(), c.skip(4) else {
            return .failure(.malformed)
        }
        var m = DNSMessage()
        m.id = id
        m.isResponse = flags & 0x8000 != 0
        m.truncated = flags & 0x0200 != 0
        m.rcode = UInt8(flags & 0x000F)
        for q in 0..<Int(qd) {
            switch readName(bytes, &c) {
            case .failure(let f): return .failure(f)
            case .success(let name):
                guard let qtype = c.u16(), c.skip(2) else { return .failure(.malformed) }
                if q == 0 {
                    m.questionName = name
                    m.questionType = qtype
                }
            }
        }
        for _ in 0..<Int(an) {
            let name: String
            switch readName(bytes, &c) {
            case .failure(let f): return .failure(f)
            case .success(let n): name = n
            }
            guard let type = c.u16(), c.skip(2), let ttl = c.u32(), let rdlen = c.u16() else { return .failure(.malformed) }
            let rdataStart = c.position
            guard let rdata = c.slice(Int(rdlen)) else { return .failure(.malformed) }
            switch type {
            case 1 where rdata.count == 4, 28 where rdata.count == 16:
                m.answers.append(DNSAnswer(name: name, type: type, address: Array(rdata), ttl: ttl))
            case 5:
                var rc = ByteCursor(bytes, position: rdataStart)
                if case .success(let target) = readName(bytes, &rc) {
                    m.answers.append(DNSAnswer(name: name, type: 5, target: target, ttl: ttl))
                }
            default:
                break
            }
        }
        return .success(m)
    }

    /// Reads a possibly compressed name, lower-cased, without the trailing dot.
    static func readName(_ bytes: UnsafeRawBufferPointer, _ c: inout ByteCursor) -> Result<String, Failure> {
        var out: [UInt8] = []
        var jumps = 0
        var cursor = c
        var resume: Int?
        while true {
            guard let len = cursor.u8() else { return .failure(.malformed) }
            if len == 0 { break }
            if len & 0xC0 == 0xC0 {
                guard let low = cursor.u8() else { return .failure(.malformed) }
                jumps += 1
                if jumps > 64 { return .failure(.pointerLoop) }
                if resume == nil { resume = cursor.position }
                let target = Int(len & 0x3F) << 8 | Int(low)
                guard cursor.seek(target) else { return .failure(.malformed) }
                continue
            }
            guard len & 0xC0 == 0, let label = cursor.slice(Int(len)) else { return .failure(.malformed) }
            if !out.isEmpty { out.append(0x2E) }
            for b in label { out.append(b >= 0x41 && b <= 0x5A ? b | 0x20 : b) }
            if out.count > 1024 { return .failure(.malformed) }
        }
        if let resume { _ = cursor.seek(resume) }
        c = cursor
        return .success(String(decoding: out, as: UTF8.self))
    }
}

/// DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message behind a two-byte length, several per
/// connection, a message free to span segments. Complete messages in a segment are handed out where
/// they lie; only a message cut by a segment's end is copied, into one buffer per direction that never
/// holds more than one message (at most 65,537 bytes: the length prefix's limit) and is counted in the
/// shared parser budget. A buffer the budget refuses gives up that direction (`gaveUp`).
public final class DNSStreamFramer {
    private let budget: ParserBudget?
    private var partial: [[UInt8]] = [[], []]
    private var charged = 0
    /// Directions no longer followed (a gap, or the budget refused a partial message).
    public private(set) var gaveUp = [false, false]
    /// Messages handed out so far.
    public private(set) var messages = 0

    public init(budget: ParserBudget? = nil) { self.budget = budget }

    deinit { budget?.release(charged) }

    /// Bytes held across segments, both directions together.
    public var bufferedBytes: Int { partial[0].count + partial[1].count }

    /// In-order bytes of one direction (0 toward the server, 1 back); `message` sees each whole message.
    public func deliver(_ direction: Int, _ data: UnsafeRawBufferPointer, message: (UnsafeRawBufferPointer) -> Void) {
        guard !gaveUp[direction], !data.isEmpty else { return }
        var rest = data
        if !partial[direction].isEmpty {
            // Finish the held message first: its prefix, then its body.
            let held = partial[direction]
            let need: Int
            if held.count < 2 {
                need = 2 - held.count
            } else {
                need = 2 + (Int(held[0]) << 8 | Int(held[1])) - held.count
            }
            let take = min(need, rest.count)
            append(direction, UnsafeRawBufferPointer(rebasing: rest[..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            guard !gaveUp[direction] else { return }
            let buf = partial[direction]
            guard buf.count >= 2 else { return }
            let length = Int(buf[0]) << 8 | Int(buf[1])
            if buf.count < 2 + length {
                // The prefix just completed: take the body from what is left.
                let more = min(2 + length - buf.count, rest.count)
                append(direction, UnsafeRawBufferPointer(rebasing: rest[..<more]))
                rest = UnsafeRawBufferPointer(rebasing: rest[more...])
                guard !gaveUp[direction], partial[direction].count == 2 + length else { return }
            }
            partial[direction].withUnsafeBytes { message(UnsafeRawBufferPointer(rebasing: $0[2...])) }
            messages += 1
            clear(direction)
        }
        // Whole messages where they lie.
        while rest.count >= 2 {
            let length = Int(rest[0]) << 8 | Int(rest[1])
            guard rest.count >= 2 + length else { break }
            message(UnsafeRawBufferPointer(rebasing: rest[2..<(2 + length)]))
            messages += 1
            rest = UnsafeRawBufferPointer(rebasing: rest[(2 + length)...])
        }
        if !rest.isEmpty { append(direction, rest) }
    }

    /// Bytes of one direction were lost: its framing cannot be trusted again.
    public func gap(_ direction: Int) {
        clear(direction)
        gaveUp[direction] = true
    }

    private func append(_ direction: Int, _ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if let budget {
            guard budget.reserve(bytes.count) else {
                clear(direction)
                gaveUp[direction] = true
                return
            }
            charged += bytes.count
        }
        partial[direction].append(contentsOf: bytes)
    }

    private func clear(_ direction: Int) {
        if budget != nil {
            budget?.release(partial[direction].count)
            charged -= partial[direction].count
        }
        partial[direction] = []
    }
}
