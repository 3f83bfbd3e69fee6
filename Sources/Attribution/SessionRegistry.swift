import Core
import Foundation

/// One line of the PID → session registry file (JSON Lines, written by agent runtimes).
public struct RegistryEntry: Sendable, Equatable {
    public var pid: Int
    public var sessionId: String
    public var startedAt: Int64?
    public var endedAt: Int64?
    public var agent: String?
    public var pidStartTime: UInt64?
    /// The PID namespace the `pid` is numbered in (inode of /proc/PID/ns/pid), for agents in containers.
    public var pidNamespace: UInt64?
}

/// Follows the registry file as it grows, is truncated, or is replaced by rename. Malformed lines are
/// counted and the first one is reported once; the others still count.
public final class SessionRegistry: @unchecked Sendable {
    /// The registry file (nil: registrations come only through the verified socket).
    public let path: String?
    private let lock = NSLock()
    private var byPID: [Int: [RegistryEntry]] = [:]
    /// Entries registered through the verified socket (`RegistrationSocket`): kept apart, so the file
    /// starting over does not drop them.
    private var verified: [Int: [RegistryEntry]] = [:]
    private var verifiedCount = 0
    private let follower: LineFollower?
    private var _malformed = 0
    private var _firstProblem: String?
    private var reported = false
    private var _untranslated = 0
    /// Lines whose namespaced PID matched no process (yet).
    public var untranslatedPIDs: Int { lock.withLock { _untranslated } }
    private var _generation = 0
    /// Changes whenever entries are added or the file starts over.
    public var generation: Int { lock.withLock { _generation } }
    /// Called once with the first malformed line's description.
    public var onFirstProblem: (@Sendable (String) -> Void)?

    /// Entries kept at most (from the memory budget): beyond it, entries of sessions that ended are
    /// forgotten first, then all (counted in `forgottenEntries`).
    public let maxEntries: Int
    private var entryCount = 0
    private var _forgotten = 0
    public var forgottenEntries: Int { lock.withLock { _forgotten } }

    public init(path: String?, maxEntries: Int = 65_536) {
        self.path = path
        self.maxEntries = max(64, maxEntries)
        follower = path.map { LineFollower(path: $0) }
    }

    /// Adds (or ends) an entry whose writer was verified (`RegistrationSocket`).
    public func register(_ e: RegistryEntry) {
        lock.withLock {
            if let i = verified[e.pid]?.lastIndex(where: { $0.sessionId == e.sessionId && $0.pidStartTime == e.pidStartTime }) {
                if let end = e.endedAt { verified[e.pid]![i].endedAt = end }
            } else {
                if verifiedCount >= maxEntries {
                    // Ended sessions first, then all (counted like the file's).
                    let before = verifiedCount
                    verified = verified.compactMapValues { list in
                        let open = list.filter { $0.endedAt == nil }
                        return open.isEmpty ? nil : open
                    }
                    verifiedCount = verified.values.reduce(0) { $0 + $1.count }
                    _forgotten += before - verifiedCount
                    // Still full of open sessions: the new one is not kept (the socket's per-user quota
                    // keeps any one user from getting here alone).
                    if verifiedCount >= maxEntries { _forgotten += 1; _generation += 1; return }
                }
                verified[e.pid, default: []].append(e)
                verifiedCount += 1
            }
            _generation += 1
        }
    }

    private var warnedAboutTrust = false

    /// Whoever can append to the registry can claim any PID, so a registry others can write is said once:
    /// writable by every user, or by a group other than root's and `calltap`'s.
    private func trustWarning() -> String? {
        guard !warnedAboutTrust, let path else { return nil }
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let trustedGroups: Set<gid_t> = [0, getgrnam("calltap")?.pointee.gr_gid ?? 0]
        let byEveryone = st.st_mode & S_IWOTH != 0
        let byGroup = st.st_mode & S_IWGRP != 0 && !trustedGroups.contains(st.st_gid)
        guard byEveryone || byGroup else { return nil }
        warnedAboutTrust = true
        return "registry \(path) is writable by \(byEveryone ? "every user" : "group \(st.st_gid)"): any process that can write it can claim any PID's session"
    }

    /// Called with the lock held after entries were added.
    private func enforceCap() {
        guard entryCount > maxEntries else { return }
        let before = entryCount
        byPID = byPID.compactMapValues { list in
            let open = list.filter { $0.endedAt == nil }
            return open.isEmpty ? nil : open
        }
        entryCount = byPID.values.reduce(0) { $0 + $1.count }
        if entryCount > maxEntries {
            byPID = [:]
            entryCount = 0
        }
        _forgotten += before - entryCount
        _generation += 1
    }

    /// Lines that did not parse, and lines too long to hold.
    public var malformedLines: Int { lock.withLock { _malformed + (follower?.overlongLines ?? 0) } }
    public var registeredPIDs: [Int] { lock.withLock { Array(Set(byPID.keys).union(verified.keys)) } }

