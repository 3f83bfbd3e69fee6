import CConnectBPF
import CallModel
import Core
import Foundation

/// One connection start as the kernel recorded it in the connecting process's context: the tuple, the
/// process, and its ancestors as /proc showed them when the record arrived (a one-shot tool is usually
/// still alive then; when it is not, the kernel's facts stand alone).
public struct ConnectRecord: Sendable {
    public var proto: UInt8
    public var client: IPAddress
    public var clientPort: UInt16
    public var server: IPAddress
    public var serverPort: UInt16
    /// Wall-clock nanoseconds of the connect.
    public var time: Int64
    public var tid: Int
    /// The process first, then its ancestors (up to the first that is gone, or PID 1).
    public var lineage: [ProcessFacts]
    public var process: ProcessFacts { lineage[0] }
}

/// The kernel's connect-time records (Sources/CConnectBPF): loads the program once for the daemon,
/// follows its ring buffer on a thread of its own, and keeps the latest record per connection tuple of
/// each watched network namespace, bounded by the memory budget.
public final class ConnectEvents: @unchecked Sendable {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    struct Key: Hashable {
        var netns: UInt64
        var proto: UInt8
        var client: IPAddress
        var clientPort: UInt16
        var server: IPAddress
        var serverPort: UInt16
    }

    private let handle: OpaquePointer
    private let lock = NSLock()
    private var records: [Key: ConnectRecord] = [:]
    private var namespaces: Set<UInt64> = []
    /// Wall-clock time before the last ring-buffer read began: every record of a connect made before it
    /// has been taken in.
    private var drainedUntil: Int64 = 0
    private var _received = 0
    private var _forgotten = 0
    private let maxEntries: Int
    private let cgroupRoot: String
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, to put the kernel's times on the capture's clock.
    private let clockOffset: Int64
    /// Ancestors by (pid, start time): long-lived parents (the agent, its shell) are read once.
    private var parents: [Int: ProcessFacts] = [:]
    private var cgroupPaths: [UInt64: String] = [:]

    private init(handle: OpaquePointer, cgroupRoot: String, maxEntries: Int) {
        self.handle = handle
        self.cgroupRoot = cgroupRoot
        self.maxEntries = max(1024, maxEntries)
        clockOffset = Self.now(CLOCK_REALTIME) - Self.now(CLOCK_MONOTONIC)
    }

    deinit { ct_bpf_close(handle) }

