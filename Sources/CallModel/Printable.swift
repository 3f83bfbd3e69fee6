/// Text shown to a person (the table, log lines on a terminal or in the journal) with every control and
/// format character made visible: captured hosts and paths are chosen by strangers, and ESC sequences
/// (screen clear, colours), OSC 52 (clipboard), OSC 0 (window title), a bare CR, or U+202E (right-to-left
/// override) must not reach the terminal as anything but text.
public enum Printable {
    /// `s` with C0 and C1 controls, DEL, line and paragraph separators and Unicode format characters
    /// written as `\u{XXXX}`; unchanged (no copy) when there are none.
    public static func escape(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: needsEscape) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 16)
        for u in s.unicodeScalars {
            if needsEscape(u) {
                out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        if v < 0x20 || (v >= 0x7F && v <= 0x9F) { return true }
        if v == 0x2028 || v == 0x2029 { return true }
        return u.properties.generalCategory == .format
    }
}
