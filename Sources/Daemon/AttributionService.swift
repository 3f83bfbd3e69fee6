import Attribution
import CallModel
import Capture
import Foundation
import Logging
import ServiceLifecycle

/// The attribution stage of one capture target, on its own thread (inside the target's network
/// namespace for a live capture, since socket tables are per namespace): it looks up the owner of each
/// new connection as soon as the capture thread reports it (a watcher thread and the process connector
/// learn owners ahead of time), attaches owner and session to each call by one rule
/// (`CallRecord.attribute`), applies the cgroup filter, and hands calls to the writer. No system call
/// runs on a packet thread. On graceful shutdown (after the capture services have ended) it drains
/// what is queued and returns.
public final class AttributionService: Service, @unchecked Sendable {
    public let target: String
    private let namespacePath: String?
    /// nil: no process lookups (a capture file read as a daemon would, in tests).
    private let owners: SocketOwners?
    private let events: StageQueue<AttributionEvent>
    private let output: StageQueue<CallRecord>
    /// Keep only calls of processes in this cgroup (relative to the cgroup v2 mount).
    private let cgroup: String?
    private let inputSession: String?
    private let maxRemembered: Int
    private let lock = NSLock()
    private var stopping = false
    private var excludedCgroup = 0
    private var unattributed = 0

    struct Key: Hashable {
        var client: String
        var clientPort: Int
        var server: String
        var serverPort: Int
    }

    init(target: String, namespacePath: String?, owners: SocketOwners?, events: StageQueue<AttributionEvent>,
         output: StageQueue<CallRecord>, cgroup: String?, inputSession: String?, maxRemembered: Int) {
        self.target = target
        self.namespacePath = namespacePath
        self.owners = owners
        self.events = events
        self.output = output
        self.cgroup = cgroup
        self.inputSession = inputSession
        self.maxRemembered = max(1024, maxRemembered)
    }

    /// Calls left out by the cgroup filter, and connections whose owner was not found.
    public var counters: (excludedCgroup: Int, unattributed: Int) { lock.withLock { (excludedCgroup, unattributed) } }

    public func run() async throws {
        let ended = OneShot<Bool>()
        let thread = Thread { [self] in
            threadMain()
            ended.set(true)
        }
        thread.name = "calltap-attribution-\(target)"
        thread.start()
        var connector: Thread?
        if let owners {
            // The watcher learns owners of new sockets while their processes are alive, ahead of the
            // events, on a thread of its own so a /proc scan never delays a lookup.
            let namespacePath = self.namespacePath
            let watcher = Thread { [self] in
                if let p = namespacePath { guard (try? LiveCapture.enterNetworkNamespace(path: p)) != nil else { return } }
                var lastScan: UInt64 = 0
                while !lock.withLock({ stopping }) {
                    let now = DispatchTime.now().uptimeNanoseconds
                    if now - lastScan > 500_000_000 {
                        owners.scanProcesses()
                        lastScan = now
                    }
                    owners.refresh()
                    usleep(2_000)
                }
            }
            watcher.name = "calltap-sockets-\(target)"
            watcher.start()
            // Process lifetimes and lineage as they happen (the connector lives in the initial namespace).
            let t = Thread { [self] in
                guard let c = try? ProcessEvents() else { return }
                c.run(shouldStop: { self.lock.withLock { self.stopping } }) { owners.handle($0) }
            }
            t.name = "calltap-procs-\(target)"
            t.start()
            connector = t
        }
        _ = connector
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                _ = await ended.wait()
            } onGracefulShutdown: {
                self.lock.withLock { self.stopping = true }
            }
        } onCancel: {
            self.lock.withLock { self.stopping = true }
        }
    }

    private func threadMain() {
        if let p = namespacePath, owners != nil {
            guard (try? LiveCapture.enterNetworkNamespace(path: p)) != nil else {
                // Without the namespace no owner can be found: calls still flow, unattributed.
                drainUntilStopped(owners: nil)
                return
            }
        }
        drainUntilStopped(owners: owners)
    }

    private func drainUntilStopped(owners: SocketOwners?) {
        // Owners of recent connections, in two generations so the map stays bounded.
        var recent: [Key: ConnectionOwner?] = [:]
        var older: [Key: ConnectionOwner?] = [:]
        while true {
            let batch = events.take()
            if batch.isEmpty {
                if lock.withLock({ stopping }) && events.isEmpty { return }
                usleep(1_000)
                continue
            }
            // One socket-table read for the whole batch, after it was taken: every socket it names that
            // still exists is seen, at the cost of one dump however many connections opened.
            if let owners, batch.contains(where: { if case .opened = $0 { return true } else { return false } }) {
                owners.refresh()
            }
            for event in batch {
                switch event {
                case let .opened(client, clientPort, server, serverPort, time):
                    guard let owners else { continue }
                    let key = Key(client: client.description, clientPort: Int(clientPort), server: server.description,
                                  serverPort: Int(serverPort))
                    let o = owners.owner(client: client, clientPort: clientPort, server: server, serverPort: serverPort,
                                         at: time, retry: false)
                    if o == nil { lock.withLock { unattributed += 1 } }
                    recent[key] = .some(o)
                    if recent.count >= maxRemembered / 2 {
                        older = recent
                        recent.removeAll(keepingCapacity: true)
                    }
                case var .call(record):
                    var owner: ConnectionOwner?
                    if owners != nil, let ci = record.clientIp, let cp = record.clientPort, let si = record.serverIp,
                       let sp = record.serverPort, record.kind != .dns, record.kind != .quic {
                        let key = Key(client: ci, clientPort: cp, server: si, serverPort: sp)
                        owner = (recent[key] ?? older[key]) ?? nil
                    }
                    record.attribute(owner: owner, inputSession: inputSession,
                                     lookedUp: owners != nil && record.kind != .dns && record.kind != .quic)
                    if let cgroup, !CgroupTargets.contains(cgroup, member: record.cgroup) {
                        lock.withLock { excludedCgroup += 1 }
                        continue
                    }
                    output.put(record)
                }
            }
        }
    }
}