    /// Loads and attaches the program at the cgroup v2 root. Throws `Unavailable` with the reason (no
    /// CAP_BPF/CAP_PERFMON, no BTF, an older kernel, no cgroup v2).
    public static func load(maxEntries: Int) throws -> ConnectEvents {
        guard let root = CgroupTargets.mountPoint() else { throw Unavailable(description: "no cgroup v2 mount") }
        var error = [CChar](repeating: 0, count: 512)
        guard let h = ct_bpf_open(root, &error, error.count) else {
            throw Unavailable(description: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return ConnectEvents(handle: h, cgroupRoot: root, maxEntries: maxEntries)
    }

    /// The calling thread's network namespace cookie (0 when the kernel gives none).
    public static func currentNamespaceCookie() -> UInt64 { ct_netns_cookie() }

    /// Starts recording connections of the calling thread's network namespace; returns its cookie.
    @discardableResult
    public func watchCurrentNamespace() -> UInt64? {
        let cookie = ct_netns_cookie()
        guard cookie != 0, ct_bpf_add_netns(handle, cookie) == 0 else { return nil }
        lock.withLock { _ = namespaces.insert(cookie) }
        return cookie
    }

    /// Records taken in, records the ring buffer had no room for, and records forgotten at the cap
    /// before anyone asked for them.
    public var counters: (received: Int, lost: Int, forgotten: Int) {
        let lost = Int(clamping: ct_bpf_lost(handle))
        return lock.withLock { (_received, lost, _forgotten) }
    }

    /// Follows the ring buffer until `shouldStop` (on a thread of its own).
    public func run(shouldStop: () -> Bool) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        while !shouldStop() {
            let before = Self.now(CLOCK_REALTIME)
            let n = ct_bpf_poll(handle, 5, { ctx, event in
                guard let ctx, let event else { return }
                Unmanaged<ConnectEvents>.fromOpaque(ctx).takeUnretainedValue().take(event.pointee)
            }, context)
            if n < 0 { usleep(5_000) }
            lock.withLock { drainedUntil = before }
        }
    }

    /// The record of the connection with this tuple in namespace `netns`, started near `time`. When the
    /// connection is newer than what has been read from the ring buffer, waits for it up to `wait`
    /// nanoseconds (never on a packet thread: the attribution stage calls this).
    public func record(netns: UInt64, proto: UInt8, client: IPAddress, clientPort: UInt16, server: IPAddress,
                       serverPort: UInt16, at time: Int64, wait: Int64 = 200_000_000) -> ConnectRecord? {
        let key = Key(netns: netns, proto: proto, client: client, clientPort: clientPort, server: server, serverPort: serverPort)
        let deadline = Self.now(CLOCK_MONOTONIC) + wait
        // Packet times and the kernel's come from the same clock, read at different moments.
        let slack: Int64 = 5_000_000
        while true {
            let (found, drained) = lock.withLock { (records[key], drainedUntil) }
            if let r = found, r.time <= time + 1_000_000_000 { return r }
            if drained >= time + slack || Self.now(CLOCK_MONOTONIC) >= deadline { return nil }
            usleep(1_000)
        }
    }

    /// Every record held (for tests).
    var allRecords: [ConnectRecord] { lock.withLock { Array(records.values) } }

    // MARK: Taking records in (the ring-buffer thread)

    private func take(_ e: ct_event) {
        guard e.family == 4 || e.family == 6, e.tgid > 0 else { return }
        let client = Self.address(e.saddr, family: e.family)
        let server = Self.address(e.daddr, family: e.family)
        let time = Int64(bitPattern: e.ktime) &+ clockOffset
        let comm = withUnsafeBytes(of: e.comm) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let ticks = e.start_boottime / Self.nanosPerTick
        let pid = Int(e.tgid)
        // /proc while the process is (most often) still alive; else the kernel's facts.
        var facts = ProcessTable.facts(pid).flatMap { $0.startTime == ticks ? $0 : nil }
            ?? ProcessFacts(pid: pid, ppid: Int(e.ppid), comm: comm, exe: nil, cgroup: nil, startTime: ticks)
        if facts.cgroup == nil { facts.cgroup = cgroupPath(e.cgroup_id) }
        var lineage = [facts]
        var parentPID = facts.ppid
        while parentPID > 1, lineage.count < 64, let p = parent(parentPID) {
            lineage.append(p)
            parentPID = p.ppid
        }
        let record = ConnectRecord(proto: e.proto, client: client, clientPort: e.sport, server: server, serverPort: e.dport,
                                   time: time, tid: Int(e.tid), lineage: lineage)
        let key = Key(netns: e.netns_cookie, proto: e.proto, client: client, clientPort: e.sport, server: server, serverPort: e.dport)
        lock.withLock {
            _received += 1
            records[key] = record
            if records.count > maxEntries {
                // Forget the older half: a record is asked for within a second of its connect.
                let cutoff = records.values.map(\.time).sorted()[records.count / 2]
                let before = records.count
                records = records.filter { $0.value.time > cutoff }
                _forgotten += before - records.count
            }
        }
    }

    /// A parent's facts, read once while it lives (a PID reused by a younger process is read again).
    private func parent(_ pid: Int) -> ProcessFacts? {
        if let known = parents[pid] {
            // Still the same process? Its stat line's start time says so.
            if let now = ProcessTable.facts(pid), now.startTime == known.startTime { return known }
            parents[pid] = nil
        }
        guard let f = ProcessTable.facts(pid) else { return nil }
        if parents.count > 4096 { parents = [:] }
        parents[pid] = f
        return f
    }

    private func cgroupPath(_ id: UInt64) -> String? {
        guard id != 0 else { return nil }
        if let p = cgroupPaths[id] { return p }
        var buffer = [CChar](repeating: 0, count: 4096)
        guard ct_cgroup_path(cgroupRoot, id, &buffer, buffer.count) == 0 else { return nil }
        let full = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let path = CgroupTargets.relativePath(full, mount: cgroupRoot)
        if cgroupPaths.count > 4096 { cgroupPaths = [:] }
        cgroupPaths[id] = path
        return path
    }

    static func address(_ words: (UInt32, UInt32, UInt32, UInt32), family: UInt8) -> IPAddress {
        if family == 4 { return IPAddress(v4: UInt32(bigEndian: words.0)) }
        let high = UInt64(UInt32(bigEndian: words.0)) << 32 | UInt64(UInt32(bigEndian: words.1))
        let low = UInt64(UInt32(bigEndian: words.2)) << 32 | UInt64(UInt32(bigEndian: words.3))
        // An IPv4-mapped address (a dual-stack socket to an IPv4 server) is held as IPv4, as packets are.
        return IPAddress(high: high, low: low)
    }

    /// /proc/PID/stat's start time is in clock ticks (USER_HZ); the kernel's in nanoseconds since boot.
    static let nanosPerTick: UInt64 = 1_000_000_000 / UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))

    static func now(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
