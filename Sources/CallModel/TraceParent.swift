/// The W3C trace context a request carried, for the call's `trace_id` and `parent_span_id`.
public enum TraceParent {
    /// A W3C `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header):
    /// `VERSION-TRACEID-PARENTID-FLAGS`, lower-case hex, neither id all zeros. Version 00 is exactly 55
    /// bytes; a later version may append fields after a dash; version ff is invalid.
    public static func parse(_ value: String) -> (traceId: String, parentSpanId: String)? {
        let u = Array(value.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed())
        guard u.count >= 55, u[2] == UInt8(ascii: "-"), u[35] == UInt8(ascii: "-"), u[52] == UInt8(ascii: "-") else { return nil }
        func isHex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x61...0x66).contains(c) }
        func hex(_ r: Range<Int>) -> Bool { u[r].allSatisfy(isHex) }
        guard hex(0..<2), hex(3..<35), hex(36..<52), hex(53..<55) else { return nil }
        let version = String(decoding: u[0..<2], as: UTF8.self)
        if version == "ff" || (version == "00" && u.count != 55) { return nil }
        if u.count > 55 && u[55] != UInt8(ascii: "-") { return nil }
        let trace = String(decoding: u[3..<35], as: UTF8.self), parent = String(decoding: u[36..<52], as: UTF8.self)
        if trace.utf8.allSatisfy({ $0 == 0x30 }) || parent.utf8.allSatisfy({ $0 == 0x30 }) { return nil }
        return (trace, parent)
    }
}
