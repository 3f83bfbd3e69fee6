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
    /// Wall-clock nanoseconds of the connect (UDP: of the flow's first datagram).
    public var time: Int64
    public var tid: Int
    /// The socket (its cookie).
    public var socket: UInt64
    /// The process first, then its ancestors as they were at the connect (each started before the one
    /// after it; the chain stops at the first that is gone, or at PID 1).
    public var lineage: [ProcessFacts]
    public var process: ProcessFacts { lineage[0] }
}

/// The kernel's connect-time records (Sources/CConnectBPF): loads the program once for the daemon,
/// follows its ring buffer on a thread of its own, and keeps the latest records per connection tuple of
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
    /// The latest few records per tuple (a tuple is reused by later sockets), oldest first.
    private var records: [Key: [ConnectRecord]] = [:]
    private var recordCount = 0
    /// Wall-clock time before the last ring-buffer read began: every record of a connect made before it
    /// has been taken in. Its own lock, signalled at every read, for the attribution stage to wait on.
    private var drainedUntil: Int64 = 0
    private let drained = NSCondition()
    /// Records of the read under way, stored together at its end (the ring-buffer thread only).
    private var pending: [(Key, ConnectRecord)] = []
    private var _received = 0
    private var _forgotten = 0
    private let maxEntries: Int
    private let cgroupRoot: String
    /// CLOCK_REALTIME − CLOCK_BOOTTIME, to put the kernel's times on the capture's clock (read again at
    /// every poll: the wall clock can be stepped).
    private var clockOffset: Int64
    struct ProcessKey: Hashable {
        var pid: Int
        var start: UInt64
    }
    /// A process and its ancestors by (pid, start time), and the name and cgroup it had: a process that
    /// connects again, or a new child of a known parent, costs no /proc read (the ring-buffer thread only).
    private var lineages: [ProcessKey: (comm: CommBytes, cgroupId: UInt64, lineage: [ProcessFacts])] = [:]
    /// A process name as the kernel's 16 bytes (compared without making a string).
    struct CommBytes: Equatable {
        var low: UInt64
        var high: UInt64
        static let none = CommBytes(low: 0, high: 0)
    }
    /// cgroup id → path (nil: the cgroup is gone or cannot be opened; not asked again).
    private var cgroupPaths: [UInt64: String?] = [:]

    private init(handle: OpaquePointer, cgroupRoot: String, maxEntries: Int) {
        self.handle = handle
        self.cgroupRoot = cgroupRoot
        self.maxEntries = max(1024, maxEntries)
        clockOffset = Self.now(CLOCK_REALTIME) - Self.now(CLOCK_BOOTTIME)
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
        return cookie
    }

    /// Stops recording the namespace with this cookie (one that was replaced when a target reopened).
    public func unwatch(namespaceCookie: UInt64) {
        _ = ct_bpf_remove_netns(handle, namespaceCookie)
    }

    /// Records taken in, records the ring buffer had no room for, and records forgotten at the cap
    /// before anyone asked for them.
    public var counters: (received: Int, lost: Int, forgotten: Int) {
        let lost = Int(clamping: ct_bpf_lost(handle))
        return lock.withLock { (_received, lost, _forgotten) }
    }

    /// How often the ring buffer is read, in milliseconds. The program wakes the reader only when a
    /// quarter of the buffer is waiting, so records are read in batches rather than each as it comes (a
    /// reader woken, or going back at once, for every record runs thousands of times a second beside a
    /// connect loop, on the loop's cores); often enough that a one-shot process is often still in /proc
    /// (for its executable) when its record is read, and far within the attribution stage's wait for a
    /// connection's record (200 ms).
    static let readInterval: Int32 = 5

    /// Follows the ring buffer until `shouldStop` (on a thread of its own).
    public func run(shouldStop: () -> Bool) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        var more = false
        while !shouldStop() {
            if !more && ct_bpf_wait(handle, Self.readInterval) < 0 { usleep(UInt32(Self.readInterval) * 1000) }
            clockOffset = Self.now(CLOCK_REALTIME) - Self.now(CLOCK_BOOTTIME)
            let before = Self.now(CLOCK_REALTIME)
            let n = ct_bpf_poll(handle, { ctx, event in
                guard let ctx, let event else { return }
                Unmanaged<ConnectEvents>.fromOpaque(ctx).takeUnretainedValue().take(event.pointee)
            }, context)
            store()
            more = n >= 4096
            if n >= 0 && !more {
                // The buffer was read to its end: every connect made before `before` is in.
                drained.lock()
                drainedUntil = max(drainedUntil, before)
                drained.broadcast()
                drained.unlock()
            }
        }
    }

    /// Waits until every record of a connect made before `time` has been read from the ring buffer, up
    /// to `wait` nanoseconds (never on a packet thread: the attribution stage calls this once per batch).
    public func waitForRecords(before time: Int64, wait: Int64 = 200_000_000) {
        let deadline = Self.now(CLOCK_MONOTONIC) + wait
        // Packet times and the kernel's come from the same clock, read at different moments.
        let slack: Int64 = 5_000_000
        drained.lock()
        defer { drained.unlock() }
        while drainedUntil < time + slack {
            let left = deadline - Self.now(CLOCK_MONOTONIC)
            if left <= 0 { break }
            _ = drained.wait(until: Date(timeIntervalSinceNow: Double(left) / 1e9))
        }
    }

    /// The record of the connection with this tuple in namespace `netns` that started at `time`: the
    /// latest made no later than that (give or take the two clocks' reading) and no more than 1.5 s
    /// before it. A TCP record is made at the connection's SYN, and a UDP flow is recorded again every
    /// second while it goes on, so an older record is of an earlier socket that used the same tuple.
    /// When the connection is newer than what has been read from the ring buffer, waits for it up to
    /// `wait` nanoseconds.
    public func record(netns: UInt64, proto: UInt8, client: IPAddress, clientPort: UInt16, server: IPAddress,
                       serverPort: UInt16, at time: Int64, wait: Int64 = 0) -> ConnectRecord? {
        if wait > 0 { waitForRecords(before: time, wait: wait) }
        let key = Key(netns: netns, proto: proto, client: client, clientPort: clientPort, server: server, serverPort: serverPort)
        let slack: Int64 = 20_000_000
        return lock.withLock {
            records[key]?.last { r in r.time <= time + slack && r.time >= time - 1_500_000_000 }
        }
    }

    /// Every record held (for tests).
    var allRecords: [ConnectRecord] { lock.withLock { records.values.flatMap { $0 } } }

    // MARK: Taking records in (the ring-buffer thread)

    private func take(_ e: ct_event) {
        let time = Int64(bitPattern: e.ktime) &+ clockOffset
        guard e.family == 4 || e.family == 6, e.tgid > 0 else { return }
        let client = Self.address(e.saddr, family: e.family)
        let server = Self.address(e.daddr, family: e.family)
        let commBytes = withUnsafeBytes(of: e.comm) { raw in
            CommBytes(low: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                      high: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        let ticks = e.start_boottime / Self.nanosPerTick
        let pid = Int(e.tgid)
        let lineage: [ProcessFacts]
        if let known = lineages[ProcessKey(pid: pid, start: ticks)], known.comm == commBytes, known.cgroupId == e.cgroup_id {
            lineage = known.lineage
        } else {
            let comm = withUnsafeBytes(of: e.comm) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            // /proc while the process is (most often) still alive, for its executable and cgroup; the
            // kernel's facts otherwise, and always for its parent.
            var facts = ProcessTable.facts(pid).flatMap { $0.startTime == ticks ? $0 : nil }
                ?? ProcessFacts(pid: pid, ppid: Int(e.ppid), comm: comm, exe: nil, cgroup: nil, startTime: ticks)
            facts.ppid = Int(e.ppid)
            if facts.cgroup == nil { facts.cgroup = cgroupPath(e.cgroup_id) }
            let parentStart = e.parent_start_boottime / Self.nanosPerTick
            lineage = [facts] + (facts.ppid > 1 && parentStart <= ticks
                ? ancestry(of: facts.ppid, start: parentStart, youngerThan: ticks, depth: 1) : [])
            remember(ProcessKey(pid: pid, start: ticks), (commBytes, e.cgroup_id, lineage))
        }
        let record = ConnectRecord(proto: e.proto, client: client, clientPort: e.sport, server: server, serverPort: e.dport,
                                   time: time, tid: Int(e.tid), socket: e.socket_cookie, lineage: lineage)
        let key = Key(netns: e.netns_cookie, proto: e.proto, client: client, clientPort: e.sport, server: server, serverPort: e.dport)
        pending.append((key, record))
    }

    /// The records of a read, in under one lock.
    private func store() {
        guard !pending.isEmpty else { return }
        lock.withLock {
            _received += pending.count
            for (key, record) in pending {
                Self.append(record, to: &records[key, default: []], count: &recordCount)
            }
            if recordCount > maxEntries {
                // Forget the older half: a record is asked for within a second or two of its packet.
                let cutoff = records.values.map { $0.last!.time }.sorted()[records.count / 2]
                let before = recordCount
                records = records.filter { $0.value.last!.time > cutoff }
                recordCount = records.values.reduce(0) { $0 + $1.count }
                _forgotten += before - recordCount
            }
        }
        pending.removeAll(keepingCapacity: pending.count <= 4096)
    }

    /// A tuple's records, the latest four (in place: no copy of the list).
    private static func append(_ record: ConnectRecord, to list: inout [ConnectRecord], count: inout Int) {
        if list.count >= 4 {
            list.removeFirst()
            count -= 1
        }
        list.append(record)
        count += 1
    }

    /// A process (started at `start` when known) and its ancestors, from the cache or /proc. An
    /// ancestor younger than its child is a reused PID: the chain ends there.
    private func ancestry(of pid: Int, start: UInt64?, youngerThan child: UInt64, depth: Int) -> [ProcessFacts] {
        if let start, let known = lineages[ProcessKey(pid: pid, start: start)] { return known.lineage }
        guard let f = ProcessTable.facts(pid), start == nil || f.startTime == start, f.startTime <= child else { return [] }
        let key = ProcessKey(pid: pid, start: f.startTime)
        if let known = lineages[key] { return known.lineage }
        let rest = f.ppid > 1 && depth < 32 ? ancestry(of: f.ppid, start: nil, youngerThan: f.startTime, depth: depth + 1) : []
        let lineage = [f] + rest
        remember(key, (.none, 0, lineage))
        return lineage
    }

    private func remember(_ key: ProcessKey, _ entry: (comm: CommBytes, cgroupId: UInt64, lineage: [ProcessFacts])) {
        if lineages.count >= 4096 { lineages = [:] }
        lineages[key] = entry
    }

    private func cgroupPath(_ id: UInt64) -> String? {
        guard id != 0 else { return nil }
        if let p = cgroupPaths[id] { return p }
        var buffer = [CChar](repeating: 0, count: 4096)
        var path: String?
        if ct_cgroup_path(cgroupRoot, id, &buffer, buffer.count) == 0 {
            let full = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            path = CgroupTargets.relativePath(full, mount: cgroupRoot)
        }
        if cgroupPaths.count > 4096 { cgroupPaths = [:] }
        cgroupPaths[id] = .some(path)
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
