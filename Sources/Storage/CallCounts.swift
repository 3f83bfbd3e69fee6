import GRDB

/// The dashboard's counts per 10 seconds (`v10: counts per 10 seconds`): one row per 10-second slot,
/// session, host and status class, kept by triggers on every insert into and delete from the calls
/// table — pruning included — so the summary, the timeline and the session list read a few rows per
/// slot instead of an index entry per call. Whole slots of a range come from here; the parts of a slot
/// at a range's ends come from the calls table, so every answer stays exact. (A million calls over 19
/// slots, 18 hosts and 10 sessions make 27,440 rows.)
enum CallCounts {
    /// A slot: 10 seconds, in the microseconds calls' `ts` is stored in.
    static let slotMicros: Int64 = 10_000_000

    /// The slot a time (microseconds) falls in, rounded down also before 1970.
    static func slot(_ micros: Int64) -> Int64 {
        micros >= 0 ? micros / slotMicros : (micros - slotMicros + 1) / slotMicros
    }

    /// The row key and counts of one call, as SQL over a calls row (`NEW.` or `OLD.` in a trigger).
    struct Columns {
        let p: String
        var slot: String { "\(p)ts / \(slotMicros)" }
        var session: String { "COALESCE(\(p)session_id, '')" }
        var hasSession: String { "(\(p)session_id IS NOT NULL)" }
        var hostKey: String { "COALESCE(\(p)host, \(p)server_ip, 'unknown')" }
        var named: String { "(\(p)host IS NOT NULL)" }
        var statusClass: String {
            "CASE WHEN \(p)status_code >= 500 THEN 2 WHEN \(p)status_code >= 400 THEN 1 WHEN \(p)outcome = 'ok' THEN 0 ELSE 3 END"
        }
        var failed: String { "(\(p)outcome <> 'ok')" }
        var http: String { "(\(p)kind = 'http' AND \(p)latency_ms IS NOT NULL)" }
        var dns: String { "(\(p)kind = 'dns')" }
        var bytes: String {
            "COALESCE(\(p)request_body_bytes, 0) + COALESCE(\(p)response_body_bytes, 0) + CASE WHEN \(p)kind <> 'http' "
                + "THEN COALESCE(\(p)bytes_sent, 0) + COALESCE(\(p)bytes_received, 0) ELSE 0 END"
        }
        var lastTs: String { "COALESCE(\(p)ended_at, \(p)ts)" }

