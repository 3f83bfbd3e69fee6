import Core
import Foundation

/// A registration path whose writer is verified: a Unix socket on which a process registers a session
/// for itself or for a descendant running as the same user — checked with the kernel's word for who is
/// asking (SO_PEERCRED) — never for anyone else's process. `calltap run --registry-socket` uses it.
///
/// One request per connection, one JSON line (at most 4 KiB, within 2 s):
/// `{"pid": 1234, "session_id": "s-1", "agent": "openclaw"}` to start, with `"ended": true` to end;
/// the answer is one line, `ok` or `refused: <reason>`.
public final class RegistrationSocket: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let path: String
    private var fd: Int32 = -1
    private let registry: SessionRegistry
    private let lock = NSLock()
    private var _accepted = 0
    private var _refused = 0
    /// Open registrations per user: one user cannot fill the registry for everyone.
    private var openByUID: [Int: Int] = [:]
    public static let maxOpenPerUser = 256

    /// Registrations taken and refused.
    public var counters: (accepted: Int, refused: Int) { lock.withLock { (_accepted, _refused) } }

    public init(path: String, registry: SessionRegistry) {
        self.path = path
        self.registry = registry
    }

    /// Binds `path` (its directory must not be writable by others; a stale socket there is replaced,
    /// anything else is refused) and makes it connectable by every local user: who may register what is
    /// decided per request.
    public func open() throws {
        let dir = (path as NSString).deletingLastPathComponent
        try SafeFiles.checkDirectory(dir.isEmpty ? "." : dir)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw Failure(description: "\(path) exists and is not a socket")
            }
            unlink(path)
        }
        let s: Int32
        do {
            s = try UnixSocket.listen(at: path)
        } catch {
            throw Failure(description: "\(error)")
        }
        // Made connectable by every local user, without following a link at that name (the directory
        // was checked above; a name swapped in the meantime is refused, not changed).
        guard fchmodat(AT_FDCWD, path, 0o666, AT_SYMLINK_NOFOLLOW) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw Failure(description: "cannot open \(path) to every user: \(e)")
        }
        fd = s
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(path)
        }
    }

    /// Answers requests until `shouldStop` (on a thread of its own).
    public func run(shouldStop: () -> Bool) {
        guard fd >= 0 else { return }
        while !shouldStop() {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            serve(c)
            close(c)
        }
        // Stopped: the name goes with the daemon.
        close(fd)
        fd = -1
        unlink(path)
    }

    private func serve(_ c: Int32) {
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(c, SOL_SOCKET, 17 /* SO_PEERCRED */, &cred, &len) == 0 else { return }
        // One deadline for the whole request (a caller trickling bytes cannot hold the socket), and a
        // bounded answer: the socket serves one connection at a time.
        var sendTimeout = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = DispatchTime.now().uptimeNanoseconds + 300_000_000
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while line.count <= 4096, !line.contains(0x0A) {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { break }
            var p = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            line.append(contentsOf: buffer[0..<n])
        }
        let answer: String
        switch handle(line, peerPID: Int(cred.pid), peerUID: Int(cred.uid)) {
        case .success: answer = "ok\n"
        case let .failure(f): answer = "refused: \(f.description)\n"
        }
        _ = answer.utf8CString.withUnsafeBufferPointer { send(c, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
    }

    func handle(_ bytes: [UInt8], peerPID: Int, peerUID: Int) -> Result<Void, Failure> {
        var result = Self.request(bytes, peerPID: peerPID, peerUID: peerUID, facts: Self.procFacts)
        lock.withLock {
            if case let .success(entry) = result {
                let open = openByUID[peerUID, default: 0]
                if entry.endedAt != nil {
                    openByUID[peerUID] = max(0, open - 1)
                } else if open >= Self.maxOpenPerUser {
                    result = .failure(Failure(description: "too many open registrations for this user"))
                } else {
                    openByUID[peerUID] = open + 1
                }
            }
            if case .success = result { _accepted += 1 } else { _refused += 1 }
        }
        if case let .success(entry) = result { registry.register(entry) }
        return result.map { _ in () }
    }

    /// What `/proc` says of a process: its parent, its real user and its start time.
    public struct Facts: Sendable {
        public var ppid: Int
        public var uid: Int
        public var startTime: UInt64
        public init(ppid: Int, uid: Int, startTime: UInt64) {
            self.ppid = ppid
            self.uid = uid
            self.startTime = startTime
        }
    }

    static func procFacts(_ pid: Int) -> Facts? {
        guard let f = ProcessTable.facts(pid), let status = ProcFile.read("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
        else { return nil }
        // Real, effective, saved and filesystem uid: a setuid child differs in one of them and counts as
        // another user's (-1).
        let uids = Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().compactMap { Int($0) })
        return Facts(ppid: f.ppid, uid: uids.count == 1 ? uids.first! : -1, startTime: f.startTime)
    }

    /// Parses and authorises one request: the pid must be the asking process or one of its descendants
    /// running as the same user, and the session id must follow the policy. The entry carries the
    /// process's start time, so a PID reused later does not inherit the session.
    public static func request(_ bytes: [UInt8], peerPID: Int, peerUID: Int, now: Double = Date().timeIntervalSince1970,
                               facts: (Int) -> Facts?) -> Result<RegistryEntry, Failure> {
        guard bytes.count <= 4096, let text = String(bytes: bytes, encoding: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").first.map(String.init)?.utf8 ?? "".utf8)) as? [String: Any]
        else { return .failure(Failure(description: "not one JSON object on one line")) }
        guard let pid = (obj["pid"] as? NSNumber)?.intValue, pid > 0 else {
            return .failure(Failure(description: "pid missing"))
        }
        guard let session = obj["session_id"] as? String, SessionID.isValid(session) else {
            return .failure(Failure(description: "session_id missing or outside the session-id policy"))
        }
        // One answer for "no such process" and "not yours": the socket does not tell who runs what.
        let notYours = Failure(description: "process \(pid) is neither the caller nor its descendant")
        guard let target = facts(pid), target.uid == peerUID else { return .failure(notYours) }
        // The asker itself, or a descendant (its chain of parents reaches the asker).
        var current = pid, depth = 0
        while current != peerPID {
            guard depth < 64, let f = current == pid ? target : facts(current), f.ppid > 0, current != 1 else {
                return .failure(notYours)
            }
            current = f.ppid
            depth += 1
        }
        let ended = (obj["ended"] as? Bool) == true
        let agent = (obj["agent"] as? String).flatMap { $0.utf8.count <= 256 ? $0 : nil }
        let time = RegistryTime.nanos(now)
        return .success(RegistryEntry(pid: pid, sessionId: session, startedAt: ended ? nil : time,
                                      endedAt: ended ? time : nil, agent: agent, pidStartTime: target.startTime,
                                      pidNamespace: nil))
    }
}

/// struct ucred (which Glibc's module shows only with _GNU_SOURCE): who is on the other end of a Unix
/// socket, as the kernel recorded it at connect.
struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

enum RegistryTime {
    static func nanos(_ seconds: Double) -> Int64 { SessionRegistry.nanos(seconds: seconds) ?? 0 }
}
