import Analysers
import ArgumentParser
import Attribution
import CallModel
import ClawMetry
import Core
import Decode
import Source
import Daemon
import Foundation
import Pipeline
import Server
import ServiceLifecycle
import Storage
import Transcripts

struct CaptureCommand: AsyncParsableCommand {
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

    @Option(name: .customLong("allow-host"),
            help: "Without --token, also answer --listen requests whose Host is NAME. Repeatable.")
    var allowHosts: [String] = []

    @Option(name: .customLong("cors-origin"),
            help: "Let pages from this origin (e.g. http://127.0.0.1:8900, a ClawMetry dashboard) read the API from a browser.")
    var corsOrigin: String?

    @Option(help: "PID → session registry file (JSON Lines), followed as it changes.")
    var registry: String?

    @Option(name: .customLong("keylog"), help: "TLS key log to follow for decrypting HTTPS. Repeatable.")
    var keylogs: [String] = []

    @Option(name: .customLong("transcripts"),
            help: "An OpenClaw state directory (~/.openclaw), followed read-only: its agents' transcripts decide the sessions of calls one gateway process made for many.")
    var transcripts: String?

    @Option(name: .customLong("registry-socket"),
            help: "Also take registrations on this Unix socket, verified by the caller's credentials (calltap run --registry-socket).")
    var registrySocket: String?

    @Flag(name: .customLong("no-bpf"),
          help: "Do not load the connect-time ownership program: find owners in the socket table and process events.")
    var noBPF = false

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

    @OptionGroup var otlp: OTLPOptions

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
        var otlpConfiguration = try otlp.resolve()
        if otlpConfiguration != nil && db == nil {
            guard otlp.endpoint == nil else {
                Log.error("--otlp-endpoint needs --db: the database is the export's buffer while the collector is unreachable")
                throw ExitCode(ExitStatus.usage)
            }
            Log.info("OTEL_EXPORTER_OTLP_ENDPOINT is set, but without --db there is no OTLP export")
            otlpConfiguration = nil
        }
        let store = try db.map(CallStore.openForCommand)
        var configuration = Daemon.Configuration()
        configuration.otlp = otlpConfiguration
        configuration.version = Calltap.version
        configuration.analysis.includeLocal = includeLocal
        configuration.analysis.summaries = summaries
        configuration.analysis.scaleCaps(toMemoryMB: memoryMB)
        configuration.analysis.orderedOutput = false
        configuration.registryPath = registry
        configuration.connectTimeOwners = !noBPF
        configuration.registrationSocketPath = registrySocket
        configuration.keyLogPaths = keylogs
        if let dir = transcripts {
            // A daemon may start before the agent made its state directory: it is read once it appears.
            if TranscriptSource.exists(dir), let problem = TranscriptSource.check(directory: dir) {
                Log.error("cannot read --transcripts \(dir): \(problem)")
                throw ExitCode(ExitStatus.usage)
            }
            configuration.transcriptsPath = dir
        }
        configuration.cgroup = cgroupPath
        configuration.statsInterval = .seconds(max(1, statsInterval))
        configuration.showStatus = Log.stderrIsTTY
        configuration.retainDays = retainDays
        configuration.maxDatabaseBytes = maxDBMB.map { $0 << 20 }
        configuration.databaseName = db ?? ""
        var live = LiveCaptureOptions()
        live.interface = interface
        live.filter = filter
        live.snaplen = snaplen
        live.bufferSize = bufferSize << 20
        live.immediate = immediate
        let rotation = writeDir.map { CaptureService.Rotation(directory: $0, maxBytes: Int(rotateMB * 1_048_576), maxFiles: rotateCount) }
        configuration.targets = targets.map {
            Daemon.Target(name: $0.name, source: .live(namespacePath: $0.path, options: live, rotation: rotation))
        }

        var sinks: [any CallSink] = []
        switch format {
        case .jsonl, .table: sinks.append(StandardOutputSink(format: format))
        case .none: break
        }
        if let path = clawmetryJSONL {
            // Appended as root: never through a link, and shared with the calltap group on the descriptor.
            let fd: Int32
            do {
                fd = try SafeFiles.openAppend(path, mode: 0o640)
            } catch {
                Log.error("cannot write --clawmetry-jsonl: \(error)")
                throw ExitCode(ExitStatus.usage)
            }
            SafeFiles.share(fd: fd, mode: 0o640, group: SharedFiles.groupID)
            sinks.append(ClawMetrySink(handle: FileHandle(fileDescriptor: fd, closeOnDealloc: true), includeLLM: clawmetryIncludeLLM,
                                       source: ClawMetryLines.defaultSource))
        }
        var api: (any Service)?
        if let listen {
            guard let address = ServerOptions.parseListen(listen), let store else {
                Log.error(store == nil ? "--listen needs --db" : "--listen: expected HOST:PORT")
                throw ExitCode(ExitStatus.usage)
            }
            var so = ServerOptions()
            so.host = address.host
            so.port = address.port
            so.token = token
            so.allowedHosts = allowHosts
        if let o = corsOrigin {
            guard ServerOptions.isOrigin(o) else { throw ValidationError("--cors-origin: expected an origin such as http://127.0.0.1:8900, got '\(o)'") }
            so.corsOrigin = o
        }
            do {
                api = try buildApplication(store: store, options: so)
            } catch let e as ServerError {
                Log.error(e.description)
                throw ExitCode(ExitStatus.usage)
            }
        }
        let daemon = Daemon(configuration: configuration, store: store, sinks: sinks, api: api,
                            signals: [.sigterm, .sigint], logger: Log.logger)
        do {
            try daemon.registrationSocket?.open()
        } catch {
            Log.error("--registry-socket: \(error)")
            throw ExitCode(ExitStatus.usage)
        }
        let group = daemon.group, captures = daemon.captures
        let names = targets.map(\.name).joined(separator: ", "), interface = self.interface
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                tasks.addTask {
                    // Said once every target is capturing, so a target that cannot start leaves only its error.
                    for c in captures { guard await c.waitUntilStarted() else { return } }
                    Log.info("capturing on \(names) (interface \(interface))")
                }
                try await tasks.waitForAll()
            }
        } catch let e as CaptureService.StartError {
            Log.error(e.description)
            throw ExitCode(ExitStatus.unreadable)
        } catch let e as ServiceGroupError {
            // Another service failed (the API could not listen, …): one line, the group's own words.
            Log.error("\(e)")
            throw ExitCode(ExitStatus.usage)
        } catch {
            Log.error("\(error)")
            throw ExitCode(ExitStatus.usage)
        }
    }
}

/// Calls printed on standard output, as JSON Lines or table rows.
final class StandardOutputSink: CallSink {
    let sinkName = "standard output"
    private let format: OutputFormat
    private let out = OutputStream()
    init(format: OutputFormat) { self.format = format }
    func write(_ calls: [CallRecord]) {
        for c in calls { out.line(format == .table ? CallTable.row(c) : CallJSON.line(c)) }
    }
    func flush() { out.flush() }
}


