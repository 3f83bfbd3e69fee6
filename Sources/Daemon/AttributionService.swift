import Attribution
import CallModel
import Core
import Decode
import Source
import Transcripts
import Foundation
import Logging
import ServiceLifecycle

/// The attribution stage of one capture target, on its own thread (inside the target's network
/// namespace for a live capture, since socket tables are per namespace): it looks up the owner of each
/// new connection as soon as the capture thread reports it (a watcher thread and the process connector
/// learn owners ahead of time), keeps it for the connection's life, attaches owner and session to each
/// call by one rule (`CallRecord.attribute`), applies the cgroup filter, and hands calls to the writer,
/// waiting for room rather than dropping them. No system call runs on a packet thread. On graceful
/// shutdown (after the capture services have ended) it drains what is queued and returns.
public final class AttributionService: Service, @unchecked Sendable {
    public let target: String
    private let namespacePath: String?
    /// nil: no process lookups (a capture file read as a daemon would, in tests).
    private let owners: SocketOwners?
    /// The kernel's connect-time records (nil: BPF unavailable or turned off; the socket table, the
    /// process connector and /proc scans stand in).
    private let connect: ConnectEvents?
    private let events: StageQueue<AttributionEvent>
    private let output: StageQueue<CallRecord>
    /// Bumped by the capture when it opened its namespace again.
    private let namespaceGeneration: Counter
    /// Keep only calls of processes in this cgroup (relative to the cgroup v2 mount).
    private let cgroup: String?
    private let inputSession: String?
    /// Owners of open connections kept at most (the reassembler's connection cap, with room for lingering).
    private let maxOpen: Int
    private let logger: Logger
    private let lock = NSLock()
    private var stopping = false
    private var excludedCgroup = 0
    private var unattributed = 0
    private var refused = 0
    private var forgotten = 0
    private var bySource: [OwnerSource: Int] = [:]
    /// The transcript join (`--transcripts`), owned by the attribution thread; its counters are copied
    /// out under the lock.
    private let join: TranscriptJoin?
    private var joinCounters = TranscriptJoin.Counters()

    /// A connection by its endpoints (addresses as numbers: no string is made per connection).
    struct Key: Hashable {
        var client: IPAddress
        var clientPort: UInt16
        var server: IPAddress
        var serverPort: UInt16
    }

    init(target: String, namespacePath: String?, owners: SocketOwners?, connect: ConnectEvents?, events: StageQueue<AttributionEvent>,
         output: StageQueue<CallRecord>, namespaceGeneration: Counter, cgroup: String?, inputSession: String?,
         join: TranscriptJoin? = nil, maxOpen: Int, logger: Logger) {
        self.join = join
        self.target = target
        self.namespacePath = namespacePath
        self.owners = owners
        self.connect = owners == nil ? nil : connect
        self.events = events
        self.output = output
        self.namespaceGeneration = namespaceGeneration
        self.cgroup = cgroup
        self.inputSession = inputSession
        self.maxOpen = max(1024, maxOpen)
        self.logger = logger
    }

    /// Calls left out by the cgroup filter, connections whose owner was not found (or was forgotten when
    /// more connections were open than the cap), and calls the writer's queue refused.
    public var counters: (excludedCgroup: Int, unattributed: Int, refused: Int) {
        lock.withLock { (excludedCgroup, unattributed + forgotten, refused) }
    }

    /// Calls by how their process was found.
    public var ownerSources: [OwnerSource: Int] { lock.withLock { bySource } }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// What the transcript join decided, into the statistics.
    public func fillTranscriptCounters(_ s: inout CaptureStats) {
        lock.withLock { joinCounters }.fill(&s)
    }

    /// Hands a call to the writer, waiting for room rather than dropping it.
    private func emit(_ record: CallRecord) {
        // Back-pressure: wait for the writer (it drains four times a second) rather than drop.
        if !output.putWaiting(record, timeout: 5) { lock.withLock { refused += 1 } }
    }

