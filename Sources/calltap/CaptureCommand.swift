import Analysers
import ArgumentParser
import Attribution
import CallModel
import Capture
import Foundation
import Pipeline
import Server
import Storage

struct CaptureCommand: AsyncParsableCommand {
    /// Calls held in memory while the database refuses writes; beyond it the oldest are dropped (counted).
    static let maxUnstoredCalls = 100_000
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture live inside agents' network namespaces and record every call with its process and session.",
        discussion: """
            Each target gets its own capture thread, which alone enters the namespace (setns); the rest of \
            the process stays where it started. SIGINT/SIGTERM stop capture, flush open calls and exit 0.
            """
    )

    @Option(help: "A TOML file of settings, keyed by the long flag names; flags given here override it.")
    var config: String?

    @Option(help: "A network namespace to capture in: a name from `ip netns`, or a path like /proc/PID/ns/net. Repeatable.")
    var netns: [String] = []

    @Option(name: .customLong("pid"), help: "Capture in this process's network namespace. Repeatable.")
    var pids: [Int] = []

    @Option(help: "Keep only connections of processes in this cgroup (v2), captured in the namespaces they use.")
    var cgroup: String?

    @Option(name: [.customShort("i"), .customLong("interface")], help: "Interface inside the target namespace.")
    var interface = "any"

    @Option(help: "BPF filter.")
    var filter: String?

    @Option(help: "Bytes captured per packet.")
    var snaplen: Int32 = 262_144

    @Option(name: .customLong("buffer-size"), help: "Kernel capture buffer, in MB.")
    var bufferSize: Int32 = 32

    @Flag(help: "Deliver packets immediately (more kernel drops under load).")
    var immediate = false

    @Option(help: "Store calls and per-interval capture statistics in this SQLite database.")
    var db: String?

    @Option(help: "Also serve the API and dashboard here (as calltap serve --listen).")
    var listen: String?

    @Option(help: "Bearer token for --listen.")
    var token: String?

    @Option(help: "PID → session registry file (JSON Lines), followed as it changes.")
    var registry: String?

    @Option(name: .customLong("keylog"), help: "TLS key log to follow for decrypting HTTPS. Repeatable.")
    var keylogs: [String] = []

    @Option(help: "Print calls to standard output: jsonl, table or none.")
    var format: OutputFormat = .none

    @Option(name: .customLong("memory-mb"),
            help: "Memory budget in MB: the caps on connections, out-of-order bytes, held calls, HTTP/1 head buffers and DNS names scale with it.")
    var memoryMB = AnalysisOptions.defaultMemoryMB

    @Flag(help: "Keep short, redacted request/response body summaries.")
    var summaries = false

    @Flag(name: .customLong("include-local"), help: "Keep loopback and link-local traffic.")
    var includeLocal = false

    @Option(name: [.customShort("w"), .customLong("write-dir")],
            help: "Also write raw packets to rotating pcap files in this directory (0600; they hold secrets).")
    var writeDir: String?

    @Option(name: .customLong("rotate-mb"), help: "Size of each -w file, in MB.")
    var rotateMB: Double = 100

    @Option(name: .customLong("rotate-count"), help: "-w files kept per target; the oldest are deleted.")
    var rotateCount = 10

    @Option(name: .customLong("clawmetry-jsonl"), help: "Append calls in ClawMetry's interceptor format to this file.")
    var clawmetryJSONL: String?

    @Flag(name: .customLong("clawmetry-include-llm"), help: "Include LLM provider hosts in --clawmetry-jsonl.")
    var clawmetryIncludeLLM = false

    @Option(name: .customLong("retain-days"), help: "Delete calls older than this many days (in small steps).")
    var retainDays: Double?

    @Option(name: .customLong("max-db-mb"), help: "Delete the oldest calls while the database holds more than this.")
    var maxDBMB: Int?

    @Option(name: .customLong("stats-interval"), help: "Seconds between statistics rows (and status lines on a terminal).")
    var statsInterval = 10

    mutating func run() async throws {
        var targets: [(name: String, path: String?)] = netns.map { n in
            (n, n.contains("/") ? n : "/var/run/netns/\(n)")
        }
        targets += pids.map { ("pid:\($0)", "/proc/\($0)/ns/net") }
        var cgroupPath: String?
        if let cgroup {
            guard let mount = CgroupTargets.mountPoint() else {
                Log.error("--cgroup: no cgroup v2 hierarchy is mounted")
                throw ExitCode(ExitStatus.unreadable)
            }
            let relative = CgroupTargets.relativePath(cgroup, mount: mount)
            guard FileManager.default.fileExists(atPath: mount + relative + "/cgroup.procs") else {
                Log.error("--cgroup: no cgroup at \(mount + relative)")
                throw ExitCode(ExitStatus.unreadable)
            }
            cgroupPath = relative
            let namespaces = CgroupTargets.namespaces(of: CgroupTargets.processes(mount: mount, cgroup: relative))
            guard !namespaces.isEmpty else {
                Log.error("--cgroup: cgroup \(relative) has no processes yet")
                throw ExitCode(ExitStatus.unreadable)
            }
            targets += namespaces.enumerated().map { ("cgroup:\(relative)" + ($0.offset > 0 ? "#\($0.offset + 1)" : ""), $0.element) }
        }
        if targets.isEmpty { targets = [("host", nil)] }
        for t in targets {
            if let p = t.path, !FileManager.default.fileExists(atPath: p) {
                Log.error("no network namespace at \(p)")
                throw ExitCode(ExitStatus.unreadable)
            }
        }
        let store = try db.map(CallStore.openForCommand)
        let registry = self.registry.map { SessionRegistry(path: $0) }
        registry?.onFirstProblem = { Log.error($0) }
        registry?.poll()
        let keyLog = keylogs.isEmpty ? nil : KeyLog()
        let followers = keylogs.map { FileFollower(path: $0) }

        var base = AnalysisOptions()
        base.includeLocal = includeLocal
        base.summaries = summaries
        base.scaleCaps(toMemoryMB: memoryMB)
        base.keyLog = keyLog
        base.orderedOutput = false
        var live = LiveCaptureOptions()
        live.interface = interface
        live.filter = filter
        live.snaplen = snaplen
        live.bufferSize = bufferSize << 20
        live.immediate = immediate

        let outbox = CallOutbox()
        var workers: [CaptureWorker] = []
        for t in targets {
            var options = base
            options.target = t.name
            let rotation = writeDir.map { (dir: $0, bytes: Int(rotateMB * 1_048_576), count: rotateCount) }
            let w = CaptureWorker(target: t.name, namespacePath: t.path, live: live, options: options,
                                  registry: registry, outbox: outbox, rotation: rotation, cgroup: cgroupPath)
            workers.append(w)
            w.start()
        }
        // Fail fast when a target could not start (bad interface, no permission, bad filter).
        try await Task.sleep(nanoseconds: 300_000_000)
        for w in workers { if let e = w.startError { Log.error("\(w.target): \(e)"); throw ExitCode(ExitStatus.unreadable) } }
        Log.info("capturing on \(targets.map(\.name).joined(separator: ", ")) (interface \(interface))")

        let format = self.format
        let out = OutputStream()
        var clawmetry: FileHandle?
        if let path = clawmetryJSONL {
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640])
            }
            SharedFiles.share([path])
            guard let h = FileHandle(forWritingAtPath: path) else {
                Log.error("cannot write --clawmetry-jsonl \(path)")
                throw ExitCode(ExitStatus.usage)
            }
            _ = try? h.seekToEnd()
            clawmetry = h
        }
        let includeLLM = clawmetryIncludeLLM
        let interval = max(1, statsInterval)
        let showStatus = Log.stderrIsTTY
        var server: Task<Void, Error>?
        if let listen {
            guard let address = ServerOptions.parseListen(listen), let store else {
                Log.error(store == nil ? "--listen needs --db" : "--listen: expected HOST:PORT")
                throw ExitCode(ExitStatus.usage)
            }
            var so = ServerOptions()
            so.host = address.host
            so.port = address.port
            so.token = token
            do {
                let app = try buildApplication(store: store, options: so)
                server = Task { try await app.run() }
            } catch let e as ServerError {
                Log.error(e.description)
                throw ExitCode(ExitStatus.usage)
            }
        }

        let signals = SignalWaiter(signals: [SIGINT, SIGTERM])
        var lastStats: [String: CaptureStats] = [:]
        var lastStatsTime = Date()
        var total = 0
        var unstored: [CallRecord] = []
        var storeFailing = false
        var callsNotStored = 0
        func flush(final: Bool) {
            registry?.poll()
            for f in followers { if let text = f.readNew() { keyLog?.add(text: text) } }
            let calls = outbox.take()
            total += calls.count
            if let store {
                // Calls the database refused (disk full, read-only, locked) are kept and tried again with
                // the next batch, up to a cap; the error is logged once, and so is the recovery.
                unstored += calls
                if !unstored.isEmpty {
                    do {
                        try store.insert(unstored)
                        if storeFailing {
                            Log.info("database writable again: \(unstored.count) held calls stored")
                            storeFailing = false
                        }
                        unstored.removeAll()
                    } catch {
                        if !storeFailing { Log.error("cannot write to database \(db ?? ""): \(error); holding calls and retrying") }
                        storeFailing = true
                        if unstored.count > Self.maxUnstoredCalls {
                            let dropped = unstored.count - Self.maxUnstoredCalls
                            unstored.removeFirst(dropped)
                            callsNotStored += dropped
                        }
                    }
                }
            }
            if let clawmetry {
                let lines = calls.compactMap { ClawMetry.line($0, source: "calltap:\($0.target ?? "host")", includeLLM: includeLLM) }
                if !lines.isEmpty { clawmetry.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
            }
            for c in calls {
                switch format {
                case .jsonl: out.line(CallJSON.line(c))
                case .table: out.line(CallTable.row(c))
                case .none: break
                }
            }
            out.flush()
            if final || Date().timeIntervalSince(lastStatsTime) >= Double(interval) {
                lastStatsTime = Date()
                let now = Int64(Date().timeIntervalSince1970 * 1e9)
                var line: [String] = []
                for w in workers {
                    let s = w.statistics()
                    if let store {
                        try? store.recordStats(s.delta(since: lastStats[w.target] ?? CaptureStats()), source: w.target, at: now)
                    }
                    lastStats[w.target] = s
                    line.append("\(w.target): \(s.packets) packets, \(s.kernelDrops) drops, \(s.unattributedConnections) unattributed")
                }
                if showStatus || final {
                    Log.info("\(total) calls; " + line.joined(separator: "; ") + "; sessions: \(registry?.registeredPIDs.count ?? 0) pids registered"
                             + (callsNotStored + (final ? unstored.count : 0) > 0
                                ? "; \(callsNotStored + (final ? unstored.count : 0)) calls not stored (database errors)" : ""))
                }
            }
        }
        var lastPrune = Date.distantPast
        var reportedFailures: [String: String] = [:]
        let retainDays = self.retainDays, maxDBMB = self.maxDBMB
        while !signals.fired {
            try? await Task.sleep(nanoseconds: 250_000_000)
            flush(final: false)
            if let store, retainDays != nil || maxDBMB != nil, Date().timeIntervalSince(lastPrune) >= 5 {
                lastPrune = Date()
                let cutoff = retainDays.map { Int64((Date().timeIntervalSince1970 - $0 * 86_400) * 1e9) }
                _ = try? store.pruneStep(before: cutoff, maxBytes: maxDBMB.map { $0 << 20 })
            }
            for w in workers {
                let failure = w.failure
                if failure != reportedFailures[w.target] {
                    if let failure {
                        Log.error("\(w.target): capture stopped: \(failure); opening it again every 2 s")
                    } else {
                        Log.info("\(w.target): capture resumed")
                    }
                    reportedFailures[w.target] = failure
                }
            }
        }
        Log.info("stopping: flushing open calls")
        for w in workers { w.stop() }
        for w in workers { w.join() }
        flush(final: true)
        server?.cancel()
    }
}

