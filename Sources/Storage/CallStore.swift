import Foundation
import CallModel
import GRDB
import GRDBSQLite

/// The calls database: schema and migrations, batched inserts, and queries. Times are stored as
/// integer microseconds since the epoch, durations as milliseconds, lists as JSON text.
public final class CallStore: Sendable {
    public let writer: any DatabaseWriter

    public struct LinkRefused: Error, CustomStringConvertible {
        public var description: String
    }

    /// Opens (creating if needed) the database at `path` in WAL mode and migrates it. The file is first
    /// opened (and created) by SQLite itself with `SQLITE_OPEN_NOFOLLOW`, so a symbolic link at `path` is
    /// refused rather than followed; GRDB, which takes no open flags, then opens the file that is there.
    public convenience init(path: String) throws {
        var handle: OpaquePointer?
        let code = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, nil)
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
        sqlite3_close_v2(handle)
        guard code == SQLITE_OK else {
            throw LinkRefused(description: code == SQLITE_CANTOPEN && Self.isLink(path) ? "it is a symbolic link" : message)
        }
        var config = Configuration()
        config.busyMode = .timeout(5)
        let pool = try DatabasePool(path: path, configuration: config)
        try self.init(writer: pool)
    }

    /// An in-memory database, for tests and runs without `--db`.
    /// Why a database file cannot be created or written, in the system's words ("Read-only file system",
    /// "Permission denied", "No such file or directory"), or nil when the directory looks writable.
    public static func fileProblem(path: String) -> String? {
        let dir = (path as NSString).deletingLastPathComponent
        let target = FileManager.default.fileExists(atPath: path) ? path : (dir.isEmpty ? "." : dir)
        if access(target, W_OK) == 0 { return nil }
        return String(cString: strerror(errno))
    }

    static func isLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    public static func inMemory() throws -> CallStore {
        try CallStore(writer: DatabaseQueue())
    }

    public init(writer: any DatabaseWriter) throws {
        self.writer = writer
        try Self.migrator.migrate(writer)
    }

    /// The calls table's columns: the call's fields, in contract order.
    static let columns: [String] = CallRecord.fieldNames

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: calls and capture statistics") { db in
            try db.execute(sql: """
                CREATE TABLE calls (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL,
                    ts INTEGER NOT NULL,
                    ended_at INTEGER,
                    latency_ms REAL,
                    connection_id TEXT,
                    stream_id INTEGER,
                    estimated INTEGER NOT NULL DEFAULT 0,
                    session_id TEXT,
                    attribution TEXT,
                    pid INTEGER,
                    process TEXT,
                    exe TEXT,
                    cgroup TEXT,
                    agent TEXT,
                    target TEXT,
                    client_ip TEXT,
                    client_port INTEGER,
                    server_ip TEXT,
                    server_port INTEGER,
                    scheme TEXT,
                    host TEXT,
                    method TEXT,
                    path TEXT,
                    url TEXT,
                    status_code INTEGER,
                    http_version TEXT,
                    request_content_type TEXT,
                    response_content_type TEXT,
                    request_body_bytes INTEGER,
                    response_body_bytes INTEGER,
                    request_summary TEXT,
                    response_summary TEXT,
                    sni TEXT,
                    alpn TEXT,
                    alpn_offered TEXT,
                    tls_version TEXT,
                    tls_cipher TEXT,
                    ja4 TEXT,
                    cert_subject TEXT,
                    cert_san TEXT,
                    dns_qtype TEXT,
                    dns_rcode TEXT,
                    dns_answers TEXT,
                    connect_ms REAL,
                    tls_handshake_ms REAL,
                    ttfb_ms REAL,
                    outcome TEXT NOT NULL,
                    error TEXT,
                    weirds TEXT,
                    missed_bytes INTEGER NOT NULL DEFAULT 0,
                    visibility TEXT,
                    bytes_sent INTEGER,
                    bytes_received INTEGER
                );
                CREATE INDEX calls_session_ts ON calls(session_id, ts);
                CREATE INDEX calls_host_ts ON calls(host, ts);
                CREATE INDEX calls_ts ON calls(ts);
                CREATE TABLE capture_stats (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    recorded_at INTEGER NOT NULL,
                    source TEXT NOT NULL,
                    name TEXT NOT NULL,
                    value INTEGER NOT NULL
                );
                CREATE INDEX capture_stats_recorded ON capture_stats(recorded_at);
                """)
        }
        // /api/stats sums every counter by name; a daemon writes a row per counter per interval, so
        // without a covering index that sum reads the whole table.
        m.registerMigration("v2: capture statistics by name") { db in
            try db.execute(sql: "CREATE INDEX capture_stats_name_value ON capture_stats(name, value)")
        }
        // How each call's process was found: the kernel at connect time, the socket table, or inference.
        m.registerMigration("v3: owner_source") { db in
            try db.execute(sql: "ALTER TABLE calls ADD COLUMN owner_source TEXT")
        }
        // The request's W3C trace context, and where OTLP export has got to (the last call id a collector
        // confirmed) with the calls retention removed before they were exported.
        m.registerMigration("v4: trace context and export cursor") { db in
            try db.execute(sql: "ALTER TABLE calls ADD COLUMN trace_id TEXT")
            try db.execute(sql: "ALTER TABLE calls ADD COLUMN parent_span_id TEXT")
            try db.execute(sql: """
                CREATE TABLE export_cursor (
                    name TEXT PRIMARY KEY,
                    last_id INTEGER NOT NULL,
                    exported INTEGER NOT NULL DEFAULT 0,
                    failures INTEGER NOT NULL DEFAULT 0,
                    rejected INTEGER NOT NULL DEFAULT 0,
                    pruned_unexported INTEGER NOT NULL DEFAULT 0,
                    last_success_at INTEGER,
                    last_error TEXT
                )
                """)
        }
        // What an LLM API exchange said (provider, model, tokens, time to first token, stop reason, tool
        // calls) and what decided each call's session.
        m.registerMigration("v5: llm fields and attribution_key") { db in
            for (name, type) in [("attribution_key", "TEXT"), ("llm_provider", "TEXT"), ("llm_model", "TEXT"),
                                 ("llm_input_tokens", "INTEGER"), ("llm_output_tokens", "INTEGER"),
                                 ("llm_cache_read_tokens", "INTEGER"), ("llm_ttft_ms", "REAL"),
                                 ("llm_stop_reason", "TEXT"), ("llm_tool_calls", "TEXT")] {
                try db.execute(sql: "ALTER TABLE calls ADD COLUMN \(name) \(type)")
            }
        }
        // The dashboard's per-host summary reads this index alone (a covering index: the columns it
        // aggregates), never the whole calls table.
        m.registerMigration("v6: summary index") { db in
            try db.execute(sql: """
                CREATE INDEX calls_summary ON calls(ts, session_id, host, server_ip, kind, outcome, latency_ms,
                    request_body_bytes, response_body_bytes, bytes_sent, bytes_received)
                """)
        }
        // The dashboard's timeline counts calls per host, status class and time bucket from this index
        // alone (a covering index: the columns it groups and filters by, status_code among them).
        m.registerMigration("v7: timeline index") { db in
            try db.execute(sql: "CREATE INDEX calls_timeline ON calls(ts, session_id, host, server_ip, outcome, status_code)")
        }
        m.registerMigration("v8: summary by host") { db in
            // The per-host summary grouped in host order (no sort), and each host's HTTP latencies in order,
            // so its percentiles are read at their rank; they replace the summary index of v6.
            try db.execute(sql: """
                CREATE INDEX calls_by_host ON calls(COALESCE(host, server_ip, 'unknown'), ts, session_id, outcome, kind,
                    latency_ms, request_body_bytes, response_body_bytes, bytes_sent, bytes_received, host, server_ip);
                CREATE INDEX calls_host_latency ON calls(COALESCE(host, server_ip, 'unknown'), latency_ms, ts, session_id, kind,
                    host, server_ip) WHERE kind = 'http' AND latency_ms IS NOT NULL;
                DROP INDEX calls_summary;
                """)
        }
        // The forward proxy a call went through (`ip:port`); null for direct calls.
        m.registerMigration("v9: proxy") { db in
            try db.execute(sql: "ALTER TABLE calls ADD COLUMN proxy TEXT")
        }
        // Counts per 10 seconds by host, session and status class, kept by triggers (CallCounts.swift): the
        // summary's totals, the timeline and the session list read them. The host-ordered index of v8 is
        // no longer read (the last failure is found by its time) and goes.
        m.registerMigration("v10: counts per 10 seconds") { db in
            try CallCounts.migrate(db)
            try db.execute(sql: "DROP INDEX calls_by_host")
        }
        return m
    }

    // MARK: Writing

    /// Inserts calls in one transaction through one prepared statement.
    public func insert(_ records: [CallRecord]) throws {
        guard !records.isEmpty else { return }
        let placeholders = Array(repeating: "?", count: Self.columns.count).joined(separator: ",")
        let sql = "INSERT INTO calls (\(Self.columns.joined(separator: ","))) VALUES (\(placeholders))"
        try writer.write { db in
            let statement = try db.cachedStatement(sql: sql)
            for r in records {
                try statement.execute(arguments: StatementArguments(Self.values(r)))
            }
        }
    }

    /// Records a set of counters under `source` (a file name or a capture target).
    public func recordStats(_ stats: CaptureStats, source: String, at time: Int64) throws {
        try recordStats(stats.fields, source: source, at: time)
    }

    /// Records name/value counters (for a live capture: what changed during one interval).
    public func recordStats(_ fields: [(String, Int)], source: String, at time: Int64) throws {
        try writer.write { db in
            let statement = try db.cachedStatement(
                sql: "INSERT INTO capture_stats (recorded_at, source, name, value) VALUES (?, ?, ?, ?)")
            for (name, value) in fields where value != 0 {
                try statement.execute(arguments: [time / 1000, source, name, value])
            }
        }
    }

    static func values(_ r: CallRecord) -> [DatabaseValue] {
        var record = r
        var out = RowValues()
        record.visitFields(&out)
        return out.values
    }

    // MARK: Reading

    public struct Filter: Sendable {
        public var session: String?
        public var host: String?
        public var failedOnly = false
        public var since: Int64?
        public var until: Int64?
        public var method: String?
        public var limit: Int?
        public init() {}
    }

    /// Calls matching `filter`, oldest first.
    public func calls(_ filter: Filter) throws -> [CallRecord] {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let s = filter.session { clauses.append("session_id = ?"); args.append(s) }
        if let h = filter.host { clauses.append("host = ?"); args.append(h.lowercased()) }
        if filter.failedOnly { clauses.append("outcome <> 'ok'") }
        if let t = filter.since { clauses.append("ts >= ?"); args.append(t / 1000) }
        if let t = filter.until { clauses.append("ts < ?"); args.append(t / 1000) }
        if let m = filter.method { clauses.append("method = ?"); args.append(m.uppercased()) }
        var sql = "SELECT \(Self.columns.joined(separator: ",")) FROM calls"
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        sql += " ORDER BY ts, id"
        if let l = filter.limit { sql += " LIMIT \(max(0, l))" }
        return try writer.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map(Self.record)
        }
    }

    public func callCount() throws -> Int {
        try writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM calls") ?? 0 }
    }

    /// The latest value of each counter, summed over sources.
    public func statsTotals() throws -> [String: Int] {
        try writer.read { db in
            var out: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, SUM(value) AS v FROM capture_stats GROUP BY name") {
                out[row["name"]] = row["v"]
            }
            return out
        }
    }

    static func record(_ row: Row) -> CallRecord {
        var r = CallRecord(kind: .connect, ts: 0)
        // The fields are read by position from the `kind` column on (queries may select `id` first).
        var reader = RowReader(row: row, index: row.columnNames.first == "id" ? 1 : 0)
        r.visitFields(&reader)
        return r
    }
}

