import CallModel
import Foundation
import GRDB
import Storage
import Testing

@Suite struct CallStoreTests {
    static func call(_ host: String, ts: Int64, session: String?, outcome: Outcome = .ok) -> CallRecord {
        var r = CallRecord(kind: .http, ts: ts)
        r.host = host
        r.sessionId = session
        r.method = "GET"
        r.path = "/x?key=REDACTED"
        r.statusCode = outcome == .ok ? 200 : 503
        r.outcome = outcome
        r.latencyMicros = 12_345
        r.alpnOffered = ["h2", "http/1.1"]
        r.weirds = ["content_gap"]
        r.endedAt = ts + 12_345_000
        r.missedBytes = 3
        r.visibility = .plaintext
        return r
    }

    @Test func roundTripKeepsEveryField() throws {
        let store = try CallStore.inMemory()
        let original = Self.call("api.example.com", ts: 1_717_243_200_123_456_000, session: "s1")
        try store.insert([original])
        let back = try store.calls(CallStore.Filter())
        #expect(back == [original])
        #expect(CallJSON.line(back[0]) == CallJSON.line(original))
    }

    /// Every field set to a distinct value survives SQLite and JSON Lines: a field that one of them
    /// forgets, or two fields swapped, shows up here.
    @Test func everyFieldSurvivesSQLiteAndJSONLines() throws {
        let filled = CallFieldFiller.filledRecord()
        let empty = CallRecord(kind: .connect, ts: 0)
        // The filler touched every field.
        let line = CallJSON.line(filled), emptyLine = CallJSON.line(empty)
        let a = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let b = try #require(JSONSerialization.jsonObject(with: Data(emptyLine.utf8)) as? [String: Any])
        #expect(Array(a.keys).sorted() == CallRecord.fieldNames.sorted())
        for name in CallRecord.fieldNames {
            #expect("\(a[name] ?? "missing")" != "\(b[name] ?? "missing")", "field \(name) was not filled")
        }
        // JSON Lines: in contract order, and read back whole.
        let order = CallRecord.fieldNames.map { "\"\($0)\":" }
        let positions = order.map { line.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
        #expect(try CallRecord.fromJSONObject(a) == filled)
        // SQLite.
        let store = try CallStore.inMemory()
        try store.insert([filled, empty])
        let back = try store.calls(CallStore.Filter())
        #expect(back == [empty, filled])
        let page = try store.page(CallStore.PageFilter())
        #expect(page.calls.contains(filled))
    }

    /// The calls table has one column per field (columns added by later migrations come last), of the
    /// type its shape is stored as: a new field without its migration fails here.
    @Test func schemaHasAColumnPerField() throws {
        let store = try CallStore.inMemory()
        let columns = try store.writer.read { db in
            try Row.fetchAll(db, sql: "PRAGMA table_info(calls)").map { (String($0["name"] as String), String($0["type"] as String)) }
        }
        let expected: [String: String] = ["time": "INTEGER", "millis": "REAL", "text": "TEXT", "choice": "TEXT",
                                          "integer": "INTEGER", "flag": "INTEGER", "list": "TEXT"]
        #expect(columns.first?.0 == "id")
        // The v1 columns in contract order, then each later migration's column in the order added.
        let added = ["owner_source", "trace_id", "parent_span_id", "attribution_key", "llm_provider", "llm_model",
                     "llm_input_tokens", "llm_output_tokens", "llm_cache_read_tokens", "llm_ttft_ms", "llm_stop_reason",
                     "llm_tool_calls", "proxy"]
        #expect(columns.dropFirst().map(\.0) == CallRecord.fieldNames.filter { !added.contains($0) } + added)
        let types = Dictionary(columns.dropFirst().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        for field in CallRecord.fieldList {
            #expect(expected[field.shape.rawValue] == types[field.name], "\(field.name) is \(types[field.name] ?? "missing")")
        }
    }

    @Test func filtersBySessionHostOutcomeAndTime() throws {
        let store = try CallStore.inMemory()
        let base: Int64 = 1_700_000_000_000_000_000
        try store.insert([
            Self.call("a.example", ts: base, session: "s1"),
            Self.call("b.example", ts: base + 1_000_000_000, session: "s1", outcome: .httpError),
            Self.call("a.example", ts: base + 2_000_000_000, session: "s2", outcome: .timeout),
        ])
        var f = CallStore.Filter()
        f.session = "s1"
        #expect(try store.calls(f).count == 2)
        f = CallStore.Filter()
        f.failedOnly = true
        #expect(try store.calls(f).map(\.host) == ["b.example", "a.example"])
        f = CallStore.Filter()
        f.host = "A.example"
        f.since = base + 1_000_000
        #expect(try store.calls(f).map(\.sessionId) == ["s2"])
        f = CallStore.Filter()
        f.until = base + 1_500_000_000
        f.limit = 1
        #expect(try store.calls(f).count == 1)
    }

    @Test func fileDatabaseUsesWALAndReopensWithoutMigratingTwice() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-store-\(getpid()).db").path
        try? FileManager.default.removeItem(atPath: path)
        do {
            let store = try CallStore(path: path)
            try store.insert((0..<5000).map { Self.call("h\($0 % 7)", ts: Int64($0) * 1_000_000, session: nil) })
            var stats = CaptureStats()
            stats.packets = 42
            try store.recordStats(stats, source: "x.pcap", at: 1_000_000_000)
        }
        let again = try CallStore(path: path)
        #expect(try again.callCount() == 5000)
        #expect(try again.statsTotals()["packets"] == 42)
        let mode = try again.writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    /// A database written by the v1 build (`calltap read Samples/agent-demo.pcap --db`) opens, migrates to
    /// the current schema, and keeps every call and counter.
    @Test func databaseOfThePreviousVersionMigrates() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/calls-v1.sqlite").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-v1-\(getpid()).sqlite").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: fixture, toPath: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let before = try DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        }
        #expect(before == ["v1: calls and capture statistics"])