/// Calls handed from capture threads to the flusher.
final class CallOutbox: @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [CallRecord] = []
    func put(_ c: CallRecord) { lock.withLock { calls.append(c) } }
    func take() -> [CallRecord] { lock.withLock { defer { calls.removeAll(keepingCapacity: true) }; return calls } }
}

/// Reads what was appended to a file since the last call (restarting after truncation or replacement).
final class FileFollower: @unchecked Sendable {
    let path: String
    private var offset: UInt64 = 0
    private var inode: UInt64 = 0
    init(path: String) { self.path = path }

    func readNew() -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        if UInt64(st.st_ino) != inode || UInt64(st.st_size) < offset { inode = UInt64(st.st_ino); offset = 0 }
        guard UInt64(st.st_size) > offset, let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        guard let data = try? h.readToEnd(), let lastNewline = data.lastIndex(of: 0x0A) else { return nil }
        let complete = data[...lastNewline]
        offset += UInt64(complete.count)
        return String(decoding: complete, as: UTF8.self)
    }
}

/// Turns SIGINT/SIGTERM into a flag the main loop polls.
final class SignalWaiter: @unchecked Sendable {
    private let lock = NSLock()
    private var _fired = false
    private var sources: [DispatchSourceSignal] = []

    init(signals: [Int32]) {
        for s in signals {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { [weak self] in self?.lock.withLock { self?._fired = true } }
            source.resume()
            sources.append(source)
        }
    }

