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

        static let sql = "CASE WHEN status_code >= 500 THEN 2 WHEN status_code >= 400 THEN 1 WHEN outcome = 'ok' THEN 0 ELSE 3 END"
    }

    public struct TimelineFilter: Sendable {
        public var session: String?
        public var host: String?
        /// Nanoseconds since the epoch; calls starting at or after `since` and before `until`.
        public var since: Int64?
        public var until: Int64?
        /// The most buckets the range is cut into.
        public var buckets = 100
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
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []

        init(_ f: TimelineFilter) {
            // The same conditions, on the same columns, as `page`, so both count the same calls.
            if let s = f.session { clauses.append("session_id = ?"); args.append(s) }
            if let h = f.host { clauses.append("host = ?"); args.append(h.lowercased()) }
            if let t = f.since { clauses.append("ts >= ?"); args.append(t / 1000) }
            if let t = f.until { clauses.append("ts < ?"); args.append(t / 1000) }
        }

        var whereClause: String { clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ") }
        var arguments: StatementArguments { StatementArguments(args) }

        var first: String { "SELECT ts FROM calls\(whereClause) ORDER BY ts LIMIT 1" }
        var last: String { "SELECT ts FROM calls\(whereClause) ORDER BY ts DESC LIMIT 1" }

        /// Rows (h, b, c, n): host key, bucket index, status class, calls; the first two arguments are
        /// the range's start and the bucket width in microseconds.
        var counts: String {
            """
            SELECT \(SummaryQueries.hostKey) AS h, (ts - ?) / ? AS b, \(StatusClass.sql) AS c, COUNT(*) AS n
            FROM calls INDEXED BY calls_timeline\(whereClause) GROUP BY h, b, c
            """
        }

        func countArguments(start: Int64, width: Int64) -> StatementArguments {
            StatementArguments([start, width] + args)
        }
    }

    /// Calls per host, status class and time bucket over the filter's range. The counts add up to the
    /// calls `page` lists for the same session, host and range.
    public func timeline(_ f: TimelineFilter) throws -> Timeline {
        let q = TimelineQueries(f)
        return try writer.read { db in
            var t = Timeline()
            var start = f.since.map { $0 / 1000 }
            var end = f.until.map { $0 / 1000 }
            if start == nil { start = try Int64.fetchOne(db, sql: q.first, arguments: q.arguments) }
            if end == nil { end = try Int64.fetchOne(db, sql: q.last, arguments: q.arguments).map { $0 + 1 } }
            guard let start, let end else { return t }
            t.start = start
            t.end = end
            let buckets = Int64(max(1, f.buckets))
            guard end > start else { return t }
            let span = end - start
            t.bucketMicros = max(1, span / buckets + (span % buckets == 0 ? 0 : 1))
            t.bucketCount = Int(span / t.bucketMicros + (span % t.bucketMicros == 0 ? 0 : 1))
            var byHost: [String: HostTimeline] = [:]
            var cells: [String: [Int: [Int]]] = [:]
            let rows = try Row.fetchCursor(db, sql: q.counts, arguments: q.countArguments(start: start, width: t.bucketMicros))
            while let row = try rows.next() {
                let h: String = row["h"]
                let b: Int = row["b"], c: Int = row["c"], n: Int = row["n"]
                byHost[h, default: HostTimeline(host: h)].totals[c] += n
                cells[h, default: [:]][b, default: [0, 0, 0, 0]][c] += n
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
            var plans: [String] = []
            for (sql, args) in [(q.first, q.arguments), (q.last, q.arguments), (q.counts, q.countArguments(start: 0, width: 1))] {
                plans += try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: args).map { $0["detail"] as String }
            }
            return plans
        }
    }
}