        let store = try CallStore(path: path)
        let applied = try store.writer.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(applied == ["v1: calls and capture statistics", "v2: capture statistics by name", "v3: owner_source", "v4: trace context and export cursor", "v5: llm fields and attribution_key", "v6: summary index", "v7: timeline index", "v8: summary by host", "v9: proxy", "v10: counts per 10 seconds"])
        let index = try store.writer.read { db in
            try String.fetchOne(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'capture_stats_name_value'")
        }
        #expect(index == "capture_stats_name_value")
        #expect(try store.callCount() == 18)
        let totals = try store.statsTotals()
        #expect(totals["packets"] == 189)
        var filter = CallStore.Filter()
        filter.host = "api.agent.test"
        let demo = try store.calls(filter)
        #expect(demo.count == 12)
        #expect(demo.allSatisfy { $0.host == "api.agent.test" })
        // And it takes new calls.
        try store.insert([Self.call("after-migration", ts: 1, session: nil)])
        #expect(try store.callCount() == 19)
    }

    @Test func timestampsFormatAndParse() {
        #expect(Timestamps.iso8601(1_717_243_200_044_890_000) == "2024-06-01T12:00:00.044890Z")
        #expect(Timestamps.parse("2024-06-01T12:00:00.04489Z") == 1_717_243_200_044_890_000)
        #expect(Timestamps.parse("2024-06-01T14:00:00+02:00") == 1_717_243_200_000_000_000)
        #expect(Timestamps.parse("1717243200") == 1_717_243_200_000_000_000)
        #expect(Timestamps.parse("yesterday") == nil)
        // Found by schemathesis against /api/external-calls?since=…: times beyond Int64 nanoseconds trapped.
        #expect(Timestamps.parse("999999999999999999999999999999") == nil)
        #expect(Timestamps.parse("9999-12-31T23:59:59Z") == nil)
        #expect(Timestamps.parse("2262-01-01T00:00:00Z") == 9_214_646_400_000_000_000)
        #expect(Timestamps.iso8601(0) == "1970-01-01T00:00:00.000000Z")
    }

    @Test func retentionPrunesInSmallSteps() throws {
        let store = try CallStore.inMemory()
        let day: Int64 = 86_400 * 1_000_000_000
        let now: Int64 = 1_800_000_000 * 1_000_000_000
        // 3,000 calls spread over 30 days.
        try store.insert((0..<3000).map { Self.call("h", ts: now - Int64($0) * day / 100, session: nil) })
        var steps = 0
        while try store.pruneStep(before: now - 7 * day, maxBytes: nil, batch: 500) > 0 { steps += 1 }
        #expect(try store.callCount() == 701) // the call exactly 7 days old stays
        #expect(steps == 5)
        let used = try store.usedBytes()
        while try store.pruneStep(before: nil, maxBytes: used / 2, batch: 100) > 0 {}
        #expect(try store.usedBytes() <= used / 2)
        #expect(try store.callCount() < 701 && store.callCount() > 0)
        // What stays is the newest.
        let oldest = try store.calls(CallStore.Filter()).first?.ts ?? 0
        #expect(oldest > now - 7 * day)
    }
}

