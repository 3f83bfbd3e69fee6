import CallModel
import Foundation
import Testing

/// What strangers put in hosts and paths reaches a person's terminal only as visible text, and a JSON
/// Lines reader only as one line.
@Suite struct PrintableTests {
    @Test func controlAndFormatCharactersAreMadeVisible() {
        let hostile = "a\u{1B}[2J\u{1B}]52;c;aGk=\u{07}\r\u{202E}moc.evil\u{0085}\u{2028}z\u{7F}"
        let shown = Printable.escape(hostile)
        #expect(!shown.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value <= 0x9F) })
        #expect(!shown.contains("\u{202E}") && !shown.contains("\u{2028}"))
        #expect(shown == "a\\u{1B}[2J\\u{1B}]52;c;aGk=\\u{7}\\u{D}\\u{202E}moc.evil\\u{85}\\u{2028}z\\u{7F}")
        #expect(Printable.escape("api.example.com/v1/chat?x=é") == "api.example.com/v1/chat?x=é")
    }

    @Test func jsonLinesEscapeTheLineBreaksReadersSplitOn() throws {
        var r = CallRecord(kind: .http, ts: 1_700_000_000_000_000_000)
        r.path = "/a\u{2028}b\u{2029}c\u{0085}d€é"
        let line = CallJSON.line(r)
        #expect(!line.contains("\u{2028}") && !line.contains("\u{2029}") && !line.contains("\u{0085}"))
        #expect(line.contains(#"/a\u2028b\u2029c\u0085d€é"#))
        let back = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(back["path"] as? String == r.path)
    }
}