        var key: [(String, String)] {
            [("host_key", hostKey), ("slot", slot), ("session", session), ("has_session", hasSession),
             ("named", named), ("class", statusClass)]
        }
    }

    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE call_counts (
                host_key TEXT NOT NULL,          -- the host, else the server address, else 'unknown'
                slot INTEGER NOT NULL,           -- ts / 10 s
                session TEXT NOT NULL,           -- session_id, '' when there is none
                has_session INTEGER NOT NULL,
                named INTEGER NOT NULL,          -- host is not null
                class INTEGER NOT NULL,          -- the timeline's status class: 0 ok, 1 4xx, 2 5xx, 3 network
                calls INTEGER NOT NULL,
                failures INTEGER NOT NULL,
                http_calls INTEGER NOT NULL,     -- kind http with a latency
                dns_calls INTEGER NOT NULL,
                bytes INTEGER NOT NULL,          -- as the summary counts them
                last_failure_ts INTEGER,
                last_ts INTEGER NOT NULL,        -- the latest end (or start) of a call
                PRIMARY KEY (host_key, slot, session, has_session, named, class)
            ) WITHOUT ROWID
            """)
        let new = Columns(p: "NEW."), old = Columns(p: "OLD."), all = Columns(p: "")
        let keyNames = new.key.map(\.0).joined(separator: ", ")
        // max() of two values either of which may be null, ignoring a null.
        func maxOf(_ a: String, _ b: String) -> String { "max(COALESCE(\(a), \(b)), COALESCE(\(b), \(a)))" }
        // A call counted in, and counted out (its row goes when its last call does).
        let countIn = """
            INSERT INTO call_counts (\(keyNames), calls, failures, http_calls, dns_calls, bytes, last_failure_ts, last_ts)
            VALUES (\(new.key.map(\.1).joined(separator: ", ")), 1, \(new.failed), \(new.http), \(new.dns), \(new.bytes),
                    CASE WHEN \(new.failed) THEN NEW.ts END, \(new.lastTs))
            ON CONFLICT DO UPDATE SET calls = calls + 1, failures = failures + excluded.failures,
                http_calls = http_calls + excluded.http_calls, dns_calls = dns_calls + excluded.dns_calls,
                bytes = bytes + excluded.bytes, last_failure_ts = \(maxOf("last_failure_ts", "excluded.last_failure_ts")),
                last_ts = max(last_ts, excluded.last_ts);
            """
        let oldKey = old.key.map { "\($0.0) = \($0.1)" }.joined(separator: " AND ")
        // The calls left in the deleted call's row, for its maxima when the deleted call held one (rare:
        // pruning goes oldest first); they are found by time in the calls' `ts` index.
        let sameRow = "ts >= \(old.slot) * \(slotMicros) AND ts < (\(old.slot) + 1) * \(slotMicros) AND "
            + old.key.filter { $0.0 != "slot" }.map { name, value in
                "\(all.key.first { $0.0 == name }!.1) = \(value)"
            }.joined(separator: " AND ")
        let countOut = """
            UPDATE call_counts SET calls = calls - 1, failures = failures - \(old.failed),
                http_calls = http_calls - \(old.http), dns_calls = dns_calls - \(old.dns), bytes = bytes - (\(old.bytes)),
                last_failure_ts = CASE WHEN failures - \(old.failed) <= 0 THEN NULL
                    WHEN NOT \(old.failed) OR OLD.ts < last_failure_ts THEN last_failure_ts
                    ELSE (SELECT MAX(ts) FROM calls WHERE \(sameRow) AND \(all.failed)) END,
                last_ts = CASE WHEN calls - 1 <= 0 OR \(old.lastTs) < last_ts THEN last_ts
                    ELSE (SELECT MAX(\(all.lastTs)) FROM calls WHERE \(sameRow)) END
            WHERE \(oldKey);
            DELETE FROM call_counts WHERE calls <= 0 AND \(oldKey);
            """
        try db.execute(sql: """
            CREATE TRIGGER calls_counts_insert AFTER INSERT ON calls BEGIN \(countIn) END;
            CREATE TRIGGER calls_counts_delete AFTER DELETE ON calls BEGIN \(countOut) END;
            CREATE TRIGGER calls_counts_update AFTER UPDATE ON calls BEGIN \(countOut) \(countIn) END;
            """)
        // The calls already stored.
        try db.execute(sql: """
            INSERT INTO call_counts (\(keyNames), calls, failures, http_calls, dns_calls, bytes, last_failure_ts, last_ts)
            SELECT \(all.key.map(\.1).joined(separator: ", ")), COUNT(*), SUM(\(all.failed)), SUM(\(all.http)), SUM(\(all.dns)),
                   SUM(\(all.bytes)), MAX(CASE WHEN \(all.failed) THEN ts END), MAX(\(all.lastTs))
            FROM calls GROUP BY 1, 2, 3, 4, 5, 6
            """)
    }

    /// A time range (microseconds, `until` excluded) cut into the whole slots it covers, read from
    /// `call_counts`, and the parts at its ends, read from the calls table. `slots` is nil when the
    /// range covers no whole slot; its bounds are nil when the range is open on that side.
    struct Split {
        var slots: (from: Int64?, to: Int64?)?
        var ends: [(since: Int64?, until: Int64?)]

        init(since: Int64?, until: Int64?) {
            let m = CallCounts.slotMicros
            let from = since.map { -CallCounts.slot(-$0) } // the first slot starting at or after `since`
            let to = until.map(CallCounts.slot)
            if let from, let to, from >= to {
                slots = nil
                ends = [(since, until)]
                return
            }
            slots = (from, to)
            ends = []
            if let since, let from, since < from * m { ends.append((since, from * m)) }
            if let until, let to, to * m < until { ends.append((to * m, until)) }
        }
    }

    /// `WHERE` conditions on `call_counts` for a session, a host name and whole slots.
    static func conditions(session: String?, host: String?, from: Int64?, to: Int64?)
        -> (clauses: [String], args: [(any DatabaseValueConvertible)?]) {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let session { clauses.append("has_session = 1 AND session = ?"); args.append(session) }
        if let host { clauses.append("named = 1 AND host_key = ?"); args.append(host.lowercased()) }
        if let from { clauses.append("slot >= ?"); args.append(from) }
        if let to { clauses.append("slot < ?"); args.append(to) }
        return (clauses, args)
    }
}
