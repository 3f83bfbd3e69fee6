import CallModel
import GRDB

/// Read-side queries for the API: paging, per-session and per-host summaries.
extension CallStore {
    /// A position in the newest-first listing: calls strictly older than (ts, id).
    public struct Cursor: Sendable, Equatable {
        public var ts: Int64
        public var id: Int64
        public init(ts: Int64, id: Int64) { self.ts = ts; self.id = id }

        /// "<ts µs>-<id>"
        public var text: String { "\(ts)-\(id)" }

        public init?(text: String) {
            let parts = text.split(separator: "-")
            guard parts.count == 2, let t = Int64(parts[0]), let i = Int64(parts[1]), t >= 0, i >= 0 else { return nil }
            ts = t
            id = i
        }
    }

    public struct PageFilter: Sendable {
        public var session: String?
        public var host: String?
        /// An outcome name, or "failed" for anything but ok.
        public var outcome: String?
        public var method: String?
        public var since: Int64?
        public var until: Int64?
        public var before: Cursor?
        public var limit = 100
        public init() {}
    }

    /// Calls newest first, with the cursor of the next page when there may be more.
    public func page(_ f: PageFilter) throws -> (calls: [CallRecord], next: Cursor?) {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let s = f.session { clauses.append("session_id = ?"); args.append(s) }
        if let h = f.host { clauses.append("host = ?"); args.append(h.lowercased()) }
        if let o = f.outcome {
            if o == "failed" { clauses.append("outcome <> 'ok'") } else { clauses.append("outcome = ?"); args.append(o) }
        }
        if let m = f.method { clauses.append("method = ?"); args.append(m.uppercased()) }
        if let t = f.since { clauses.append("ts >= ?"); args.append(t / 1000) }
        if let t = f.until { clauses.append("ts < ?"); args.append(t / 1000) }
        if let c = f.before { clauses.append("(ts < ? OR (ts = ? AND id < ?))"); args += [c.ts, c.ts, c.id] }
        var sql = "SELECT id, \(Self.columns.joined(separator: ",")) FROM calls"
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        sql += " ORDER BY ts DESC, id DESC LIMIT \(max(1, f.limit) + 1)"
        return try writer.read { db in
            let rows = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args))
            let more = rows.count > f.limit
            let kept = rows.prefix(f.limit)
            let next = more ? kept.last.map { Cursor(ts: $0["ts"], id: $0["id"]) } : nil
            return (kept.map(Self.record), next)
        }
    }

    public struct SessionSummary: Sendable {
        public var sessionId: String?
        public var calls: Int
        public var failures: Int
        public var firstTs: Int64
        public var lastTs: Int64
    }

    /// Every session with its call counts and activity span, most recent first: the counts and the last
    /// activity from the counts per 10 seconds (`CallCounts`), the first call's start from the calls'
    /// session index.
    public func sessions() throws -> [SessionSummary] {
        try writer.read { db in
            let first = try db.makeStatement(sql: "SELECT MIN(ts) FROM calls WHERE session_id = ?")
            let firstUnattributed = try db.makeStatement(sql: "SELECT MIN(ts) FROM calls WHERE session_id IS NULL")
            return try Row.fetchAll(db, sql: """
                SELECT session, has_session, SUM(calls) AS calls, SUM(failures) AS failures, MAX(last_ts) AS last_ts
                FROM call_counts GROUP BY session, has_session ORDER BY last_ts DESC
                """).map { row in
                let id: String? = (row["has_session"] as Bool) ? row["session"] : nil
                let firstTs: Int64?
                if let id { firstTs = try Int64.fetchOne(first, arguments: [id]) } else { firstTs = try Int64.fetchOne(firstUnattributed) }
                return SessionSummary(sessionId: id, calls: row["calls"], failures: row["failures"],
                                      firstTs: (firstTs ?? 0) * 1000, lastTs: (row["last_ts"] as Int64) * 1000)
            }
        }
    }

    public struct HostSummary: Sendable {
        public var host: String
        public var calls: Int
        public var failures: Int
        /// `kind: http` calls with a latency, and their nearest-rank p50 and p95 and maximum (µs).
        public var httpCalls: Int
        /// DNS lookups among `calls` (a host whose calls are all lookups is hidden by the dashboard on request).
        public var dnsCalls: Int
        public var p50Micros: Int64?
        public var p95Micros: Int64?
        public var maxMicros: Int64?
        public var bytes: Int
        public var lastFailure: CallRecord?
    }

    /// Per host (server address when unnamed): calls, failures, HTTP latency percentiles, bytes, last
    /// failure. The totals come from the counts per 10 seconds for the whole slots of the range and from
    /// the calls table for the parts of a slot at its ends (`CallCounts`); each percentile is read at
    /// its rank in the host's latencies (`calls_host_latency`, in latency order), and each last failure by
    /// its time — no sort, no read of the calls table but for those rows, so it stays fast at a million
    /// calls.
    public func hostSummaries(session: String?, since: Int64? = nil, until: Int64? = nil) throws -> [HostSummary] {
        let q = SummaryQueries(session: session, since: since, until: until)
        return try writer.read { db in
            var out: [HostSummary] = []
            var position: [String: Int] = [:]
            var lastFailureTimes: [Int: Int64] = [:]
            for (sql, arguments) in q.totals {
                for row in try Row.fetchAll(db, sql: sql, arguments: arguments) {
                    let host: String = row["h"]
                    let i = position[host] ?? out.count
                    if i == out.count {
                        position[host] = i
                        out.append(HostSummary(host: host, calls: 0, failures: 0, httpCalls: 0, dnsCalls: 0, p50Micros: nil,
                                               p95Micros: nil, maxMicros: nil, bytes: 0, lastFailure: nil))
                    }
                    out[i].calls += row["calls"]
                    out[i].failures += row["failures"]
                    out[i].httpCalls += row["http_calls"]
                    out[i].dnsCalls += row["dns_calls"]
                    out[i].bytes += row["bytes"]
                    if let t: Int64 = row["last_failure_ts"] { lastFailureTimes[i] = max(t, lastFailureTimes[i] ?? t) }
                }
            }
            let rankUp = try db.makeStatement(sql: q.latencyAtRank(descending: false))
            let rankDown = try db.makeStatement(sql: q.latencyAtRank(descending: true))
            for i in out.indices where out[i].httpCalls > 0 {
                let n = out[i].httpCalls
                // The value at `rank` (1 = the lowest), counted from whichever end is nearer.
                func at(_ rank: Int) throws -> Int64? {
                    let down = n - rank < rank - 1
                    let ms = try Double.fetchOne(down ? rankDown : rankUp,
                                                 arguments: StatementArguments([out[i].host] + q.args + [down ? n - rank : rank - 1]))
                    return ms.map { Int64(($0 * 1000).rounded()) }
                }
                // Nearest rank: the value at ceil(p × n).
                out[i].p50Micros = try at(Int((0.50 * Double(n)).rounded(.up)))
                out[i].p95Micros = try at(Int((0.95 * Double(n)).rounded(.up)))
                out[i].maxMicros = try at(n)
            }
            let last = try db.makeStatement(sql: q.lastFailure)
            for (i, t) in lastFailureTimes {
                if let row = try Row.fetchOne(last, arguments: StatementArguments([t, out[i].host] + q.args)) {
                    out[i].lastFailure = Self.record(row)
                }
            }
            return out.sorted { $0.calls != $1.calls ? $0.calls > $1.calls : $0.host < $1.host }
        }
    }

    /// Conditions on the calls table for a session, a host name and a time range (microseconds, as `ts`
    /// is stored): the same columns `page` filters on, so every route counts the same calls.
    static func callConditions(session: String?, host: String? = nil, since: Int64?, until: Int64?)
        -> (clauses: [String], args: [(any DatabaseValueConvertible)?]) {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let s = session { clauses.append("session_id = ?"); args.append(s) }
        if let h = host { clauses.append("host = ?"); args.append(h.lowercased()) }
        if let t = since { clauses.append("ts >= ?"); args.append(t) }
        if let t = until { clauses.append("ts < ?"); args.append(t) }
        return (clauses, args)
    }

    /// The per-host summary's queries over one filter (session, time range).
    struct SummaryQueries {
        let session: String?
        /// Microseconds, as `ts` is stored.
        let since: Int64?, until: Int64?
        /// The filter's conditions on the calls table.
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []

        init(session: String?, since: Int64?, until: Int64?) {
            self.session = session
            self.since = since.map { $0 / 1000 }
            self.until = until.map { $0 / 1000 }
            (clauses, args) = CallStore.callConditions(session: session, since: self.since, until: self.until)
        }

        /// How calls are grouped by host: its name, else the server's address (the expression the
        /// latency index is built on, and `call_counts.host_key`).
        static let hostKey = CallCounts.Columns(p: "").hostKey

        /// `WHERE` with `first` conditions, then the filter's.
        func whereClause(_ first: [String] = []) -> String {
            let all = first + clauses
            return all.isEmpty ? "" : " WHERE " + all.joined(separator: " AND ")
        }

        var arguments: StatementArguments { StatementArguments(args) }

        /// Rows (h, calls, failures, http_calls, dns_calls, bytes, last_failure_ts) per host, to be added
        /// up: one query over the whole slots, one over the calls of each end of the range.
        var totals: [(String, StatementArguments)] {
            let split = CallCounts.Split(since: since, until: until)
            var out: [(String, StatementArguments)] = []
            if let slots = split.slots {
                let c = CallCounts.conditions(session: session, host: nil, from: slots.from, to: slots.to)
                out.append(("""
                    SELECT host_key AS h, SUM(calls) AS calls, SUM(failures) AS failures, SUM(http_calls) AS http_calls,
                           SUM(dns_calls) AS dns_calls, SUM(bytes) AS bytes, MAX(last_failure_ts) AS last_failure_ts
                    FROM call_counts\(c.clauses.isEmpty ? "" : " WHERE " + c.clauses.joined(separator: " AND ")) GROUP BY host_key
                    """, StatementArguments(c.args)))
            }
            let m = CallCounts.Columns(p: "")
            for end in split.ends {
                let c = CallStore.callConditions(session: session, since: end.since, until: end.until)
                out.append(("""
                    SELECT \(Self.hostKey) AS h, COUNT(*) AS calls, SUM(\(m.failed)) AS failures, SUM(\(m.http)) AS http_calls,
                           SUM(\(m.dns)) AS dns_calls, SUM(\(m.bytes)) AS bytes, MAX(CASE WHEN \(m.failed) THEN ts END) AS last_failure_ts
                    FROM calls\(c.clauses.isEmpty ? "" : " WHERE " + c.clauses.joined(separator: " AND ")) GROUP BY h
                    """, StatementArguments(c.args)))
            }
            return out
        }

        /// One host's HTTP latency at an offset from the lowest or the highest (arguments: host, the
        /// filter's, the offset).
        func latencyAtRank(descending: Bool) -> String {
            "SELECT latency_ms FROM calls INDEXED BY calls_host_latency"
                + whereClause(["\(Self.hostKey) = ?", "kind = 'http'", "latency_ms IS NOT NULL"])
                + " ORDER BY latency_ms\(descending ? " DESC" : "") LIMIT 1 OFFSET ?"
        }

        /// One host's failure at a time, the last by id (arguments: time, host, the filter's): the filter
        /// applies, so another session's failure at the same instant is never picked.
        var lastFailure: String {
            "SELECT id, \(CallStore.columns.joined(separator: ",")) FROM calls WHERE id = (SELECT MAX(id) FROM calls INDEXED BY calls_timeline"
                + whereClause(["ts = ?", "\(Self.hostKey) = ?", "outcome <> 'ok'"]) + ")"
        }
    }

    /// The query plans of the dashboard's summary queries, for the check that none reads the whole
    /// calls table or sorts it.
    public func summaryQueryPlans(session: String?, since: Int64?, until: Int64? = nil) throws -> [String] {
        let q = SummaryQueries(session: session, since: since, until: until)
        return try writer.read { db in
            try (q.totals + [(q.latencyAtRank(descending: false), StatementArguments(["h"] + q.args + [0])),
                             (q.latencyAtRank(descending: true), StatementArguments(["h"] + q.args + [0])),
                             (q.lastFailure, StatementArguments([0, "h"] + q.args))]).flatMap { sql, args in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: args).map { $0["detail"] as String }
            }
        }
    }

    /// Calls with an id above `after`, oldest first, for incremental metrics.
    public func calls(afterId after: Int64, limit: Int = 10_000) throws -> (calls: [CallRecord], lastId: Int64) {
        try writer.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, \(Self.columns.joined(separator: ",")) FROM calls WHERE id > ? ORDER BY id LIMIT ?",
                                        arguments: [after, limit])
            return (rows.map(Self.record), rows.last?["id"] ?? after)
        }
    }
}