    /// Calls the transcript join decided since, or whose hold is over (`all`: everything, at the end).
    private var lastRelease: Int64 = 0
    private func releaseHeld(all: Bool = false) {
        guard let join else { return }
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000_000)
        // Twenty times a second is soon enough for a hold of seconds, and keeps the idle loop cheap.
        guard all || now - lastRelease >= 50_000_000 else { return }
        lastRelease = now
        let ready = all ? join.finish() : join.due(now: now)
        for r in ready { emit(r) }
        let c = join.counters
        lock.withLock { joinCounters = c }
    }

    public func run() async throws {
        var threads: [OneShot<Bool>] = []
        threads.append(start("calltap-attribution-\(target)") { self.attributeUntilStopped() })
        if let owners, connect == nil {
            // The watcher learns owners of new sockets while their processes are alive, ahead of the events,
            // on a thread of its own so a /proc scan never delays a lookup.
            threads.append(start("calltap-sockets-\(target)") { self.watch(owners) })
            // Process lifetimes and lineage as they happen (the connector lives in the initial namespace).
            threads.append(start("calltap-procs-\(target)") {
                guard let c = try? ProcessEvents() else { return }
                c.run(shouldStop: { self.isStopping }) { owners.handle($0) }
            })
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                for t in threads { _ = await t.wait() }
            } onGracefulShutdown: {
                self.lock.withLock { self.stopping = true }
            }
        } onCancel: {
            self.lock.withLock { self.stopping = true }
        }
    }

    private func start(_ name: String, _ body: @escaping @Sendable () -> Void) -> OneShot<Bool> {
        let done = OneShot<Bool>()
        let t = Thread {
            body()
            done.set(true)
        }
        t.name = name
        t.start()
        return done
    }

    /// Enters the target's namespace (again, when the capture reopened it). False when it cannot, said once.
    private func enterNamespace(seen generation: inout Int, reported: inout Bool) -> Bool {
        guard let p = namespacePath else { return true }
        let now = namespaceGeneration.value
        guard now != generation else { return true }
        do {
            try LiveCapture.enterNetworkNamespace(path: p)
            generation = now
            reported = false
            return true
        } catch {
            if !reported { logger.error("\(target): attribution cannot enter \(p): \(error); calls stay unattributed") }
            reported = true
            return false
        }
    }

    private func watch(_ owners: SocketOwners) {
        var generation = -1, reported = false
        var lastScan: UInt64 = 0
        while !isStopping {
            if enterNamespace(seen: &generation, reported: &reported) {
                let now = DispatchTime.now().uptimeNanoseconds
                if now - lastScan > 500_000_000 {
                    owners.scanProcesses()
                    lastScan = now
                }
                owners.refresh()
            }
            usleep(2_000)
        }
    }

    private func attributeUntilStopped() {
        var generation = -1, reported = false
        // Owners of open connections; `.closed` removes them, after the connection's last call.
        var open: [Key: ConnectionOwner?] = [:]
        // The namespace's cookie, as the kernel's records name it (registered before the first packet).
        var cookie: UInt64?
        var cookieGeneration = -2
        func watchNamespace() -> Bool {
            guard owners != nil, enterNamespace(seen: &generation, reported: &reported) else { return false }
            if let connect, cookieGeneration != generation {
                let previous = cookie
                cookie = connect.watchCurrentNamespace()
                if let previous, previous != cookie { connect.unwatch(namespaceCookie: previous) }
                cookieGeneration = generation
                if cookie == nil { logger.error("\(target): the kernel gives this namespace no cookie; its connections are looked up in the socket table") }
            }
            return true
        }
        _ = watchNamespace()
        while true {
            let batch = events.take()
            if batch.isEmpty {
                if isStopping && events.isEmpty {
                    releaseHeld(all: true)
                    return
                }
                releaseHeld()
                usleep(1_000)
                continue
            }
            let inNamespace = watchNamespace()
            // One socket-table read for the whole batch, after it was taken: every socket it names that still
            // exists is seen, at the cost of one dump however many connections opened. With the kernel's
            // connect-time records, one bounded wait for the batch's newest connection to be read from the
            // ring buffer, and the table is read (once) only for connections the records do not cover.
            var latest: Int64?
            for event in batch {
                switch event {
                case let .opened(_, _, _, _, time): latest = max(latest ?? time, time)
                case let .call(r) where r.kind == .dns || r.kind == .quic: latest = max(latest ?? r.ts, r.ts)
                default: break
                }
            }
            var refreshed = false
            if inNamespace, let owners, let latest {
                if let connect, cookie != nil {
                    connect.waitForRecords(before: latest)
                } else if case .some = batch.first(where: { if case .opened = $0 { return true } else { return false } }) {
                    owners.refresh()
                    refreshed = true
                }
            }
            for event in batch {
                switch event {
                case let .opened(client, clientPort, server, serverPort, time):
                    guard inNamespace, let owners else { continue }
                    var o: ConnectionOwner?
                    if let connect, let cookie,
                       let r = connect.record(netns: cookie, proto: 6, client: client, clientPort: clientPort, server: server,
                                              serverPort: serverPort, at: time) {
                        o = owners.owner(of: r, at: time)
                    } else {
                        // Not recorded at connect (opened before calltap started, or BPF is not running).
                        if !refreshed {
                            owners.refresh()
                            refreshed = true
                        }
                        o = owners.owner(client: client, clientPort: clientPort, server: server, serverPort: serverPort,
                                         at: time, retry: false, infer: connect == nil)
                    }
                    if o == nil { lock.withLock { unattributed += 1 } }
                    if open.count >= maxOpen {
                        // More open connections than the cap allows: start again (counted), rather than grow.
                        lock.withLock { forgotten += open.count }
                        open.removeAll(keepingCapacity: true)
                    }
                    open[Self.key(client, clientPort, server, serverPort)] = .some(o)
                case let .closed(client, clientPort, server, serverPort):
                    open.removeValue(forKey: Self.key(client, clientPort, server, serverPort))
                case var .call(record):
                    var owner: ConnectionOwner?
                    let tcp = record.kind != .dns && record.kind != .quic
                    // UDP flows (DNS lookups, QUIC) are known only from the kernel's records.
                    let udpLookup = !tcp && connect != nil && cookie != nil
                    if owners != nil, let ci = record.clientIp.flatMap(IPAddress.init(parsing:)),
                       let cp = record.clientPort.flatMap(UInt16.init(exactly:)),
                       let si = record.serverIp.flatMap(IPAddress.init(parsing:)),
                       let sp = record.serverPort.flatMap(UInt16.init(exactly:)) {
                        if tcp {
                            owner = open[Key(client: ci, clientPort: cp, server: si, serverPort: sp)] ?? nil
                        } else if udpLookup, let connect, let cookie, let owners,
                                  let r = connect.record(netns: cookie, proto: 17, client: ci, clientPort: cp, server: si,
                                                         serverPort: sp, at: record.ts) {
                            owner = owners.owner(of: r, at: record.ts)
                        }
                    }
                    record.attribute(owner: owner, inputSession: inputSession, lookedUp: owners != nil && (tcp || udpLookup))
                    if let cgroup, !CgroupTargets.contains(cgroup, member: record.cgroup) {
                        lock.withLock { excludedCgroup += 1 }
                        continue
                    }
                    if let source = record.ownerSource { lock.withLock { bySource[source, default: 0] += 1 } }
                    if let join {
                        let now = Int64(Date().timeIntervalSince1970 * 1_000_000_000)
                        for r in join.add(record, now: now) { emit(r) }
                    } else {
                        emit(record)
                    }
                }
            }
            releaseHeld()
        }
    }

    static func key(_ client: IPAddress, _ clientPort: UInt16, _ server: IPAddress, _ serverPort: UInt16) -> Key {
        Key(client: client, clientPort: clientPort, server: server, serverPort: serverPort)
    }
}