/// A call's fields as column values, in contract order (the shapes' table is in CallFields.swift).
struct RowValues: CallFieldVisitor {
    var values: [DatabaseValue] = []

    init() { values.reserveCapacity(CallStore.columns.count) }

    static func list(_ v: [String]) -> DatabaseValue {
        var w = "["
        for (i, s) in v.enumerated() { if i > 0 { w += "," }; JSONObjectWriter.appendQuoted(s, to: &w) }
        return (w + "]").databaseValue
    }

    mutating func time(_ name: String, _ value: inout Int64) { values.append((value / 1000).databaseValue) }
    mutating func optionalTime(_ name: String, _ value: inout Int64?) {
        values.append(value.map { ($0 / 1000).databaseValue } ?? .null)
    }
    mutating func millis(_ name: String, _ value: inout Int64?) {
        values.append(value.map { (Double($0) / 1000).databaseValue } ?? .null)
    }
    mutating func text(_ name: String, _ value: inout String?) { values.append(value?.databaseValue ?? .null) }
    mutating func integer(_ name: String, _ value: inout Int?) { values.append(value?.databaseValue ?? .null) }
    mutating func count(_ name: String, _ value: inout Int) { values.append(value.databaseValue) }
    mutating func flag(_ name: String, _ value: inout Bool) { values.append(value.databaseValue) }
    mutating func list(_ name: String, _ value: inout [String]?) { values.append(value.map(Self.list) ?? .null) }
    mutating func requiredList(_ name: String, _ value: inout [String]) { values.append(Self.list(value)) }
    mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) {
        values.append(value?.rawValue.databaseValue ?? .null)
    }
    mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) {
        values.append(value.rawValue.databaseValue)
    }
}

