import CallModel
import Foundation
import GRDB
import Storage
import Testing

/// The OTLP exporter's cursor: created at the start, moved only forward, failures remembered, and calls
/// that retention deletes before they were exported counted, not lost silently.
@Suite struct ExportCursorTests {
    static let base: Int64 = 1_700_000_000_000_000_000

    @Test func cursorStartsAtTheBeginningAndOnlyMovesForward() throws {
        let store = try CallStore.inMemory()
        try store.insert((0..<10).map { CallStoreTests.call("a.example", ts: Self.base + Int64($0) * 1_000_000, session: nil) })
        var s = try store.exportState("otlp")
        #expect(s.lastId == 0 && s.pending == 10 && s.oldestPendingTs == Self.base)
        let batch = try store.calls(afterId: s.lastId, limit: 4)
        #expect(batch.calls.count == 4)
        try store.advanceExport("otlp", to: batch.lastId, delivered: 4, rejected: 0, at: Self.base)
        s = try store.exportState("otlp")
        #expect(s.lastId == batch.lastId && s.pending == 6 && s.exported == 4 && s.lastSuccessAt == Self.base / 1000)
        #expect(s.oldestPendingTs == Self.base + 4_000_000)
        // A late answer for an older batch cannot move it back.
        try store.advanceExport("otlp", to: 1, delivered: 0, rejected: 2, at: Self.base)
        s = try store.exportState("otlp")
        #expect(s.lastId == batch.lastId && s.rejected == 2)
        try store.recordExportFailure("otlp", error: "HTTP 503")
        try store.recordExportFailure("otlp", error: String(repeating: "x", count: 5000))
        s = try store.exportState("otlp")
        #expect(s.failures == 2 && s.lastError?.count == 300)
        #expect(try store.exportStates().keys.sorted() == ["otlp"])
    }

    @Test func retentionCountsCallsItDeletesBeforeTheyWereExported() throws {
        let store = try CallStore.inMemory()
        try store.insert((0..<30).map { CallStoreTests.call("a.example", ts: Self.base + Int64($0) * 1_000_000_000, session: nil) })
        _ = try store.exportState("otlp")
        let first = try store.calls(afterId: 0, limit: 10)
        try store.advanceExport("otlp", to: first.lastId, delivered: 10, rejected: 0, at: Self.base)
        // The 20 oldest go: 10 of them were exported, 10 were not.
        let deleted = try store.pruneStep(before: Self.base + 20 * 1_000_000_000, maxBytes: nil, batch: 1000)
        #expect(deleted == 20)
        var s = try store.exportState("otlp")
        #expect(s.prunedUnexported == 10 && s.pending == 10)
        // Pruning by size counts the same way.
        _ = try store.pruneStep(before: nil, maxBytes: 0, batch: 5)
        s = try store.exportState("otlp")
        #expect(s.prunedUnexported == 15 && s.pending == 5)
    }

    @Test func withoutAnExporterPruningCountsNothing() throws {
        let store = try CallStore.inMemory()
        try store.insert((0..<5).map { CallStoreTests.call("a.example", ts: Self.base + Int64($0) * 1_000_000, session: nil) })
        _ = try store.pruneStep(before: Self.base + 10_000_000, maxBytes: nil)
        #expect(try store.exportStates().isEmpty)
        #expect(try store.callCount() == 0)
    }
}

/// The database is opened with SQLITE_OPEN_NOFOLLOW: a link at its path is refused, never followed.
@Suite struct DatabaseLinkTests {
    @Test func aLinkAtTheDatabasePathIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-link-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let victim = dir.appendingPathComponent("victim.txt").path
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: victim))
        let link = dir.appendingPathComponent("calls.db").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        #expect(throws: CallStore.LinkRefused.self) { _ = try CallStore(path: link) }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep me")
        // A dangling link: nothing is created at its target.
        let dangling = dir.appendingPathComponent("other.db").path
        let target = dir.appendingPathComponent("created-by-root.db").path
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: target)
        #expect(throws: CallStore.LinkRefused.self) { _ = try CallStore(path: dangling) }
        #expect(!FileManager.default.fileExists(atPath: target))
        // A plain path opens.
        let store = try CallStore(path: dir.appendingPathComponent("real.db").path)
        #expect(try store.callCount() == 0)
    }
}

/// The dashboard's summary queries read the covering index, never the whole calls table, and give the
/// same answer as counting the calls one by one.
@Suite struct SummaryQueryTests {
    @Test func plansUseTheCoveringIndex() throws {
        let store = try CallStore.inMemory()
        var calls: [CallRecord] = []
        for k in 0..<300 {
            var r = CallStoreTests.call(k % 3 == 0 ? "a.example" : "b.example", ts: 1_700_000_000_000_000_000 + Int64(k) * 1_000_000,
                                        session: k % 2 == 0 ? "s1" : "s2", outcome: k % 7 == 0 ? .httpError : .ok)
            if k % 5 == 0 { r.host = nil; r.serverIp = "192.0.2.\(k % 4)" }
            calls.append(r)
        }
        try store.insert(calls)
        for (session, since) in [(nil, nil), ("s1", nil), (nil, Int64(1_700_000_000_100_000_000)), ("s2", Int64(1_700_000_000_050_000_000))] as [(String?, Int64?)] {
            let plans = try store.summaryQueryPlans(session: session, since: since)
            #expect(!plans.isEmpty)
            for p in plans {
                #expect(!(p.hasPrefix("SCAN calls") && !p.contains("COVERING INDEX")), "\(session ?? "-") \(since ?? 0): \(p)")
                // A sort only of the calls at the range's ends (less than a slot, 10 s, each).
                #expect(!p.contains("TEMP B-TREE") || since.map { $0 % 10_000_000_000 != 0 } == true, "\(session ?? "-") \(since ?? 0): \(p)")
            }
            let summaries = try store.hostSummaries(session: session, since: since)
            let expected = calls.filter { (session == nil || $0.sessionId == session) && (since == nil || $0.ts >= since!) }
            #expect(summaries.reduce(0) { $0 + $1.calls } == expected.count)
            for s in summaries {
                let mine = expected.filter { ($0.host ?? $0.serverIp) == s.host }
                #expect(s.calls == mine.count && s.failures == mine.filter { $0.outcome != .ok }.count)
                let latencies = mine.filter { $0.kind == .http }.compactMap(\.latencyMicros).sorted()
                func rank(_ p: Double) -> Int64? { latencies.isEmpty ? nil : latencies[Int((p * Double(latencies.count)).rounded(.up)) - 1] }
                #expect(s.httpCalls == latencies.count)
                #expect(s.p50Micros == rank(0.5) && s.p95Micros == rank(0.95) && s.maxMicros == latencies.last)
                let lastFailure = mine.filter { $0.outcome != .ok }.max { $0.ts < $1.ts }
                #expect(s.lastFailure?.ts == lastFailure?.ts)
            }
        }
    }
}

@Suite struct SummaryLastFailureTests {
    /// Two sessions failing on one host at the same instant: each session's summary names its own.
    @Test func lastFailureKeepsToTheSession() throws {
        let store = try CallStore.inMemory()
        var a = CallStoreTests.call("h.example", ts: 1_700_000_000_000_000_000, session: "A", outcome: .httpError)
        a.error = "from A"
        var b = a
        b.sessionId = "B"
        b.error = "from B"
        try store.insert([a, b])
        #expect(try store.hostSummaries(session: "A").first?.lastFailure?.error == "from A")
        #expect(try store.hostSummaries(session: "B").first?.lastFailure?.error == "from B")
    }
}
