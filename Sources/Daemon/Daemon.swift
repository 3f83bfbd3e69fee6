import Analysers
import Attribution
import CallModel
import Core
import Decode
import Source
import Foundation
import Logging
import OTLP
import Pipeline
import ServiceLifecycle
import UnixSignals
import Storage
import Transcripts

/// Everything a capturing daemon runs, as services under one `ServiceGroup`:
///
/// | service | thread | job |
/// |---|---|---|
/// | `CaptureService` (one per target) | its own OS thread, inside the target's namespace | packets → calls, new connections |
/// | `AttributionService` (one per target) | its own OS thread, inside the namespace | owners and sessions, cgroup filter |
/// | `OTLPExportService` (optional) | a task | stored calls → OTLP spans and metrics, behind a cursor in the database |
/// | `WriterService` | a task | calls → sinks (database, JSON Lines, ClawMetry), statistics rows, status |
/// | followers, retention | tasks | registry and key log files; pruning the database |
/// | the API (optional) | Hummingbird | `calltap serve` on the same database |
///
/// Graceful shutdown (SIGTERM/SIGINT, or the end of a capture file) runs in reverse order of that list
/// as started: captures stop and finish their open connections, attribution drains, the API stops, and
/// the writer writes the rest and flushes every sink — so no finished call is lost.
public struct Daemon {
    public struct Target: Sendable {
        public var name: String
        public var source: CaptureService.Source
        public init(name: String, source: CaptureService.Source) {
            self.name = name
            self.source = source
        }
    }

    public struct Configuration: Sendable {
        public var targets: [Target] = []
        public var analysis = AnalysisOptions()
        /// Look up the process behind each connection (live capture as root). Off for capture files.
        public var attributeProcesses = true
        /// Take owners from the kernel at connect time (BPF) when it can be loaded; false: `--no-bpf`.
        public var connectTimeOwners = true
        public var registryPath: String?
        /// A Unix socket for verified registrations (`calltap run --registry-socket`).
        public var registrationSocketPath: String?
        public var keyLogPaths: [String] = []
        /// An OpenClaw state directory whose transcripts the attribution stage joins calls to.
        public var transcriptsPath: String?
        /// Keep only calls of processes in this cgroup (relative to the cgroup v2 mount).
        public var cgroup: String?
        /// A session for every call (as `read --session`).
        public var session: String?
        public var statsInterval: Duration = .seconds(10)
        public var showStatus = false
        public var retainDays: Double?
        public var maxDatabaseBytes: Int?
        /// How the database is named in messages (its path).
        public var databaseName = ""
        /// Export the stored calls to an OpenTelemetry Collector (needs a store).
        public var otlp: OTLPConfiguration?
        /// calltap's version, named in OTLP exports.
        public var version = ""
        public init() {}
    }

    public let group: ServiceGroup
    public let captures: [CaptureService]
    public let attribution: [AttributionService]
    public let writer: WriterService
    /// The database sink, when there is a store.
    public let callWriter: CallWriter?
    /// The kernel's connect-time records, when the program loaded.
    public let connectEvents: ConnectEvents?
    /// The verified registration socket; `open()` it before running the group.
    public let registrationSocket: RegistrationSocket?
    /// OTLP export of the stored calls, when configured.
    public let exporter: OTLPExportService?