// MARK: - Retention

extension CallStore {
    /// Bytes the database's live pages take (free pages excluded).
    public func usedBytes() throws -> Int {
        try writer.read { db in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let size = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            return (pages - free) * size
        }
    }

    /// One small pruning step, so the writer is never blocked for long: deletes up to `batch` of the
    /// oldest calls that are older than `before` (nanoseconds), or, while the live data exceeds
    /// `maxBytes`, the oldest ones regardless of age. Returns how many rows went.
    @discardableResult
    public func pruneStep(before: Int64?, maxBytes: Int?, batch: Int = 1000) throws -> Int {
        var deleted = 0
        if let before {
            deleted += try writer.write { db in
                let doomed = "SELECT id FROM calls WHERE ts < ? ORDER BY ts LIMIT ?"
                try Self.countUnexported(db, doomed: doomed, arguments: [before / 1000, batch])
                try db.execute(sql: "DELETE FROM calls WHERE id IN (\(doomed))", arguments: [before / 1000, batch])
                let calls = db.changesCount
                try db.execute(sql: "DELETE FROM capture_stats WHERE recorded_at < ?", arguments: [before / 1000])
                return calls
            }
        }
        if let maxBytes, try usedBytes() > maxBytes {
            deleted += try writer.write { db in
                let doomed = "SELECT id FROM calls ORDER BY ts LIMIT ?"
                try Self.countUnexported(db, doomed: doomed, arguments: [batch])
                try db.execute(sql: "DELETE FROM calls WHERE id IN (\(doomed))", arguments: [batch])
                return db.changesCount
            }
        }
        return deleted
    }
}

