import Attribution
import CZstd
import Foundation
import GRDBSQLite

/// Follows an OpenClaw state directory (`~/.openclaw`): the JSON Lines transcripts
/// `agents/<agentId>/sessions/<sessionId>.jsonl`, the session store `agents/<agentId>/sessions/sessions.json`,
/// and the per-agent SQLite store `agents/<agentId>/agent/openclaw-agent.sqlite` (table
/// `transcript_events`, each event as JSON text or a Zstandard blob), feeding what they add to an index.
///
/// The files are the agent's: nothing is created or written there. The database is opened
/// `SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW`; no symbolic link is followed (directories included);
/// every read is bounded (per poll, per line, per decompressed event), and what is skipped is counted.
public final class TranscriptSource: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Bytes read from one JSON Lines file per poll.
        public var bytesPerRead: Int = 4 << 20
        /// A longer line (a huge tool result) is skipped and counted.
        public var lineBytes: Int = 2 << 20
        /// An event decompressed to more than this is skipped and counted (OpenClaw compresses events of
        /// at most 4 MiB).
        public var eventBytes: Int = 4 << 20
        /// Rows read from one database per poll.
        public var rowsPerRead: Int = 5000
        /// Files followed at most.
        public var files: Int = 4096
        /// `sessions.json` larger than this is not read.
        public var sessionStoreBytes: Int = 8 << 20
        /// Bytes read from all files together, and decompressed from all rows together, per poll: a
        /// directory of huge or sparse files, or of Zstandard bombs, costs at most this much each time.
        public var bytesPerPoll: Int = 64 << 20
        /// SQLite steps one database read may take (a hostile schema cannot make a query run forever).
        public var stepsPerQuery: Int32 = 50_000_000
        public init() {}
    }

    public struct Counters: Sendable, Equatable {
        public var files = 0
        public var databases = 0
        public var entries = 0
        /// Lines or rows that were not a JSON object, longer than the cap, or failed to decompress.
        public var skipped = 0
        /// Files not followed: a symbolic link, not a regular file, or over the file cap.
        public var refused = 0
    }

    public let directory: String
    public let index: TranscriptIndex
    public let limits: Limits
    private let lock = NSLock()
    private var followers: [String: (LineFollower, String)] = [:]
    private var databases: [String: TranscriptDatabase] = [:]
    private var stores: [String: (UInt64, Int)] = [:]
    private var counts = Counters()
    private var refusedPaths = Set<String>()

    public init(directory: String, index: TranscriptIndex, limits: Limits = Limits()) {
        self.directory = directory
        self.index = index
        self.limits = limits
    }

    public var counters: Counters { lock.withLock { counts } }
    /// Bytes read and decompressed in this poll so far (only the polling thread touches it).
    private var spent = 0
    /// Bytes read from files since the start (a reader that wants everything polls until it stops moving).
    public var bytesRead: Int { lock.withLock { totalBytes } }
    private var totalBytes = 0

    /// Whether `directory` is a directory (not a link); the reason when it is not.
    public static func check(directory: String) -> String? {
        var st = stat()
        guard lstat(directory, &st) == 0 else { return String(cString: strerror(errno)) }
        if (st.st_mode & S_IFMT) == S_IFLNK { return "it is a symbolic link" }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return "not a directory" }
        return nil
    }

    /// Reads what was added since the last poll (every file the first time). Call from one thread.
    public func poll() {
        spent = 0
        guard Self.isDirectoryNotLink(directory) else { return }
        var seen = Set<String>()
        for agent in Self.entries(of: directory + "/agents", directories: true) {
            let base = directory + "/agents/" + agent
            let sessions = base + "/sessions"
            for name in Self.entries(of: sessions, directories: false) {
                let path = sessions + "/" + name
                if name == "sessions.json" {
                    readSessionStore(path)
                } else if name.hasSuffix(".jsonl") {
                    seen.insert(path)
                    follow(path, fallbackSession: String(name.dropLast(6)))
                }
            }
            let db = base + "/agent/openclaw-agent.sqlite"
            if Self.isDirectoryNotLink(base + "/agent"), Self.exists(db) {
                readDatabase(db)
            }
        }
        // Transcripts deleted or moved away are no longer followed (their entries stay in the index).
        lock.withLock {
            for path in followers.keys where !seen.contains(path) { followers.removeValue(forKey: path) }
        }
    }

    private func follow(_ path: String, fallbackSession: String) {
        var entry = lock.withLock { followers[path] }
        if entry == nil {
            let full = lock.withLock { followers.count >= limits.files }
            guard !full, Self.isRegularNotLink(path) else { refuse(path); return }
            guard SessionIDs.isValid(fallbackSession) else { refuse(path); return }
            entry = (LineFollower(path: path, maxBytesPerRead: limits.bytesPerRead, maxLineBytes: limits.lineBytes), fallbackSession)
            lock.withLock {
                followers[path] = entry
                counts.files += 1
            }
        }
        guard let (follower, initial) = entry else { return }
        var session = initial
        let skippedBefore = follower.overlongLines
        // Several reads when a file grew by more than one read's worth, bounded per file and per poll.
        for _ in 0..<4 where spent < limits.bytesPerPoll {
            let before = follower.bytesRead
            let update = follower.readNew()
            let read = Int(follower.bytesRead - before)
            spent += read
            lock.withLock { totalBytes += read }
            guard let update, !update.text.isEmpty else { break }
            var added = 0, bad = 0
            for line in update.text.split(separator: "\n", omittingEmptySubsequences: true) {
                let data = Data(line.utf8)
                guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { bad += 1; continue }
                // The file is named by its session id; the header (`type: session`, `id`) names it only when
                // the file name is not one, so a line cannot move the file's entries to another session.
                if o["type"] as? String == "session", !SessionIDs.isValid(initial), let id = o["id"] as? String,
                   SessionIDs.isValid(id) {
                    session = id
                }
                index.add(entry: o, session: session)
                added += 1
            }
            lock.withLock {
                counts.entries += added
                counts.skipped += bad
                followers[path] = (follower, session)
            }
        }
        let overlong = follower.overlongLines - skippedBefore
        if overlong > 0 { lock.withLock { counts.skipped += overlong } }
    }

    private func readSessionStore(_ path: String) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) <= limits.sessionStoreBytes else { return }
        let stamp = (UInt64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ UInt64(st.st_mtim.tv_nsec), Int(st.st_size))
        if let old = lock.withLock({ stores[path] }), old == stamp { return }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        guard let data = try? handle.read(upToCount: limits.sessionStoreBytes),
              let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return }
        lock.withLock { stores[path] = stamp }
        for (key, value) in o {
            if let entry = value as? [String: Any], let id = entry["sessionId"] as? String, SessionIDs.isValid(id) {
                index.addSessionKey(key, session: id)
            }
        }
    }

    private func readDatabase(_ path: String) {
        var db = lock.withLock { databases[path] }
        if db == nil {
            let full = lock.withLock { followers.count + databases.count >= limits.files }
            guard !full, Self.isRegularNotLink(path) else { refuse(path); return }
            db = TranscriptDatabase(path: path, limits: limits)
            lock.withLock {
                databases[path] = db
                counts.databases += 1
            }
        }
        guard let db, spent < limits.bytesPerPoll else { return }
        let (added, bad, bytes) = db.read(into: index, budget: limits.bytesPerPoll - spent)
        spent += bytes
        lock.withLock {
            counts.entries += added
            counts.skipped += bad
        }
    }

    private func refuse(_ path: String) {
        lock.withLock {
            if refusedPaths.count < 10_000, refusedPaths.insert(path).inserted { counts.refused += 1 }
        }
    }

    // MARK: Files

    /// Names in a directory that is not a link, each a directory (or not) that is not a link.
    static func entries(of dir: String, directories: Bool) -> [String] {
        guard isDirectoryNotLink(dir), let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d), out.count < 100_000 {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0 else { continue }
            let kind = st.st_mode & S_IFMT
            if directories ? kind == S_IFDIR : kind != S_IFDIR { out.append(name) }
        }
        return out.sorted()
    }

    static func isDirectoryNotLink(_ p: String) -> Bool {
        var st = stat()
        return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularNotLink(_ p: String) -> Bool {
        var st = stat()
        return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    public static func exists(_ p: String) -> Bool {
        var st = stat()
        return lstat(p, &st) == 0
    }
}

/// Session ids as transcripts carry them: short, printable, no separators that could mislead a reader.
public enum SessionIDs {
    public static func isValid<S: StringProtocol>(_ s: S) -> Bool {
        !s.isEmpty && s.utf8.count <= 256 && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

/// One agent's `openclaw-agent.sqlite`, read-only: the rows of `transcript_events` added since the last
/// read, per session by `seq`.
final class TranscriptDatabase {
    let path: String
    let limits: TranscriptSource.Limits
    private var handle: OpaquePointer?
    private var identity: (UInt64, UInt64) = (0, 0)
    private var lastSeq: [String: Int64] = [:]
    /// The progress handler's step budget (it must outlive every query that may call it).
    private let steps = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init(path: String, limits: TranscriptSource.Limits) {
        self.path = path
        self.limits = limits
        steps.initialize(to: 0)
    }

    deinit {
        sqlite3_close_v2(handle)
        steps.deallocate()
    }

    private var stamp: [Int64] = []

    /// Opens the database read-only, again when it was replaced. A WAL-mode database whose writer is gone
    /// (no `-shm` next to it) is opened `immutable`, since a read-only connection would otherwise create
    /// the `-shm` and `-wal` files — root-owned, in the agent's directory; it is reopened when it changes.
    private func open() -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        let id = (UInt64(st.st_dev), UInt64(st.st_ino))
        var shm = stat()
        let hasShm = lstat(path + "-shm", &shm) == 0
        let wal = Self.isWAL(path)
        let immutable = wal && !hasShm
        let now: [Int64] = immutable ? [Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec), Int64(st.st_size), 1] : [0]
        if handle != nil, id == identity, now == stamp { return true }
        if id != identity { lastSeq = [:] } // replaced: read it from the start
        sqlite3_close_v2(handle)
        handle = nil
        var h: OpaquePointer?
        let code: Int32
        if immutable {
            let escaped = path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "?#%"))) ?? path
            code = sqlite3_open_v2("file:\(escaped)?immutable=1", &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_URI, nil)
        } else {
            code = sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, nil)
        }
        guard code == SQLITE_OK else {
            sqlite3_close_v2(h)
            return false
        }
        sqlite3_busy_timeout(h, 200)
        handle = h
        identity = id
        stamp = now
        return true
    }

    /// Whether the file's header says WAL mode (bytes 18 and 19 are 2), read without following a link.
    static func isWAL(_ path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 20)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 20, 0) }
        return n == 20 && header[18] == 2 && header[19] == 2
    }

    /// Entries added, rows skipped, bytes read or decompressed. The connection is closed after each read
    /// (one open file per store at most while it runs). Hardened against a hostile file: only a real
    /// table is read (never a view), no function of the schema runs untrusted, values longer than an
    /// event are an error, and a query stops after `stepsPerQuery` steps.
    func read(into index: TranscriptIndex, budget: Int) -> (Int, Int, Int) {
        guard open(), let db = handle else { return (0, 0, 0) }
        defer {
            sqlite3_close_v2(handle)
            handle = nil
        }
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, Int32(min(limits.eventBytes + 1, Int(Int32.max))))
        sqlite3_exec(db, "PRAGMA trusted_schema = OFF", nil, nil, nil)
        // Called every 1,000 virtual machine steps; a non-zero return interrupts the query.
        sqlite3_progress_handler(db, 1000, { context in
            guard let c = context?.assumingMemoryBound(to: Int32.self) else { return 1 }
            c.pointee &-= 1
            return c.pointee < 0 ? 1 : 0
        }, UnsafeMutableRawPointer(steps))
        var isTable = false
        query(db, "SELECT type FROM sqlite_schema WHERE name = 'transcript_events'", []) { s in
            isTable = Self.text(s, 0) == "table"
        }
        guard isTable else { return (0, 0, 0) }
        // Which sessions grew: the newest seq of each (the primary key makes this an index walk).
        var grown: [(String, Int64)] = []
        query(db, "SELECT session_id, max(seq) FROM transcript_events GROUP BY session_id", []) { s in
            guard grown.count < 100_000, let id = Self.text(s, 0), SessionIDs.isValid(id) else { return }
            let top = sqlite3_column_int64(s, 1)
            if top > lastSeq[id, default: -1] { grown.append((id, top)) }
        }
        var added = 0, bad = 0, rowsLeft = limits.rowsPerRead, bytes = 0
        for (session, _) in grown where rowsLeft > 0 && bytes < budget {
          while rowsLeft > 0 && bytes < budget {
            let from = lastSeq[session, default: -1]
            let ok = query(db, "SELECT seq, event_json, event_zstd, event_utf8_bytes FROM transcript_events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT \(rowsLeft)",
                  [.text(session), .int(from)]) { s in
                guard bytes < budget else { return }
                rowsLeft -= 1
                lastSeq[session] = sqlite3_column_int64(s, 0)
                var data: Data?
                if sqlite3_column_type(s, 1) == SQLITE_TEXT, let p = sqlite3_column_text(s, 1) {
                    let n = Int(sqlite3_column_bytes(s, 1))
                    bytes += n
                    if n <= limits.eventBytes { data = Data(bytes: p, count: n) }
                } else if sqlite3_column_type(s, 2) == SQLITE_BLOB, let p = sqlite3_column_blob(s, 2) {
                    let n = Int(sqlite3_column_bytes(s, 2))
                    let declared = sqlite3_column_type(s, 3) == SQLITE_INTEGER ? Int(sqlite3_column_int64(s, 3)) : nil
                    data = Zstd.decompress(UnsafeRawBufferPointer(start: p, count: n), expected: declared, limit: limits.eventBytes)
                    bytes += max(n, data?.count ?? min(declared ?? limits.eventBytes, limits.eventBytes))
                }
                if let data, index.add(entry: data, session: session) { added += 1 } else { bad += 1 }
            }
            if ok { break }
            // A row SQLite would not hand over (longer than an event may be): skipped by its seq alone.
            var next: Int64?
            _ = query(db, "SELECT seq FROM transcript_events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT 1",
                      [.text(session), .int(lastSeq[session, default: -1])]) { s in next = sqlite3_column_int64(s, 0) }
            guard let next else { break }
            lastSeq[session] = next
            bad += 1
            rowsLeft -= 1
          }
        }
        if grown.count > lastSeq.count + 100_000 { lastSeq = [:] }
        return (added, bad, bytes)
    }

    enum Bind { case text(String), int(Int64) }

    /// Runs a query, handing each row to `row`; false when it stopped on an error (a value over the length
    /// limit, the step budget spent) rather than at its end.
    @discardableResult
    private func query(_ db: OpaquePointer, _ sql: String, _ binds: [Bind], row: (OpaquePointer) -> Void) -> Bool {
        // The step budget of this query, in thousands (the progress handler counts it down).
        steps.pointee = limits.stepsPerQuery / 1000
        var s: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &s, nil) == SQLITE_OK, let s else { sqlite3_finalize(s); return false }
        defer { sqlite3_finalize(s) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, b) in binds.enumerated() {
            switch b {
            case let .text(t): sqlite3_bind_text(s, Int32(i + 1), t, -1, transient)
            case let .int(v): sqlite3_bind_int64(s, Int32(i + 1), v)
            }
        }
        var code = sqlite3_step(s)
        while code == SQLITE_ROW {
            row(s)
            code = sqlite3_step(s)
        }
        return code == SQLITE_DONE
    }

    static func text(_ s: OpaquePointer, _ col: Int32) -> String? {
        guard let p = sqlite3_column_text(s, col) else { return nil }
        return String(cString: p)
    }
}

