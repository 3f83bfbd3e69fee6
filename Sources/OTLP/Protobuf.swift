/// A protocol-buffers writer for the few OTLP messages calltap sends: varints, fixed-width numbers,
/// strings, bytes and nested messages, in one growing byte array. Nested messages are written in place:
/// one byte is reserved for the length and the body is shifted when its length needs more.
/// Wire format: https://protobuf.dev/programming-guides/encoding/
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    private enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    private mutating func key(_ field: Int, _ type: WireType) {
        varint(UInt64(field) << 3 | type.rawValue)
    }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func littleEndian64(_ value: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    /// A varint field (uint32, uint64, enum, bool; int64 as two's complement). Zero is the default and
    /// is left out, as proto3 does.
    mutating func uint(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, .varint)
        varint(value)
    }

    mutating func int64(_ field: Int, _ value: Int64) { uint(field, UInt64(bitPattern: value)) }

    mutating func bool(_ field: Int, _ value: Bool) { uint(field, value ? 1 : 0) }

    /// A fixed64 field (timestamps in nanoseconds, histogram counts), left out when zero.
    mutating func fixed64(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, .fixed64)
        littleEndian64(value)
    }

    /// A double, always written (0.0 is a real value in a `oneof` or an `optional`).
    mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        littleEndian64(value.bitPattern)
    }

    mutating func fixed32(_ field: Int, _ value: UInt32) {
        guard value != 0 else { return }
        key(field, .fixed32)
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
    }

    /// A string field; an empty string is left out unless `always`.
    mutating func string(_ field: Int, _ value: String, always: Bool = false) {
        guard always || !value.isEmpty else { return }
        key(field, .lengthDelimited)
        var s = value
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        guard !value.isEmpty else { return }
        key(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Packed repeated fixed64 / double values.
    mutating func packedFixed64(_ field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        key(field, .lengthDelimited)
        varint(UInt64(values.count * 8))
        for v in values { littleEndian64(v) }
    }

    mutating func packedDouble(_ field: Int, _ values: [Double]) {
        packedFixed64(field, values.map(\.bitPattern))
    }

    /// A nested message written by `body`, always present (an empty message is still a message).
    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        key(field, .lengthDelimited)
        let lengthAt = bytes.count
        bytes.append(0)
        body(&self)
        let length = bytes.count - lengthAt - 1
        if length < 0x80 {
            bytes[lengthAt] = UInt8(length)
            return
        }
        var prefix: [UInt8] = []
        var v = UInt64(length)
        while v >= 0x80 {
            prefix.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        prefix.append(UInt8(v))
        bytes.replaceSubrange(lengthAt..<(lengthAt + 1), with: prefix)
    }
}

/// An OTLP attribute value (`AnyValue`).
public enum OTLPValue: Equatable, Sendable {
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case strings([String])
}

/// An attribute: a key and its value (`KeyValue`).
public struct OTLPAttribute: Equatable, Sendable {
    public var key: String
    public var value: OTLPValue
    public init(_ key: String, _ value: OTLPValue) {
        self.key = key
        self.value = value
    }
}

extension ProtoWriter {
    /// `KeyValue { string key = 1; AnyValue value = 2; }` as field `field` of the enclosing message.
    mutating func attribute(_ field: Int, _ a: OTLPAttribute) {
        message(field) { kv in
            kv.string(1, a.key)
            kv.message(2) { v in v.anyValue(a.value) }
        }
    }

    /// `AnyValue`: string 1, bool 2, int 3, double 4, array 5 (`ArrayValue { repeated AnyValue values = 1; }`).
    mutating func anyValue(_ value: OTLPValue) {
        switch value {
        case .string(let s): string(1, s, always: true)
        case .bool(let b):
            key(2, .varint)
            varint(b ? 1 : 0)
        case .int(let i):
            key(3, .varint)
            varint(UInt64(bitPattern: i))
        case .double(let d): double(4, d)
        case .strings(let list):
            message(5) { array in
                for s in list { array.message(1) { $0.string(1, s, always: true) } }
            }
        }
    }
}

/// Reads the fields of one protobuf message (the inverse of `ProtoWriter`): the Collector's answers,
/// and the checks of what the writer produced. `nil` when the bytes are not well-formed fields.
public enum ProtoReader {
    public enum Value: Equatable, Sendable {
        case varint(UInt64), fixed64(UInt64), bytes(ArraySlice<UInt8>), fixed32(UInt32)
    }

    public static func fields(_ b: ArraySlice<UInt8>) -> [(field: Int, value: Value)]? {
        var i = b.startIndex
        var out: [(field: Int, value: Value)] = []
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < b.endIndex && shift < 64 {
                let c = b[i]
                i += 1
                v |= UInt64(c & 0x7f) << shift
                if c < 0x80 { return v }
                shift += 7
            }
            return nil
        }
        func little(_ n: Int) -> UInt64? {
            guard b.endIndex - i >= n else { return nil }
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
            i += n
            return v
        }
        while i < b.endIndex {
            guard let key = varint(), key >> 3 > 0, key >> 3 <= UInt64(Int32.max) else { return nil }
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: guard let v = varint() else { return nil }; out.append((field, .varint(v)))
            case 1: guard let v = little(8) else { return nil }; out.append((field, .fixed64(v)))
            case 5: guard let v = little(4) else { return nil }; out.append((field, .fixed32(UInt32(v))))
            case 2:
                guard let n = varint(), n <= UInt64(b.endIndex - i) else { return nil }
                out.append((field, .bytes(b[i..<(i + Int(n))])))
                i += Int(n)
            default: return nil
            }
        }
        return out
    }

    public static func fields(_ b: [UInt8]) -> [(field: Int, value: Value)]? { fields(b[...]) }

    /// The nested messages (length-delimited values) of `field`.
    public static func messages(_ b: ArraySlice<UInt8>, _ field: Int) -> [ArraySlice<UInt8>] {
        (fields(b) ?? []).compactMap { f in
            if f.field == field, case let .bytes(x) = f.value { return x }
            return nil
        }
    }

    /// The first varint or fixed64 of `field`.
    public static func number(_ b: ArraySlice<UInt8>, _ field: Int) -> UInt64? {
        for f in fields(b) ?? [] where f.field == field {
            switch f.value {
            case .varint(let v), .fixed64(let v): return v
            default: continue
            }
        }
        return nil
    }
}
