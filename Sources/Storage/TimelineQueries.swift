import CallModel
import GRDB

/// The dashboard's timeline: calls counted per host, status class and time bucket by SQLite.
extension CallStore {
    /// What a call's status class is, decided in this order: `status_code` 500 and above is `5xx`,
    /// 400–499 is `4xx`; otherwise `outcome: ok` is `ok` (any 1xx–3xx status, and TLS, DNS and
    /// connection records that succeeded) and any other outcome is `network` (refused, timeout, reset,
    /// tls_failed, dns_failed, no_response, incomplete without an error status).
    public enum StatusClass: Int, Sendable, CaseIterable {
        case ok = 0, clientError = 1, serverError = 2, network = 3

        /// The names the API uses, in this order.
        public var name: String { ["ok", "4xx", "5xx", "network"][rawValue] }

        /// The class of one call, as the SQL below decides it.
        public init(_ r: CallRecord) {
            if let s = r.statusCode, s >= 500 { self = .serverError } else if let s = r.statusCode, s >= 400 {
                self = .clientError
            } else { self = r.outcome == .ok ? .ok : .network }
        }

        static let sql = CallCounts.Columns(p: "").statusClass
    }

    public struct TimelineFilter: Sendable {
        public var session: String?
        public var host: String?
        /// Nanoseconds since the epoch; calls starting at or after `since` and before `until`.
        public var since: Int64?
        public var until: Int64?
        /// The most buckets the range is cut into.
        public var buckets = 100
        /// The most calls counted one by one into buckets narrower than half a slot (see `counts`).
        var fineLimit = 100_000
        public init() {}
    }

    public struct HostTimeline: Sendable {
        public var host: String
        /// Calls per status class (indexed by `StatusClass.rawValue`).
        public var totals = [0, 0, 0, 0]
        /// Buckets with at least one call, ascending: the bucket's index and its counts per class.
        public var buckets: [(index: Int, counts: [Int])] = []
        public var count: Int { totals.reduce(0, +) }
    }

    public struct Timeline: Sendable {
        /// The range the buckets cover, microseconds since the epoch, `end` excluded: the filter's
        /// `since` and `until` when given, else the first call's start and just after the last one's.
        /// Nil when neither was given and no call matches.
        public var start: Int64?
        public var end: Int64?
        public var bucketMicros: Int64 = 1
        /// Buckets that cover the range (at most the filter's `buckets`).
        public var bucketCount = 0
        /// Most calls first, then by name.
        public var hosts: [HostTimeline] = []
        public var count: Int { hosts.reduce(0) { $0 + $1.count } }
    }

    /// The timeline's queries over one filter: the range ends (when not given) and the counts.
    struct TimelineQueries {
        let filter: TimelineFilter
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []

        init(_ f: TimelineFilter) {
            filter = f
            (clauses, args) = Self.conditions(f, since: f.since.map { $0 / 1000 }, until: f.until.map { $0 / 1000 })
        }

        /// The filter's session and host with a time range (microseconds).
        static func conditions(_ f: TimelineFilter, since: Int64?, until: Int64?)
            -> (clauses: [String], args: [(any DatabaseValueConvertible)?]) {
            CallStore.callConditions(session: f.session, host: f.host, since: since, until: until)
        }

        static func whereClause(_ clauses: [String]) -> String {
            clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
        }

        var whereClause: String { Self.whereClause(clauses) }
        var arguments: StatementArguments { StatementArguments(args) }

        var first: String { "SELECT ts FROM calls\(whereClause) ORDER BY ts LIMIT 1" }
        var last: String { "SELECT ts FROM calls\(whereClause) ORDER BY ts DESC LIMIT 1" }