    var fired: Bool { lock.withLock { _fired } }
}

/// One capture target: a thread that enters the namespace, watches its sockets, and runs libpcap and
/// the analysis pipeline.
final class CaptureWorker: @unchecked Sendable {
    let target: String
    private let namespacePath: String?
    private let live: LiveCaptureOptions
    private var options: AnalysisOptions
    private let registry: SessionRegistry?
    private let outbox: CallOutbox
    private let lock = NSLock()
    private var capture: LiveCapture?
    private var analyzer: Analyzer?
    private var decoder: PacketDecoder?
    private var owners: SocketOwners?
    private var watcherStop = false
    private var _startError: String?
    private var _failure: String?
    private var latest = CaptureStats()
    private let done = DispatchSemaphore(value: 0)
    private let watcherDone = DispatchSemaphore(value: 0)
    private let rotation: (dir: String, bytes: Int, count: Int)?
    /// Only connections of processes inside this cgroup are kept (the others are counted).
    private let cgroup: String?
    private var excludedByCgroup = 0
    private var duplicatePackets = 0

    init(target: String, namespacePath: String?, live: LiveCaptureOptions, options: AnalysisOptions,
         registry: SessionRegistry?, outbox: CallOutbox, rotation: (dir: String, bytes: Int, count: Int)? = nil,
         cgroup: String? = nil) {
        self.rotation = rotation
        self.cgroup = cgroup
        self.target = target
        self.namespacePath = namespacePath
        self.live = live
        self.options = options
        self.registry = registry
        self.outbox = outbox
    }

