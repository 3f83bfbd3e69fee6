import CallModel
import Core
import Foundation

public struct AttributionCounters: Sendable {
    public var lookups = 0
    public var found = 0
    public var unattributed = 0
    /// Owners inferred from the processes alive at connection start (socket gone before it was seen).
    public var inferred = 0
    public var scans = 0
}

/// Socket → process → session, learned ahead of time: a watcher polls the namespace's socket table
/// every few milliseconds and resolves each new socket's owner while the process is alive, so even a
/// one-shot `curl` that exits before its packets are analysed keeps its owner. Lookups that still miss
/// are retried synchronously, then counted.
public final class SocketOwners: @unchecked Sendable {
    private let lock = NSLock()
    private let registry: SessionRegistry?
    private var owners: [SocketKey: (owner: ConnectionOwner, seen: Int64)] = [:]
    private var inodeOwner: [UInt64: ConnectionOwner] = [:]
    private var _counters = AttributionCounters()
    /// Socket → owner entries kept (from the memory budget); beyond it the oldest half is forgotten.
    private let maxEntries: Int
    private let tracker: ProcessTracker

    public init(registry: SessionRegistry?, maxEntries: Int = 65_536) {
        self.registry = registry
        self.maxEntries = max(1024, maxEntries)
        tracker = ProcessTracker(registry: registry)
    }

    public var counters: AttributionCounters { lock.withLock { _counters } }

    /// Serialises `refresh`: the watcher and the attribution stage both call it, and the /proc walk keeps
    /// state of its own (`knownPIDs`).
    private let refreshing = NSLock()

    /// Reads the socket table of the calling thread's namespace and resolves owners of new sockets.
    public func refresh(now: Int64 = Int64(Date().timeIntervalSince1970 * 1e9)) {
        refreshing.withLock { refreshLocked(now: now) }
    }

    private func refreshLocked(now: Int64) {
        let table = SocketTable.read()
        var unknown: [SocketKey: SocketTable.Entry] = [:]
        lock.withLock {
            for (key, entry) in table {
                if let o = inodeOwner[entry.inode] {
                    owners[key] = (o, now)
                } else if owners[key] == nil {
                    unknown[key] = entry
                }
            }
        }
        guard !unknown.isEmpty else { return }
        let wanted = Set(unknown.values.map(\.inode))
        let found = findHolders(of: wanted)
        lock.withLock {
            _counters.scans += 1
            for (key, entry) in unknown {
                guard let pid = found[entry.inode] else { continue }
                let o = resolve(pid: pid, at: now)
                inodeOwner[entry.inode] = o
                owners[key] = (o, now)
            }
            if owners.count > maxEntries {
                // Forget the oldest half: connections that old were looked up long ago.
                let cutoff = owners.values.map(\.seen).sorted()[owners.count / 2]
                owners = owners.filter { $0.value.seen > cutoff }
                inodeOwner = [:]
            }
        }
    }

    /// Scans /proc for the namespace's processes: at start, and now and then in case the process
    /// connector missed events (it is the main source of process lifetimes).
    public func scanProcesses(now: Int64 = Int64(Date().timeIntervalSince1970 * 1e9)) {
        lock.withLock { tracker.scan(now: now) }
    }

    /// Feeds a process connector event (from a thread in the initial namespace).
    public func handle(_ event: ProcessEvents.Event) {
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        lock.withLock { tracker.handle(event, now: now) }
    }

    /// The owner of the client side of a connection (the agent is the client) that started at `time`.
    /// `infer`: when the socket is not in the table, guess from the processes alive then (only when the
    /// process connector and scans keep that picture current).
    public func owner(client: IPAddress, clientPort: UInt16, server: IPAddress, serverPort: UInt16, at time: Int64,
                      retry: Bool, infer: Bool = true) -> ConnectionOwner? {
        let key = SocketKey(local: client, localPort: clientPort, remote: server, remotePort: serverPort)
        if let o = lock.withLock({ owners[key]?.owner }) {
            lock.withLock { _counters.lookups += 1; _counters.found += 1 }
            return o
        }
        if retry { refresh() }
        return lock.withLock {
            _counters.lookups += 1
            if let o = owners[key]?.owner { _counters.found += 1; return o }
            if infer, let o = tracker.infer(at: time) { _counters.inferred += 1; return o }
            _counters.unattributed += 1
            return nil
        }
    }

    /// PIDs seen at the previous scan: a new socket most often belongs to a process started since.
    private var knownPIDs: Set<Int> = []

    /// Scans /proc for the processes holding `inodes`: processes started since the last scan first
    /// (a one-shot client is found in a fraction of a millisecond, before it exits), then registered
    /// processes and their descendants, then everything else.
    private func findHolders(of inodes: Set<UInt64>) -> [UInt64: Int] {
        var found: [UInt64: Int] = [:]
        let all = ProcessTable.allPIDs()
        let fresh = all.filter { !knownPIDs.contains($0) }.sorted(by: >)
        knownPIDs = Set(all)
        func scan(_ pids: [Int]) -> Bool {
            for pid in pids {
                for inode in ProcessTable.socketInodes(pid) where inodes.contains(inode) && found[inode] == nil {
                    found[inode] = pid
                }
                if found.count == inodes.count { return true }
            }
            return false
        }
        if scan(fresh) { return found }
        var order: [Int] = []
        if let registered = registry?.registeredPIDs, !registered.isEmpty {
            let children = ProcessTable.childrenMap(all)
            var queue = registered
            var seen = Set<Int>()
            while let p = queue.popLast() {
                guard seen.insert(p).inserted else { continue }
                order.append(p)
                queue += children[p] ?? []
            }
        }
        let first = Set(order).union(fresh)
        order += all.filter { !first.contains($0) }.sorted(by: >)
        _ = scan(order)
        return found
    }

    /// Process facts and session: the process's own registry entry, else its nearest registered ancestor.
    private func resolve(pid: Int, at time: Int64) -> ConnectionOwner {
        let facts = ProcessTable.facts(pid)
        let session = registry?.resolve(facts, at: time, parent: ProcessTable.facts) ?? (sessionId: nil, attribution: "none", agent: nil)
        return ConnectionOwner(pid: pid, process: facts?.comm, exe: facts?.exe, cgroup: facts?.cgroup,
                     sessionId: session.sessionId, attribution: session.attribution, agent: session.agent,
                     source: .socketTable)
    }

    /// The owner the kernel recorded at connect time, with its session from the registry as it stands now
    /// (a registry line may arrive after the process started) for the call's time `time` (a pooled
    /// socket may serve several sessions over its life); ancestors only as they were at the connect.
    public func owner(of record: ConnectRecord, at time: Int64) -> ConnectionOwner {
        let facts = record.process
        let session = registry?.resolve(facts, at: time, parent: { pid in
            record.lineage.first { $0.pid == pid }
        }) ?? (sessionId: nil, attribution: "none", agent: nil)
        lock.withLock { _counters.lookups += 1; _counters.found += 1 }
        return ConnectionOwner(pid: facts.pid, process: facts.comm, exe: facts.exe, cgroup: facts.cgroup,
                               sessionId: session.sessionId, attribution: session.attribution, agent: session.agent,
                               source: .connect)
    }
}
