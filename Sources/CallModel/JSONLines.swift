/// Writes call records as JSON Lines with a fixed field order, every contract field present
/// (null when unknown), so output is deterministic and diffable.
public enum CallJSON {
    public static func line(_ r: CallRecord) -> String {
        var record = r
        var writer = CallJSONFieldWriter()
        record.visitFields(&writer)
        return writer.w.finish()
    }
}

/// Builds one JSON object as text.
public struct JSONObjectWriter {
    private var out = "{"
    private var first = true

    public init() {
        out.reserveCapacity(1024) // a typical call line, so appending rarely regrows it
    }

    private mutating func key(_ k: String) {
        if !first { out += "," }
        first = false
        out += "\""
        out += k
        out += "\":"
    }

    public mutating func string(_ k: String, _ v: String?) {
        key(k)
        if let v { Self.appendQuoted(v, to: &out) } else { out += "null" }
    }

    public mutating func int(_ k: String, _ v: Int?) {
        key(k)
        out += v.map(String.init) ?? "null"
    }

    public mutating func bool(_ k: String, _ v: Bool) {
        key(k)
        out += v ? "true" : "false"
    }

    public mutating func double(_ k: String, _ v: Double?) {
        key(k)
        if let v, v.isFinite { out += "\(v)" } else { out += "null" }
    }

    /// Microseconds printed as milliseconds with three decimals.
    public mutating func millis(_ k: String, _ micros: Int64?) {
        key(k)
        if let micros { out += Timestamps.millisText(micros) } else { out += "null" }
    }

    public mutating func strings(_ k: String, _ v: [String]?) {
        key(k)
        guard let v else { out += "null"; return }
        out += "["
        for (i, s) in v.enumerated() {
            if i > 0 { out += "," }
            Self.appendQuoted(s, to: &out)
        }
        out += "]"
    }

    /// Inserts an already-encoded JSON value.
    public mutating func raw(_ k: String, _ json: String) {
        key(k)
        out += json
    }

    public mutating func finish() -> String {
        out += "}"
        return out
    }

    public static func appendQuoted(_ s: String, to out: inout String) {
        out += "\""
        // Most values (hosts, paths, addresses) need no escape: copy them whole.
        // (0xC2 and 0xE2 lead U+0085 and U+2028/U+2029, line breaks for many JSON Lines readers: such
        // strings take the careful path.)
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0xC2 || $0 == 0xE2 }
        } ?? false
        if plain {
            out += s
            out += "\""
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    public static func quoted(_ s: String) -> String {
        var out = ""
        appendQuoted(s, to: &out)
        return out
    }
}

public enum Timestamps {
    /// "2024-06-01T12:00:00.123456Z" from nanoseconds since the epoch (truncated to microseconds).
    public static func iso8601(_ nanos: Int64) -> String {
        let micros = floorDiv(nanos, 1000)
        let secs = floorDiv(micros, 1_000_000)
        let frac = micros - secs * 1_000_000
        let days = floorDiv(secs, 86400)
        let sod = secs - days * 86400
        let (y, m, d) = civil(fromDays: days)
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(sod / 3600, 2)):\(pad(sod % 3600 / 60, 2)):\(pad(sod % 60, 2)).\(pad(frac, 6))Z"
    }

    /// Parses ISO-8601 ("2024-06-01T12:00:00Z", optional fraction, "Z" or ±hh:mm) or epoch seconds.
    public static func parse(_ text: String) -> Int64? {
        if let secs = Double(text), text.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }) {
            // Beyond ±9.2e9 s (the year 2262) nanoseconds do not fit an Int64: not a time we can use.
            guard secs.isFinite, abs(secs) < 9.2e9 else { return nil }
            return Int64((secs * 1_000_000).rounded()) * 1000
        }
        let chars = Array(text.utf8)
        func num(_ from: Int, _ len: Int) -> Int64? {
            guard from + len <= chars.count else { return nil }
            var v: Int64 = 0
            for k in from..<(from + len) {
                guard chars[k] >= 0x30 && chars[k] <= 0x39 else { return nil }
                v = v * 10 + Int64(chars[k] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2) else { return nil }
        var h: Int64 = 0, mi: Int64 = 0, s: Int64 = 0, fracNanos: Int64 = 0
        var i = 10
        if i < chars.count && (chars[i] == 0x54 || chars[i] == 0x20) {
            guard let hh = num(11, 2), let mm = num(14, 2) else { return nil }
            h = hh; mi = mm
            i = 16
            if i < chars.count && chars[i] == 0x3A {
                guard let ss = num(17, 2) else { return nil }
                s = ss
                i = 19
            }
            if i < chars.count && chars[i] == 0x2E {
                i += 1
                var scale: Int64 = 100_000_000
                while i < chars.count, chars[i] >= 0x30 && chars[i] <= 0x39 {
                    fracNanos += Int64(chars[i] - 0x30) * scale
                    scale /= 10
                    i += 1
                }
            }
        }
        var offset: Int64 = 0
        if i < chars.count {
            if chars[i] == 0x5A { i += 1 } else if chars[i] == 0x2B || chars[i] == 0x2D {
                let negative = chars[i] == 0x2D
                guard let oh = num(i + 1, 2) else { return nil }
                var j = i + 3
                if j < chars.count && chars[j] == 0x3A { j += 1 }
                guard let om = num(j, 2) else { return nil }
                offset = (oh * 3600 + om * 60) * (negative ? -1 : 1)
                i = j + 2
            } else { return nil }
        }
        guard i == chars.count, (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61 else { return nil }
        let seconds = daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? nil : nanos + fracNanos // years past 2262 do not fit
    }

    public static func millisText(_ micros: Int64) -> String {
        let sign = micros < 0 ? "-" : ""
        let a = abs(micros)
        return "\(sign)\(a / 1000).\(pad(a % 1000, 3))"
    }

    static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    // Howard Hinnant's days-from-civil algorithms (public domain description).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