    var startError: String? { lock.withLock { _startError } }
    var failure: String? { lock.withLock { _failure } }

    func statistics() -> CaptureStats { lock.withLock { latest } }

    func start() {
        let owners = SocketOwners(registry: registry)
        self.owners = owners
        options.attribute = { client, clientPort, server, serverPort, time in
            owners.owner(client: client, clientPort: clientPort, server: server, serverPort: serverPort, at: time, retry: true)
        }
        // The watcher learns socket owners while processes are alive, ahead of packet analysis.
        let watcher = Thread { [self] in
            defer { watcherDone.signal() }
            if let p = namespacePath { guard (try? LiveCapture.enterNetworkNamespace(path: p)) != nil else { return } }
            var lastScan: UInt64 = 0
            while !lock.withLock({ watcherStop }) {
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
        let events = Thread { [self] in
            guard let connector = try? ProcessEvents() else { return }
            connector.run(shouldStop: { lock.withLock { watcherStop } }) { owners.handle($0) }
        }
        events.name = "calltap-procs-\(target)"
        events.start()
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                if let p = namespacePath { try LiveCapture.enterNetworkNamespace(path: p) }
                let firstCapture = try LiveCapture(options: live)
                let outbox = self.outbox
                let cgroup = self.cgroup
                let analyzer = Analyzer(options: options) { call in
                    if let cgroup, !CgroupTargets.contains(cgroup, member: call.cgroup) {
                        self.lock.withLock { self.excludedByCgroup += 1 }
                        return
                    }
                    outbox.put(call)
                }
                var capture = firstCapture
                var decoder = PacketDecoder(linkType: capture.linkType)
                let writer = try rotation.map {
                    try PcapRotator(directory: $0.dir, prefix: "calltap-\(target.replacingOccurrences(of: "/", with: "_"))",
                                    linkType: capture.linkType, snaplen: live.snaplen, maxBytes: $0.bytes, maxFiles: $0.count)
                }
                defer { writer?.close() }
                lock.withLock { self.capture = capture }
                var sinceStats = 0
                // With -i any the same packet can arrive on several interfaces (veth and bridge).
                var duplicates = live.interface == "any" ? DuplicateFilter() : nil
                while true {
                    let error = capture.run({ frame, len, ts in
                        if let writer { try? writer.write(frame, wireLength: len, timestamp: ts) }
                        if let p = decoder.decode(frame, wireLength: len, timestamp: ts) {
                            if duplicates?.isDuplicate(p) == true {
                                self.lock.withLock { self.duplicatePackets = duplicates?.duplicates ?? 0 }
                                return
                            }
                            analyzer.process(p)
                        }
                        sinceStats += 1
                        if sinceStats >= 4096 { sinceStats = 0; self.publish(analyzer, decoder, capture) }
                    }, idle: {
                        analyzer.tick(now: Int64(Date().timeIntervalSince1970 * 1e9))
                        self.publish(analyzer, decoder, capture)
                    })
                    guard let error, !lock.withLock({ watcherStop }) else { break }
                    // The interface (or the namespace) went away: keep the open connections and try to open
                    // it again every 2 s, since a restarted container brings it back.
                    lock.withLock { _failure = error }
                    guard let again = reopen(analyzer) else { break }
                    if again.linkType != capture.linkType { decoder = PacketDecoder(linkType: again.linkType) }
                    capture = again
                    lock.withLock { self.capture = again; _failure = nil }
                }
                analyzer.finish()
                publish(analyzer, decoder, capture)
                _ = decoder
            } catch {
                lock.withLock { _startError = "\(error)" }
            }
        }
        thread.name = "calltap-capture-\(target)"
        thread.start()
    }