    /// Builds the services. `sinks` get every call after the database (JSON Lines, ClawMetry…);
    /// `api` is added as a service when given; `signals` lead to graceful shutdown.
    public init(configuration c: Configuration, store: CallStore?, sinks: [any CallSink], api: (any Service)? = nil,
                signals: [UnixSignal] = [], logger: Logger) {
        let caps = c.analysis
        let registry = c.registryPath != nil || c.registrationSocketPath != nil
            ? SessionRegistry(path: c.registryPath, maxEntries: caps.maxRegistryEntries) : nil
        let registration = c.registrationSocketPath.flatMap { path in registry.map { RegistrationSocket(path: path, registry: $0) } }
        registry?.onFirstProblem = { logger.error("\($0)") }
        registry?.poll()
        var analysis = c.analysis
        if !c.keyLogPaths.isEmpty, analysis.keyLog == nil { analysis.keyLog = KeyLog() }
        let keyLog = analysis.keyLog
        keyLog?.maxEntries = caps.maxKeyLogEntries
        let followers = c.keyLogPaths.map { LineFollower(path: $0) }

        // The budget's share for finished calls (`maxHeldCalls`; a live capture holds none for ordering) is
        // split between the stages: half waiting for attribution, a quarter for the writer, a quarter held
        // while the database refuses writes. New-connection events are small and bounded by the connection cap.
        let toWriter = StageQueue<CallRecord>(capacity: caps.maxHeldCalls / 4)
        // Connection owners as the kernel records them at connect time; where the program cannot load,
        // the socket table, the process connector and /proc scans (said once).
        var connect: ConnectEvents?
        if c.attributeProcesses && !c.targets.isEmpty {
            if c.connectTimeOwners {
                do {
                    connect = try ConnectEvents.load(maxEntries: caps.maxSocketOwners)
                    logger.notice("connection owners: recorded by the kernel at connect time (BPF)")
                } catch {
                    logger.warning("connection owners: BPF unavailable (\(error)); using the socket table and process events")
                }
            } else {
                logger.notice("connection owners: --no-bpf; using the socket table and process events")
            }
        }
        // The agents' transcripts: read once now (what exists before the capture), then followed.
        let transcripts = c.transcriptsPath.map {
            TranscriptSource(directory: $0, index: TranscriptIndex(limits: .init(
                toolCallIds: caps.maxTranscriptToolCallIds, fetches: caps.maxTranscriptFetches, turns: caps.maxTranscriptTurns)))
        }
        transcripts?.poll()
        var captures: [CaptureService] = []
        var attribution: [AttributionService] = []
        for t in c.targets {
            let events = StageQueue<AttributionEvent>(capacity: caps.maxHeldCalls / 2 + caps.reassembly.maxConnections)
            var options = analysis
            options.target = t.name
            captures.append(CaptureService(target: t.name, source: t.source, options: options, events: events, logger: logger))
            var namespacePath: String?
            if case let .live(path, _, _) = t.source { namespacePath = path }
            let owners = c.attributeProcesses ? SocketOwners(registry: registry, maxEntries: caps.maxSocketOwners) : nil
            attribution.append(AttributionService(target: t.name, namespacePath: namespacePath, owners: owners, connect: connect, events: events,
                                                  output: toWriter, namespaceGeneration: captures.last!.namespaceGeneration,
                                                  cgroup: c.cgroup, inputSession: c.session,
                                                  join: transcripts.map { TranscriptJoin(index: $0.index) },
                                                  maxOpen: caps.reassembly.maxConnections * 2, logger: logger))
        }
        let callWriter = store.map { CallWriter(store: $0, maxHeld: caps.maxHeldCalls / 4) }
        let databaseName = c.databaseName
        callWriter?.onFailure = { logger.error("cannot write to database \(databaseName): \($0); holding calls and retrying") }
        callWriter?.onRecovery = { logger.notice("database writable again: \($0) held calls stored") }
        let allSinks: [any CallSink] = (callWriter.map { [$0] } ?? []) + sinks
        let capturesForStats = captures, attributionForStats = attribution, connectForStats = connect
        let writer = WriterService(
            input: toWriter, sinks: allSinks, store: store, writer: callWriter,
            statistics: {
                zip(capturesForStats, attributionForStats).enumerated().map { i, pair in
                    var s = pair.0.statistics()
                    let a = pair.1.counters
                    s.excludedCgroup = a.excludedCgroup
                    s.unattributedConnections += a.unattributed
                    s.callsNotStored += a.refused
                    let sources = pair.1.ownerSources
                    s.ownerConnect = sources[.connect] ?? 0
                    s.ownerSocketTable = sources[.socketTable] ?? 0
                    s.ownerProcessEvents = sources[.processEvents] ?? 0
                    pair.1.fillTranscriptCounters(&s)
                    if i == 0, let t = transcripts?.counters {
                        s.transcriptEntries = t.entries
                        s.transcriptEntriesSkipped += t.skipped + t.refused + (transcripts?.index.droppedEntries ?? 0)
                    }
                    // Calls the database could not take, and the kernel's lost records, belong to no one
                    // target: counted on the first.
                    if i == 0 {
                        s.registrationsRefused = registration?.counters.refused ?? 0
                        s.callsNotStored += callWriter?.notStored ?? 0
                        if let k = connectForStats?.counters { s.bpfEventsLost = k.lost + k.forgotten }
                    }
                    return (pair.0.target, s)
                }
            },
            statsInterval: c.statsInterval, showStatus: c.showStatus, logger: logger)

        // Started in this order; graceful shutdown runs from the end of the list back. The exporter stops
        // last, so its final pass sees what the writer stored at the end.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var exporter: OTLPExportService?
        if let otlp = c.otlp, let store {
            exporter = OTLPExportService(store: store, configuration: otlp, version: c.version, logger: logger)
            services.append(.init(service: exporter!))
        }
        services.append(.init(service: writer))
        if registry != nil || !followers.isEmpty {
            services.append(.init(service: PeriodicService(every: .milliseconds(250)) {
                registry?.poll()
                for f in followers { if let u = f.readNew(), !u.text.isEmpty { keyLog?.add(text: u.text) } }
            }))
        }
        if let transcripts {
            services.append(.init(service: PeriodicService(every: .milliseconds(250)) { transcripts.poll() }))
        }
        if let store, c.retainDays != nil || c.maxDatabaseBytes != nil {
            let retainDays = c.retainDays, maxBytes = c.maxDatabaseBytes
            services.append(.init(service: PeriodicService(every: .seconds(5)) {
                let cutoff = retainDays.map { Int64((Date().timeIntervalSince1970 - $0 * 86_400) * 1e9) }
                _ = try? store.pruneStep(before: cutoff, maxBytes: maxBytes)
            }))
        }
        if let api { services.append(.init(service: api)) }
        if let connect { services.append(.init(service: ThreadService(name: "calltap-connect") { connect.run(shouldStop: $0) })) }
        if let registration {
            services.append(.init(service: ThreadService(name: "calltap-register") { registration.run(shouldStop: $0) }))
        }
        services += attribution.map { .init(service: $0) }
        services += captures.map { .init(service: $0) }
        // When every input has ended (capture files read to their end), the group shuts down gracefully.
        services.append(.init(service: InputsEnded(captures: captures, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup))
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals,
                                                           cancellationSignals: [], logger: logger)
        // A stage that cannot finish (a capture stuck in the kernel) must not keep the daemon from exiting.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(30)
        group = ServiceGroup(configuration: groupConfiguration)
        self.captures = captures
        self.attribution = attribution
        self.writer = writer
        self.callWriter = callWriter
        self.connectEvents = connect
        self.registrationSocket = registration
        self.exporter = exporter
    }
}