/// Zstandard frames, decompressed with a cap on the output and on the decoder's window.
public enum Zstd {
    /// The frame's content, or nil when it is not a valid frame, is larger than `limit`, or (with
    /// `expected`) not exactly that long — OpenClaw's own reader treats a length mismatch as an error.
    public static func decompress(_ input: UnsafeRawBufferPointer, expected: Int?, limit: Int) -> Data? {
        guard let base = input.baseAddress, input.count > 0 else { return nil }
        if let expected, expected < 0 || expected > limit { return nil }
        let cap = min(expected ?? limit, limit)
        guard let ctx = ZSTD_createDCtx() else { return nil }
        defer { ZSTD_freeDCtx(ctx) }
        // A window of at most 8 MiB: a frame asking for more is refused rather than allocated.
        _ = ZSTD_DCtx_setParameter(ctx, ZSTD_d_windowLogMax, 23)
        var out = Data(count: cap + 1)
        var inBuf = ZSTD_inBuffer(src: base, size: input.count, pos: 0)
        var produced = 0
        let ok: Bool = out.withUnsafeMutableBytes { o in
            var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: cap + 1, pos: 0)
            while true {
                let r = ZSTD_decompressStream(ctx, &outBuf, &inBuf)
                if ZSTD_isError(r) != 0 { return false }
                produced = outBuf.pos
                if produced > cap { return false }
                if r == 0 { return inBuf.pos == inBuf.size }
                if inBuf.pos == inBuf.size && outBuf.pos < outBuf.size { return false }
            }
        }
        guard ok else { return nil }
        if let expected, produced != expected { return nil }
        out.count = produced
        return out
    }
}