    /// Opens the capture again (re-entering the namespace by its path) every 2 s until it works or the
    /// worker is stopped; time keeps passing for the analyser meanwhile.
    private func reopen(_ analyzer: Analyzer) -> LiveCapture? {
        while !lock.withLock({ watcherStop }) {
            for _ in 0..<20 where !lock.withLock({ watcherStop }) { usleep(100_000) }
            analyzer.tick(now: Int64(Date().timeIntervalSince1970 * 1e9))
            if let p = namespacePath, (try? LiveCapture.enterNetworkNamespace(path: p)) == nil { continue }
            if let c = try? LiveCapture(options: live) { return c }
        }
        return nil
    }

    private func publish(_ analyzer: Analyzer, _ decoder: PacketDecoder, _ capture: LiveCapture) {
        var s = analyzer.statistics(decoder: decoder.counters)
        if let k = capture.stats() { s.kernelDrops = Int(k.kernelDrops + k.interfaceDrops) }
        lock.withLock {
            s.excludedCgroup = excludedByCgroup
            s.duplicatePackets = duplicatePackets
            latest = s
        }
    }

    func stop() {
        lock.withLock { watcherStop = true }
        lock.withLock { capture }?.stop()
    }

    func join() {
        done.wait()
        watcherDone.wait()
    }
}