/// Returns when every capture's input has ended, or at shutdown.
final class InputsEnded: Service {
    let captures: [CaptureService]
    let logger: Logger
    init(captures: [CaptureService], logger: Logger) {
        self.captures = captures
        self.logger = logger
    }
    func run() async throws {
        await cancelWhenGracefulShutdown {
            for c in self.captures { await c.waitUntilEnded() }
        }
        logger.info("stopping: flushing open calls")
    }
}



/// A loop that blocks (the ring buffer of connect-time records, the registration socket) on an OS
/// thread of its own, told to stop at graceful shutdown or cancellation.
final class ThreadService: Service, @unchecked Sendable {
    let name: String
    let body: @Sendable (_ shouldStop: () -> Bool) -> Void
    private let lock = NSLock()
    private var stopping = false

    init(name: String, body: @escaping @Sendable (_ shouldStop: () -> Bool) -> Void) {
        self.name = name
        self.body = body
    }

    func run() async throws {
        let done = OneShot<Bool>()
        let t = Thread {
            self.body { self.lock.withLock { self.stopping } }
            done.set(true)
        }
        t.name = name
        t.start()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                _ = await done.wait()
            } onGracefulShutdown: {
                self.lock.withLock { self.stopping = true }
            }
        } onCancel: {
            self.lock.withLock { self.stopping = true }
        }
    }
}
