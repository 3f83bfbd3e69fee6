import CallModel
import Foundation

/// The processes of one network namespace over time, from frequent /proc scans: when they were first
/// and last seen, and their session. When a connection is too short-lived for its socket to be seen
/// (a one-shot `curl` to a nearby server can open, use and close its socket in under a millisecond),
/// the processes alive in the namespace when it started still name its session.
final class ProcessTracker {
    struct Record {
        var facts: ProcessFacts
        var firstSeen: Int64
        var lastSeen: Int64
        /// From the process connector: exact end of life (nil while alive or when only polled).
        var exited: Int64?
        var sessionId: String?
        var attribution: String
        var agent: String?
    }

    private var records: [Int: Record] = [:]
    private var namespaceLink: String?
    private var registryGeneration = -1
    private let registry: SessionRegistry?
    static let retention: Int64 = 30_000_000_000

    init(registry: SessionRegistry?) {
        self.registry = registry
    }

    /// Called from a thread inside the target namespace.
    func scan(now: Int64) {
        if namespaceLink == nil { namespaceLink = Self.link("/proc/thread-self/ns/net") }
        guard let ns = namespaceLink else { return }
        for pid in ProcessTable.allPIDs() {
            if records[pid] != nil {
                if records[pid]!.exited == nil { records[pid]!.lastSeen = now }
                continue
            }
            guard Self.link("/proc/\(pid)/ns/net") == ns, let facts = ProcessTable.facts(pid) else { continue }
            records[pid] = record(facts, now: now)
        }
        records = records.filter { now - ($0.value.exited ?? $0.value.lastSeen) < Self.retention }
        // A registry line may arrive after its process was first seen: look again for those without a session.
        if let registry, registry.generation != registryGeneration {
            registryGeneration = registry.generation
            for (pid, r) in records where r.sessionId == nil {
                var again = record(r.facts, now: r.firstSeen)
                again.lastSeen = r.lastSeen
                again.exited = r.exited
                records[pid] = again
            }
        }
    }

    /// The owner of a connection that started at `time`, inferred from the processes alive then: the
    /// youngest (a new connection most often comes from the process that started last). When processes
    /// of another session also started in the 100 ms before the connection, the call is `ambiguous`.
    func infer(at time: Int64) -> ConnectionOwner? {
        guard let (youngest, ambiguous) = Self.guess(records.values, at: time) else { return nil }
        // A long-lived process may serve several sessions over time: the one whose window holds the call.
        let session = registry?.resolve(youngest.facts, at: time, parent: { self.records[$0]?.facts ?? ProcessTable.facts($0) })
            ?? (sessionId: youngest.sessionId, attribution: youngest.attribution, agent: youngest.agent)
        var o = ConnectionOwner(pid: youngest.facts.pid, process: youngest.facts.comm, exe: youngest.facts.exe,
                      cgroup: youngest.facts.cgroup, sessionId: session.sessionId, attribution: session.attribution,
                      agent: session.agent, source: .processEvents)
        if ambiguous {
            o.sessionId = nil
            o.attribution = "ambiguous"
        }
        return o
    }

    /// The youngest of the processes alive at `time` (3 ms either side), and whether a process of another
    /// session started in the 100 ms before it too. Processes started shortly before a connection are
    /// its likely makers: if they belong to different sessions, no guess is good enough — whether or not
    /// they are still alive (the maker may have exited already, or its own start may not have reached
    /// us, while a sibling's did).
    static func guess(_ records: some Collection<Record>, at time: Int64) -> (youngest: Record, ambiguous: Bool)? {
        let slack: Int64 = 3_000_000, recent: Int64 = 100_000_000
        let alive = records.filter { $0.firstSeen <= time + slack && ($0.exited ?? $0.lastSeen) >= time - slack }
        guard let youngest = alive.max(by: { $0.firstSeen != $1.firstSeen ? $0.firstSeen < $1.firstSeen : $0.facts.pid < $1.facts.pid })
        else { return nil }
        let ambiguous = records.contains {
            $0.facts.pid != youngest.facts.pid && $0.firstSeen <= time + slack && time - $0.firstSeen < recent
                && $0.sessionId != youngest.sessionId
        }
        return (youngest, ambiguous)
    }

    /// A process connector event (called with the tracker's lock held by the owner).
    func handle(_ event: ProcessEvents.Event, now: Int64) {
        switch event {
        case let .fork(parent, child):
            guard let ns = namespaceLink, Self.link("/proc/\(child)/ns/net") == ns else { return }
            var facts = ProcessTable.facts(child) ?? records[parent]?.facts
                ?? ProcessFacts(pid: child, ppid: parent, comm: "?", exe: nil, cgroup: nil, startTime: 0)
            facts.pid = child
            facts.ppid = parent
            records[child] = record(facts, now: now)
        case let .exec(pid):
            guard let facts = ProcessTable.facts(pid) else { return }
            if records[pid] == nil {
                // Entered the namespace after its fork (ip netns exec, nsenter): known from its exec on.
                guard let ns = namespaceLink, Self.link("/proc/\(pid)/ns/net") == ns else { return }
                records[pid] = record(facts, now: now)
                return
            }
            records[pid]!.facts.comm = facts.comm
            records[pid]!.facts.exe = facts.exe
            records[pid]!.facts.cgroup = facts.cgroup
        case let .exit(pid):
            records[pid]?.exited = now
        }
    }

    /// A newly seen process with its session (its own registry entry, or its nearest registered ancestor's).
    private func record(_ facts: ProcessFacts, now: Int64) -> Record {
        let session = registry?.resolve(facts, at: now, parent: { self.records[$0]?.facts ?? ProcessTable.facts($0) })
            ?? (sessionId: nil, attribution: "none", agent: nil)
        return Record(facts: facts, firstSeen: now, lastSeen: now, exited: nil, sessionId: session.sessionId,
                      attribution: session.attribution, agent: session.agent)
    }

    static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