/// A call read from a row of the calls table, column by column in contract order.
struct RowReader: CallFieldVisitor {
    let row: Row
    var index: Int

    // Typed reads kept out of line: the optimiser (Swift 6.3.1, -O) fails an ownership check when they are
    // specialised into `visitFields`.
    @inline(never) private mutating func int64() -> Int64? { defer { index += 1 }; return row[index] }
    @inline(never) private mutating func int() -> Int? { defer { index += 1 }; return row[index] }
    @inline(never) private mutating func double() -> Double? { defer { index += 1 }; return row[index] }
    @inline(never) private mutating func string() -> String? { defer { index += 1 }; return row[index] }
    @inline(never) private mutating func bool() -> Bool? { defer { index += 1 }; return row[index] }

    mutating func time(_ name: String, _ value: inout Int64) { value = (int64() ?? 0) * 1000 }
    mutating func optionalTime(_ name: String, _ value: inout Int64?) { value = int64().map { $0 * 1000 } }
    mutating func millis(_ name: String, _ value: inout Int64?) { value = double().map { Int64(($0 * 1000).rounded()) } }
    mutating func text(_ name: String, _ value: inout String?) { value = string() }
    mutating func integer(_ name: String, _ value: inout Int?) { value = int() }
    mutating func count(_ name: String, _ value: inout Int) { value = int() ?? 0 }
    mutating func flag(_ name: String, _ value: inout Bool) { value = bool() ?? false }
    mutating func list(_ name: String, _ value: inout [String]?) { value = string().flatMap(JSONStringList.parse) }
    mutating func requiredList(_ name: String, _ value: inout [String]) {
        value = string().flatMap(JSONStringList.parse) ?? []
    }
    mutating func choice<E: CallFieldChoice>(_ name: String, _ value: inout E?) { value = string().flatMap(E.init(rawValue:)) }
    mutating func requiredChoice<E: CallFieldChoice>(_ name: String, _ value: inout E) {
        if let e = string().flatMap(E.init(rawValue:)) { value = e }
    }
}

/// Reads back the JSON string lists the store writes (`["a","b"]`).
enum JSONStringList {
    static func parse(_ text: String) -> [String]? {
        var out: [String] = []
        var chars = Substring(text).unicodeScalars.makeIterator()
        guard chars.next() == "[" else { return nil }
        var current = ""
        var inString = false
        while let c = chars.next() {
            if inString {
                if c == "\\" {
                    guard let e = chars.next() else { return nil }
                    switch e {
                    case "n": current += "\n"
                    case "r": current += "\r"
                    case "t": current += "\t"
                    case "u":
                        var hex = ""
                        for _ in 0..<4 { if let h = chars.next() { hex.unicodeScalars.append(h) } }
                        if let v = UInt32(hex, radix: 16), let u = Unicode.Scalar(v) { current.unicodeScalars.append(u) }
                    default: current.unicodeScalars.append(e)
                    }
                } else if c == "\"" {
                    out.append(current)
                    current = ""
                    inString = false
                } else {
                    current.unicodeScalars.append(c)
                }
            } else if c == "\"" {
                inString = true
            } else if c == "]" {
                return out
            }
        }
        return nil
    }
}