        /// The buckets over [start, end) (microseconds): their origin and width, and the queries giving
        /// rows (h, b, c, n) — host key, bucket index, status class, calls — to be added up. Buckets are
        /// made whole slots (10 s) wide and start on a slot, so the whole slots of the range are counted
        /// from the counts per slot and only the parts of a slot at its ends from the calls — unless they
        /// would be under half a slot wide and the range holds at most `filter.fineLimit` calls: then the calls
        /// are counted one by one, into buckets as narrow as asked.
        func counts(_ db: Database, start: Int64, end: Int64) throws -> (origin: Int64, width: Int64, queries: [(String, StatementArguments)]) {
            let m = CallCounts.slotMicros
            let buckets = Int64(max(1, filter.buckets))
            func up(_ a: Int64, _ b: Int64) -> Int64 { a / b + (a % b == 0 ? 0 : 1) }
            let width = max(1, up(end - start, buckets))
            if width * 2 < m {
                // About how many calls the range holds: those of every slot it touches.
                let c = CallCounts.conditions(session: filter.session, host: filter.host, from: CallCounts.slot(start), to: CallCounts.slot(end - 1) + 1)
                let calls = try Int.fetchOne(db, sql: "SELECT SUM(calls) FROM call_counts" + Self.whereClause(c.clauses),
                                             arguments: StatementArguments(c.args)) ?? 0
                if calls <= filter.fineLimit {
                    return (start, width, [(Self.callCounts(whereClause), StatementArguments([start, width] + args))])
                }
            }
            let origin = CallCounts.slot(start) * m
            let wide = up(up(end - origin, buckets), m) * m
            let split = CallCounts.Split(since: filter.since.map { $0 / 1000 }, until: filter.until.map { $0 / 1000 })
            var queries: [(String, StatementArguments)] = []
            if let slots = split.slots {
                let c = CallCounts.conditions(session: filter.session, host: filter.host, from: slots.from, to: slots.to)
                queries.append(("""
                    SELECT host_key AS h, (slot * \(m) - ?) / ? AS b, class AS c, SUM(calls) AS n
                    FROM call_counts\(Self.whereClause(c.clauses)) GROUP BY h, b, c
                    """, StatementArguments([origin, wide] + c.args)))
            }
            for part in split.ends {
                let c = Self.conditions(filter, since: part.since, until: part.until)
                queries.append((Self.callCounts(Self.whereClause(c.clauses)), StatementArguments([origin, wide] + c.args)))
            }
            return (origin, wide, queries)
        }

        /// Rows (h, b, c, n) from the calls; the first two arguments are the buckets' origin and width.
        static func callCounts(_ whereClause: String) -> String {
            """
            SELECT \(SummaryQueries.hostKey) AS h, (ts - ?) / ? AS b, \(StatusClass.sql) AS c, COUNT(*) AS n
            FROM calls INDEXED BY calls_timeline\(whereClause) GROUP BY h, b, c
            """
        }

        /// The range the buckets cover: the filter's, else from the first matching call to just after the
        /// last one (nil when none matches).
        func range(_ db: Database) throws -> (start: Int64, end: Int64)? {
            var start = filter.since.map { $0 / 1000 }
            var end = filter.until.map { $0 / 1000 }
            if start == nil { start = try Int64.fetchOne(db, sql: first, arguments: arguments) }
            if end == nil { end = try Int64.fetchOne(db, sql: last, arguments: arguments).map { $0 + 1 } }
            guard let start, let end else { return nil }
            return (start, end)
        }
    }

    /// Calls per host, status class and time bucket over the filter's range. The counts add up to the
    /// calls `page` lists for the same session, host and range.
    public func timeline(_ f: TimelineFilter) throws -> Timeline {
        let q = TimelineQueries(f)
        return try writer.read { db in
            var t = Timeline()
            guard let (start, end) = try q.range(db) else { return t }
            t.start = start
            t.end = end
            guard end > start else { return t }
            let (origin, width, queries) = try q.counts(db, start: start, end: end)
            t.start = origin
            t.bucketMicros = width
            t.bucketCount = Int((end - origin) / width + ((end - origin) % width == 0 ? 0 : 1))
            var byHost: [String: HostTimeline] = [:]
            var cells: [String: [Int: [Int]]] = [:]
            for (sql, arguments) in queries {
                let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
                while let row = try rows.next() {
                    let h: String = row["h"]
                    let b: Int = row["b"], c: Int = row["c"], n: Int = row["n"]
                    byHost[h, default: HostTimeline(host: h)].totals[c] += n
                    cells[h, default: [:]][b, default: [0, 0, 0, 0]][c] += n
                }
            }
            for (h, buckets) in cells {
                byHost[h]?.buckets = buckets.keys.sorted().map { ($0, buckets[$0]!) }
            }
            t.hosts = byHost.values.sorted { $0.count != $1.count ? $0.count > $1.count : $0.host < $1.host }
            return t
        }
    }

    /// The query plans of the timeline's queries, for the check that none reads the whole calls table.
    public func timelineQueryPlans(_ f: TimelineFilter) throws -> [String] {
        let q = TimelineQueries(f)
        return try writer.read { db in
            var all = [(q.first, q.arguments), (q.last, q.arguments)]
            if let (start, end) = try q.range(db), end > start { all += try q.counts(db, start: start, end: end).queries }
            var plans: [String] = []
            for (sql, args) in all {
                plans += try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: args).map { $0["detail"] as String }
            }
            return plans
        }
    }
}