// MARK: - Export cursor

extension CallStore {
    /// Where an exporter (`otlp`) has got to: the last call id its receiver confirmed, and its counters.
    public struct ExportState: Sendable, Equatable {
        public var lastId: Int64 = 0
        public var exported = 0
        public var failures = 0
        public var rejected = 0
        /// Calls retention deleted before they were exported.
        public var prunedUnexported = 0
        public var lastSuccessAt: Int64?
        public var lastError: String?
        /// Calls stored after the cursor, and the start of the oldest of them (ns), when there are any.
        public var pending = 0
        public var oldestPendingTs: Int64?
    }

    /// Counts, against every export cursor, the calls `doomed` selects that it has not exported yet.
    static func countUnexported(_ db: Database, doomed: String, arguments: StatementArguments) throws {
        try db.execute(sql: """
            UPDATE export_cursor SET pruned_unexported = pruned_unexported +
                (SELECT count(*) FROM calls WHERE id IN (\(doomed)) AND id > export_cursor.last_id)
            """, arguments: arguments)
    }

    /// The exporter's state, creating its cursor at the start (every stored call still to export).
    public func exportState(_ name: String) throws -> ExportState {
        try writer.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO export_cursor (name, last_id) VALUES (?, 0)", arguments: [name])
        }
        return try exportStates()[name] ?? ExportState()
    }

    /// Every exporter's state, for /metrics: read only, no cursor is created.
    public func exportStates() throws -> [String: ExportState] {
        try writer.read { db in
            var out: [String: ExportState] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM export_cursor ORDER BY name") {
                var s = ExportState()
                s.lastId = row["last_id"]
                s.exported = row["exported"]
                s.failures = row["failures"]
                s.rejected = row["rejected"]
                s.prunedUnexported = row["pruned_unexported"]
                s.lastSuccessAt = row["last_success_at"]
                s.lastError = row["last_error"]
                s.pending = try Int.fetchOne(db, sql: "SELECT count(*) FROM calls WHERE id > ?", arguments: [s.lastId]) ?? 0
                // The first pending call by id, which the rowid finds without a scan; its start is the lag.
                s.oldestPendingTs = try Int64.fetchOne(db, sql: "SELECT ts FROM calls WHERE id > ? ORDER BY id LIMIT 1",
                                                       arguments: [s.lastId]).map { $0 * 1000 }
                out[row["name"]] = s
            }
            return out
        }
    }

    /// Moves the cursor past calls up to `lastId`: `delivered` were taken, `rejected` refused for good.
    public func advanceExport(_ name: String, to lastId: Int64, delivered: Int, rejected: Int, at time: Int64) throws {
        try writer.write { db in
            try db.execute(sql: """
                UPDATE export_cursor SET last_id = max(last_id, ?), exported = exported + ?, rejected = rejected + ?,
                    last_success_at = CASE WHEN ? > 0 THEN ? ELSE last_success_at END
                WHERE name = ?
                """, arguments: [lastId, delivered, rejected, delivered, time / 1000, name])
        }
    }

    /// Counts a failed attempt and remembers why.
    public func recordExportFailure(_ name: String, error: String) throws {
        try writer.write { db in
            try db.execute(sql: "UPDATE export_cursor SET failures = failures + 1, last_error = ? WHERE name = ?",
                           arguments: [String(error.prefix(300)), name])
        }
    }
}