    /// Reads whatever was appended since the last call (or everything, after truncation or replacement),
    /// through a bounded follower: a registry is written by others.
    public func poll() {
        lock.lock()
        guard let update = follower?.readNew() else { lock.unlock(); return }
        let warning = trustWarning()
        if update.restarted { byPID = [:]; entryCount = 0; _generation += 1 }
        let text = update.text
        var problem: String?
        for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            if var e = Self.parse(line) {
                if let ns = e.pidNamespace {
                    // A PID from a container's PID namespace: find the host PID through NSpid.
                    guard let host = Self.hostPID(pid: e.pid, namespace: ns) else {
                        _untranslated += 1
                        continue
                    }
                    e.pid = host
                }
                // A later line for the same process and session (e.g. its ended_at) updates the entry.
                if let i = byPID[e.pid]?.lastIndex(where: { $0.sessionId == e.sessionId && $0.pidStartTime == e.pidStartTime }) {
                    if let end = e.endedAt { byPID[e.pid]![i].endedAt = end }
                    if let start = e.startedAt, byPID[e.pid]![i].startedAt == nil { byPID[e.pid]![i].startedAt = start }
                } else {
                    byPID[e.pid, default: []].append(e)
                    entryCount += 1
                }
                _generation += 1
            } else {
                _malformed += 1
                if _firstProblem == nil { _firstProblem = "registry \(path ?? ""): malformed line skipped: \(line.prefix(120))"; problem = _firstProblem }
            }
        }
        enforceCap()
        lock.unlock()
        if let warning { onFirstProblem?(warning) }
        if let problem, !reported {
            reported = true
            onFirstProblem?(problem)
        }
    }

    /// The entry for `pid` that covers `time` (and matches the process start time when the line gave one).
    public func entry(pid: Int, startTime: UInt64?, at time: Int64) -> RegistryEntry? {
        entries(pid: pid, startTime: startTime, at: time).last
    }

    /// Every entry for `pid` whose time window holds `time`: one process may serve several sessions.
    public func entries(pid: Int, startTime: UInt64?, at time: Int64) -> [RegistryEntry] {
        lock.withLock {
            ((byPID[pid] ?? []) + (verified[pid] ?? [])).filter { e in
                if let want = e.pidStartTime, let have = startTime, want != have { return false }
                if let s = e.startedAt, time < s - 5_000_000_000 { return false }
                if let end = e.endedAt, time > end { return false }
                return true
            }
        }
    }

    /// The session of a process at `time`: its own entry (`exact`), else its nearest registered
    /// ancestor's (`inherited`); `ambiguous` when the entries holding `time` name several sessions.
    func resolve(_ facts: ProcessFacts?, at time: Int64, parent: (Int) -> ProcessFacts?)
        -> (sessionId: String?, attribution: String, agent: String?) {
        var current = facts
        var depth = 0
        while let f = current, depth < 64 {
            let found = entries(pid: f.pid, startTime: f.startTime, at: time)
            let sessions = Set(found.map(\.sessionId))
            if sessions.count > 1 { return (nil, "ambiguous", nil) }
            if let e = found.last { return (e.sessionId, depth == 0 ? "exact" : "inherited", e.agent) }
            guard f.ppid > 1 else { break }
            current = parent(f.ppid)
            depth += 1
        }
        return (nil, "none", nil)
    }

    public static func parse(_ line: Substring) -> RegistryEntry? {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let pid = (obj["pid"] as? NSNumber)?.intValue, pid > 0,
              let session = obj["session_id"] as? String, SessionID.isValid(session) else { return nil }
        func time(_ v: Any?) -> Int64? {
            if let n = v as? NSNumber { return nanos(seconds: n.doubleValue) }
            if let s = v as? String { return parseISO(s) }
            return nil
        }
        if obj["started_at"] != nil && time(obj["started_at"]) == nil { return nil }
        if obj["ended_at"] != nil && time(obj["ended_at"]) == nil { return nil }
        return RegistryEntry(pid: pid, sessionId: session, startedAt: time(obj["started_at"]), endedAt: time(obj["ended_at"]),
                             agent: obj["agent"] as? String,
                             pidStartTime: (obj["pid_start_time"] as? NSNumber)?.uint64Value,
                             pidNamespace: (obj["pid_ns"] as? NSNumber)?.uint64Value)
    }

    /// The host PID of the process numbered `pid` in PID namespace `namespace`: the last NSpid field of
    /// /proc/H/status is its PID in its own namespace.
    static func hostPID(pid: Int, namespace: UInt64) -> Int? {
        let want = "pid:[\(namespace)]"
        for host in ProcessTable.allPIDs() {
            guard ProcessTracker.link("/proc/\(host)/ns/pid") == want,
                  let status = ProcFile.read("/proc/\(host)/status"),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }),
                  let last = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last, Int(last) == pid else { continue }
            return host
        }
        return nil
    }

    static func parseISO(_ s: String) -> Int64? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return nanos(seconds: d.timeIntervalSince1970) }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s).flatMap { nanos(seconds: $0.timeIntervalSince1970) }
    }

    /// Seconds since the epoch as nanoseconds, or nil when they do not fit (found by fuzzing: the year
    /// 1013 trapped the conversion). Such a line is malformed.
    static func nanos(seconds: Double) -> Int64? {
        let n = seconds * 1_000_000_000
        guard n.isFinite, n > -9.2e18, n < 9.2e18 else { return nil }
        return Int64(n)
    }
}
