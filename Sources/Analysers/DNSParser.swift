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
