import CallModel
import Foundation
import GRDB
@testable import Storage
import Testing

/// The counts per 10 seconds: kept right by every insert and delete (pruning too), and the summary, the
/// timeline and the session list read from them give exactly what counting the calls one by one gives,
/// for ranges on and off slot boundaries.
@Suite struct CallCountsTests {
    /// 2,400 calls over three hours, three sessions and none, five hosts and an unnamed server, every
    /// kind and status class, a few at one instant.
    static func calls() -> [CallRecord] {
        let t0: Int64 = 1_717_243_200_000_000_000 + 17_250_000_000 // 17.25 s past a minute
        let hosts: [String?] = ["api.a.test", "api.b.test", "c.test", "d.test", "e.test", nil]
        let sessions: [String?] = ["s1", "s2", "s3", nil]
        let outcomes: [Outcome] = [.ok, .ok, .ok, .httpError, .timeout, .refused, .ok, .reset]
        var out: [CallRecord] = []
        var seed: UInt64 = 42
        func next(_ n: Int) -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int((seed >> 33) % UInt64(n))
        }
        for k in 0..<2400 {
            let kind: CallKind = [.http, .http, .http, .tls, .dns, .connect, .quic][next(7)]
            var r = CallRecord(kind: kind, ts: t0 + Int64(k) * 4_500_000_000 / 1 + Int64(next(3_000)) * 1_000_000)
            if k % 97 == 0, let prev = out.last { r.ts = prev.ts } // same instant as the one before
            r.host = hosts[next(hosts.count)]
            r.serverIp = r.host == nil ? "192.0.2.\(next(3))" : "198.51.100.\(next(3))"
            r.sessionId = sessions[next(sessions.count)]
            r.outcome = outcomes[next(outcomes.count)]
            if kind == .http {
                r.statusCode = r.outcome == .httpError ? [404, 429, 500, 503][next(4)] : (r.outcome == .ok ? [200, 201, 302][next(3)] : nil)
                if next(5) > 0 { r.latencyMicros = Int64(1 + next(900_000)) }
                r.requestBodyBytes = next(4) == 0 ? nil : next(5_000)
                r.responseBodyBytes = next(20_000)
            } else {
                r.bytesSent = next(3) == 0 ? nil : next(9_000)
                r.bytesReceived = next(9_000)
            }
            if next(4) > 0 { r.endedAt = r.ts + Int64(next(2_000_000)) * 1000 }
            out.append(r)
        }
        return out
    }

    /// What call_counts must hold: the calls counted one by one.
    static func recount(_ db: Database) throws -> [Row] {
        let c = CallCounts.Columns(p: "")
        return try Row.fetchAll(db, sql: """
            SELECT \(c.key.map(\.1).joined(separator: ", ")), COUNT(*), SUM(\(c.failed)), SUM(\(c.http)), SUM(\(c.dns)), SUM(\(c.bytes)),
                   MAX(CASE WHEN \(c.failed) THEN ts END), MAX(\(c.lastTs))
            FROM calls GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
            """)
    }

    static func stored(_ db: Database) throws -> [Row] {
        try Row.fetchAll(db, sql: """
            SELECT host_key, slot, session, has_session, named, class, calls, failures, http_calls, dns_calls, bytes,
                   last_failure_ts, last_ts FROM call_counts ORDER BY 1, 2, 3, 4, 5, 6
            """)
    }

    /// True when both hold the same rows; else prints the first that differ.
    static func same(_ a: [Row], _ b: [Row]) -> Bool {
        for (x, y) in zip(a, b) where Array(x.databaseValues) != Array(y.databaseValues) {
            print("call_counts: \(x)\n    recount: \(y)")
            return false
        }
        return a.count == b.count
    }

    @Test func keptByInsertsAndDeletes() throws {
        let store = try CallStore.inMemory()
        let calls = Self.calls()
        for chunk in stride(from: 0, to: calls.count, by: 500) { try store.insert(Array(calls[chunk..<min(calls.count, chunk + 500)])) }
        var (stored, recount) = try store.writer.read { db in (try Self.stored(db), try Self.recount(db)) }
        #expect(recount.count > 500)
        #expect(Self.same(stored, recount), "\(stored.count) rows, \(recount.count) counted")
        // Pruning by age, then by size, then a call rewritten by hand: the counts follow each time.
        let cut = calls[1000].ts
        while try store.pruneStep(before: cut, maxBytes: nil, batch: 137) > 0 {}
        (stored, recount) = try store.writer.read { db in (try Self.stored(db), try Self.recount(db)) }
        #expect(Self.same(stored, recount), "\(stored.count) rows, \(recount.count) counted")
        try store.pruneStep(before: nil, maxBytes: 1, batch: 250)
        try store.writer.write { db in
            try db.execute(sql: "UPDATE calls SET outcome = 'timeout', session_id = 'moved' WHERE id IN (SELECT id FROM calls ORDER BY id DESC LIMIT 5)")
            try db.execute(sql: "DELETE FROM calls WHERE id % 11 = 0")
        }
        (stored, recount) = try store.writer.read { db in (try Self.stored(db), try Self.recount(db)) }
        #expect(Self.same(stored, recount), "\(stored.count) rows, \(recount.count) counted")
        #expect(try store.writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM call_counts WHERE calls <= 0") } == 0)
    }

    /// A database written before the counts per slot gets them from its calls when it is opened.
    @Test func migrationCountsTheCallsAlreadyStored() throws {
        let queue = try DatabaseQueue()
        try CallStore.migrator.migrate(queue, upTo: "v9: proxy")
        try queue.write { db in
            let sql = "INSERT INTO calls (\(CallStore.columns.joined(separator: ","))) VALUES (\(CallStore.columns.map { _ in "?" }.joined(separator: ",")))"
            for r in Self.calls().prefix(700) { try db.execute(sql: sql, arguments: StatementArguments(CallStore.values(r))) }
        }
        let store = try CallStore(writer: queue)
        let (total, stored, recount) = try store.writer.read { db in
            (try Int.fetchOne(db, sql: "SELECT SUM(calls) FROM call_counts"), try Self.stored(db), try Self.recount(db))
        }
        #expect(total == 700)
        #expect(Self.same(stored, recount), "\(stored.count) rows, \(recount.count) counted")
    }

    @Test func splitCutsARangeAtSlots() {
        let m = CallCounts.slotMicros
        var s = CallCounts.Split(since: nil, until: nil)
        #expect(s.slots?.from == nil && s.slots?.to == nil && s.ends.isEmpty)
        s = CallCounts.Split(since: 3 * m, until: 7 * m)
        #expect(s.slots?.from == 3 && s.slots?.to == 7 && s.ends.isEmpty)
        s = CallCounts.Split(since: 3 * m + 1, until: 7 * m - 1)
        #expect(s.slots?.from == 4 && s.slots?.to == 6)
        #expect(s.ends.map(\.since) == [3 * m + 1, 6 * m] && s.ends.map(\.until) == [4 * m, 7 * m - 1])
        s = CallCounts.Split(since: 3 * m + 5, until: 4 * m - 5)
        #expect(s.slots == nil && s.ends.count == 1)
        s = CallCounts.Split(since: 9 * m, until: 2 * m)
        #expect(s.slots == nil && s.ends.count == 1)
        s = CallCounts.Split(since: nil, until: 5 * m + 1)
        #expect(s.slots?.from == nil && s.slots?.to == 5 && s.ends.count == 1)
    }

    static func ranges(_ calls: [CallRecord]) -> [(Int64?, Int64?)] {
        let first = calls.map(\.ts).min()!, last = calls.map(\.ts).max()!
        let minute: Int64 = 60_000_000_000
        let aligned = (first / minute + 3) * minute
        return [(nil, nil), (first + 1_234_567_891, nil), (nil, last - 7_654_321_000), (aligned, aligned + 90 * minute),
                (aligned + 1, aligned + 47 * minute + 999), (first + 100 * minute + 5, first + 100 * minute + 30_000_000_000),
                (last, last + 1), (aligned + 10 * minute, aligned), (aligned + 5_000_000_000, aligned + 65_000_000_000), (calls[500].ts, calls[1500].ts)]
    }

    @Test func summaryEqualsCountingTheCalls() throws {
        let store = try CallStore.inMemory()
        let calls = Self.calls()
        try store.insert(calls)
        for session in [nil, "s2"] as [String?] {
            for (since, until) in Self.ranges(calls) {
                let label = "\(session ?? "-") \(since ?? -1) \(until ?? -1)"
                let expected = calls.filter {
                    (session == nil || $0.sessionId == session) && (since == nil || $0.ts / 1000 >= since! / 1000)
                        && (until == nil || $0.ts / 1000 < until! / 1000)
                }
                let summaries = try store.hostSummaries(session: session, since: since, until: until)
                #expect(summaries.reduce(0) { $0 + $1.calls } == expected.count, "\(label)")
                for s in summaries {
                    let mine = expected.filter { ($0.host ?? $0.serverIp) == s.host }
                    #expect(s.calls == mine.count && s.failures == mine.filter { $0.outcome != .ok }.count, "\(label) \(s.host)")
                    #expect(s.dnsCalls == mine.filter { $0.kind == .dns }.count, "\(label) \(s.host)")
                    let bytes = mine.reduce(0) {
                        $0 + ($1.requestBodyBytes ?? 0) + ($1.responseBodyBytes ?? 0)
                            + ($1.kind == .http ? 0 : ($1.bytesSent ?? 0) + ($1.bytesReceived ?? 0))
                    }
                    #expect(s.bytes == bytes, "\(label) \(s.host)")
                    let latencies = mine.filter { $0.kind == .http }.compactMap(\.latencyMicros).sorted()
                    func rank(_ p: Double) -> Int64? { latencies.isEmpty ? nil : latencies[Int((p * Double(latencies.count)).rounded(.up)) - 1] }
                    #expect(s.httpCalls == latencies.count && s.p50Micros == rank(0.5) && s.p95Micros == rank(0.95)
                        && s.maxMicros == latencies.last, "\(label) \(s.host)")
                    let lastFailure = mine.filter { $0.outcome != .ok }.map { $0.ts / 1000 }.max()
                    #expect(s.lastFailure.map { $0.ts / 1000 } == lastFailure, "\(label) \(s.host)")
                }
                for p in try store.summaryQueryPlans(session: session, since: since, until: until) {
                    #expect(!(p.hasPrefix("SCAN calls") && !p.contains("COVERING INDEX")), "\(label): \(p)")
                }
            }
        }
    }

    @Test func timelineEqualsCountingTheCalls() throws {
        let store = try CallStore.inMemory()
        let calls = Self.calls()
        try store.insert(calls)
        var viaSlots = 0
        for session in [nil, "s1"] as [String?] {
            for host in [nil, "api.b.test"] as [String?] {
                for (since, until) in Self.ranges(calls) {
                    for (buckets, fineLimit) in [(1, 100_000), (7, 100_000), (100, 100_000), (1000, 100_000), (1000, 10)] {
                        var f = CallStore.TimelineFilter()
                        (f.session, f.host, f.since, f.until, f.buckets, f.fineLimit) = (session, host, since, until, buckets, fineLimit)
                        let label = "\(f)"
                        let t = try store.timeline(f)
                        let expected = calls.filter {
                            (session == nil || $0.sessionId == session) && (host == nil || $0.host == host)
                                && (since == nil || $0.ts / 1000 >= since! / 1000) && (until == nil || $0.ts / 1000 < until! / 1000)
                        }
                        #expect(t.count == expected.count, "\(label)")
                        guard let start = t.start, let end = t.end, end > start else { continue }
                        #expect(t.bucketCount >= 1 && t.bucketCount <= buckets, "\(label)")
                        #expect(start + Int64(t.bucketCount) * t.bucketMicros >= end, "\(label)")
                        if t.bucketMicros >= CallCounts.slotMicros {
                            viaSlots += 1
                            #expect(start % CallCounts.slotMicros == 0 && t.bucketMicros % CallCounts.slotMicros == 0, "\(label)")
                        }
                        var cells: [String: [Int: [Int]]] = [:]
                        for c in expected {
                            let b = Int((c.ts / 1000 - start) / t.bucketMicros)
                            cells[c.host ?? c.serverIp ?? "unknown", default: [:]][b, default: [0, 0, 0, 0]][CallStore.StatusClass(c).rawValue] += 1
                        }
                        #expect(t.hosts.count == cells.count, "\(label)")
                        for h in t.hosts {
                            let want = cells[h.host] ?? [:]
                            #expect(h.buckets.map(\.index) == want.keys.sorted(), "\(label) \(h.host)")
                            #expect(h.buckets.allSatisfy { want[$0.index] == $0.counts }, "\(label) \(h.host)")
                        }
                    }
                }
            }
        }
        #expect(viaSlots > 20)
    }

    @Test func sessionsEqualCountingTheCalls() throws {
        let store = try CallStore.inMemory()
        let calls = Self.calls()
        try store.insert(calls)
        while try store.pruneStep(before: calls[300].ts, maxBytes: nil, batch: 100) > 0 {}
        let kept = calls.filter { $0.ts / 1000 >= calls[300].ts / 1000 }
        let sessions = try store.sessions()
        #expect(sessions.count == 4)
        for s in sessions {
            let mine = kept.filter { $0.sessionId == s.sessionId }
            #expect(s.calls == mine.count && s.failures == mine.filter { $0.outcome != .ok }.count)
            #expect(s.firstTs == mine.map { $0.ts / 1000 * 1000 }.min())
            #expect(s.lastTs == mine.map { ($0.endedAt ?? $0.ts) / 1000 * 1000 }.max())
        }
        #expect(sessions.map(\.lastTs) == sessions.map(\.lastTs).sorted(by: >))
    }
}
