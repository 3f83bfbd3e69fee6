import Analysers
import CallModel
import Core
import Decode
import Source
import Foundation
import Logging
import Pipeline
import ServiceLifecycle

/// What the attribution stage learns from a capture thread, in order: a connection opened (its owner is
/// looked up at once, while the socket exists), and calls finished.
public enum AttributionEvent: Sendable {
    case opened(client: IPAddress, clientPort: UInt16, server: IPAddress, serverPort: UInt16, at: Int64)
    case call(CallRecord)
    /// After the connection's last call: its owner can be forgotten.
    case closed(client: IPAddress, clientPort: UInt16, server: IPAddress, serverPort: UInt16)
}

/// One capture target as a service: its own OS thread (setns applies to the calling thread only, so it
/// never runs inside a Swift task) reads packets — live inside a network namespace, or from a capture
/// file — and runs the analysis pipeline; calls and new connections go to the attribution stage.
/// Graceful shutdown stops the capture, finishes every open connection and returns.
public final class CaptureService: Service, @unchecked Sendable {
    public struct Rotation: Sendable {
        public var directory: String
        public var maxBytes: Int
        public var maxFiles: Int
        public init(directory: String, maxBytes: Int, maxFiles: Int) {
            self.directory = directory
            self.maxBytes = maxBytes
            self.maxFiles = maxFiles
        }
    }

    public enum Source: Sendable {
        /// Live, inside the namespace at `namespacePath` (nil: where the process is).
        case live(namespacePath: String?, options: LiveCaptureOptions, rotation: Rotation?)
        /// A .pcap/.pcapng file read start to end (the service returns at its end).
        case file(path: String)
    }

    public struct StartError: Error, CustomStringConvertible {
        public var target: String
        public var message: String
        public var description: String { "\(target): \(message)" }
    }

    public let target: String
    public let source: Source
    private var options: AnalysisOptions
    private let events: StageQueue<AttributionEvent>
    private let logger: Logger
    private let lock = NSLock()
    private var stopping = false
    private var live: LiveCapture?
    private var file: PcapFileReader?
    private var latest = CaptureStats()
    private var duplicatePackets = 0
    /// Calls and new-connection events the attribution queue refused (it was full).
    private let refusedCalls = Counter()
    private let refusedOpenings = Counter()
    /// Bumped each time the capture opened its namespace again (it may be a new one): the attribution
    /// stage enters it again too.
    let namespaceGeneration = Counter()

    init(target: String, source: Source, options: AnalysisOptions, events: StageQueue<AttributionEvent>, logger: Logger) {
        self.target = target
        self.source = source
        self.options = options
        self.events = events
        self.logger = logger
    }

    /// Counters so far (published every 4,096 packets and when idle).
    public func statistics() -> CaptureStats { lock.withLock { latest } }

    /// Set when the input has ended (a file read to its end, or a capture stopped).
    private let ended = OneShot<Bool>()

    /// Returns once the input has ended.
    public func waitUntilEnded() async { _ = await ended.wait() }

    /// Set once the capture is open (nil) or could not be opened (why).
    private let startedSignal = OneShot<String?>()

    /// True once the capture is open; false if it could not be (or the task was cancelled).
    public func waitUntilStarted() async -> Bool {
        guard let result = await startedSignal.wait() else { return false }
        return result == nil
    }

    public func run() async throws {
        let started = startedSignal
        let ended = self.ended
        let thread = Thread { [self] in
            threadMain(started: started)
            ended.set(true)
        }
        thread.name = "calltap-capture-\(target)"
        thread.stackSize = 4 << 20
        thread.start()
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                if let result = await started.wait(), let error = result {
                    _ = await ended.wait()
                    throw StartError(target: target, message: error)
                }
                _ = await ended.wait()
                // An input that ended by itself (a file) waits for the group's shutdown, so the services
                // stop in their order: the group ends when every input has ended (see `InputsEnded`).
                try? await gracefulShutdown()
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
    }

    /// Stops reading; the thread then finishes the open connections and ends.
    public func stop() {
        let (l, f): (LiveCapture?, PcapFileReader?) = lock.withLock {
            stopping = true
            return (live, file)
        }
        l?.stop()
        f?.stop()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func threadMain(started: OneShot<String?>) {
        let events = self.events, refusedOpenings = self.refusedOpenings
        options.connectionOpened = { client, clientPort, server, serverPort, time in
            if !events.put(.opened(client: client, clientPort: clientPort, server: server, serverPort: serverPort, at: time)) {
                refusedOpenings.add()
            }
        }
        options.connectionClosed = { client, clientPort, server, serverPort in
            // Refused only when the queue is full; the owner map is capped on its own.
            events.put(.closed(client: client, clientPort: clientPort, server: server, serverPort: serverPort))
        }
        switch source {
        case .file(let path):
            readFile(path, started: started)
        case .live(let namespacePath, let liveOptions, let rotation):
            capture(namespacePath: namespacePath, liveOptions: liveOptions, rotation: rotation, started: started)
        }
    }

    /// The pipeline of this target: its calls go to the attribution queue (a full queue drops, counted).
    private func makeAnalyzer() -> Analyzer {
        let events = self.events, refusedCalls = self.refusedCalls
        return Analyzer(options: options) { if !events.put(.call($0)) { refusedCalls.add() } }
    }

    private func readFile(_ path: String, started: OneShot<String?>) {
        let reader: PcapFileReader
        do {
            reader = try PcapFileReader(path: path, filter: nil)
        } catch {
            started.set("\(error)")
            return
        }
        let embedded = DecryptionSecrets.tlsKeyLogs(path: path)
        if !embedded.isEmpty {
            let keyLog = options.keyLog ?? KeyLog()
            for text in embedded { keyLog.add(text: text) }
            options.keyLog = keyLog
        }
        let analyzer = makeAnalyzer()
        var decoder = PacketDecoder(linkType: reader.linkType, fragmentLimits: options.fragments)
        let stopNow = lock.withLock { () -> Bool in
            file = reader
            return stopping
        }
        started.set(nil)
        if !stopNow {
            var sincePublish = 0
            _ = reader.forEach { frame, wireLength, ts in
                if let p = decoder.decode(frame, wireLength: wireLength, timestamp: ts) { analyzer.process(p) }
                sincePublish += 1
                if sincePublish >= 4096 {
                    sincePublish = 0
                    publish(analyzer.statistics(decoder: decoder.counters))
                }
            }
        }
        lock.withLock { file = nil }
        decoder.finish()
        analyzer.finish()
        publish(analyzer.statistics(decoder: decoder.counters))
    }

    private func capture(namespacePath: String?, liveOptions: LiveCaptureOptions, rotation: Rotation?, started: OneShot<String?>) {
        var capture: LiveCapture
        let writer: PcapRotator?
        do {
            if let p = namespacePath { try LiveCapture.enterNetworkNamespace(path: p) }
            capture = try LiveCapture(options: liveOptions)
            writer = try rotation.map {
                try PcapRotator(directory: $0.directory, prefix: "calltap-\(target.replacingOccurrences(of: "/", with: "_"))",
                                linkType: capture.linkType, snaplen: liveOptions.snaplen, maxBytes: $0.maxBytes, maxFiles: $0.maxFiles)
            }
        } catch {
            started.set("\(error)")
            return
        }
        defer { writer?.close() }
        let analyzer = makeAnalyzer()
        var decoder = PacketDecoder(linkType: capture.linkType, fragmentLimits: options.fragments)
        let stopNow = lock.withLock { () -> Bool in
            live = capture
            return stopping
        }
        started.set(nil)
        if stopNow { capture.stop() }
        var sinceStats = 0
        // With -i any the same packet can arrive on several interfaces (veth and bridge).
        var duplicates = liveOptions.interface == "any" ? DuplicateFilter() : nil
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
                if sinceStats >= 4096 {
                    sinceStats = 0
                    self.publish(analyzer.statistics(decoder: decoder.counters), capture)
                }
            }, idle: {
                analyzer.tick(now: Int64(Date().timeIntervalSince1970 * 1e9))
                self.publish(analyzer.statistics(decoder: decoder.counters), capture)
            })
            guard let error, !isStopping else { break }
            // The interface (or the namespace) went away: keep the open connections and open it again every
            // 2 s, since a restarted container brings it back.
            logger.error("\(target): capture stopped: \(error); opening it again every 2 s")
            guard let again = reopen(analyzer, namespacePath: namespacePath, liveOptions: liveOptions) else { break }
            if again.linkType != capture.linkType {
                decoder = PacketDecoder(linkType: again.linkType, fragmentLimits: options.fragments)
            }
            capture = again
            let stopNow = lock.withLock { () -> Bool in
                live = again
                return stopping
            }
            if stopNow { again.stop() }
            namespaceGeneration.add()
            logger.notice("\(target): capture resumed")
        }
        lock.withLock { live = nil }
        decoder.finish()
        analyzer.finish()
        publish(analyzer.statistics(decoder: decoder.counters), capture)
    }

    /// Opens the capture again (re-entering the namespace by its path) every 2 s until it works or the
    /// service is stopped; time keeps passing for the analyser meanwhile.
    private func reopen(_ analyzer: Analyzer, namespacePath: String?, liveOptions: LiveCaptureOptions) -> LiveCapture? {
        while !isStopping {
            for _ in 0..<20 where !isStopping { usleep(100_000) }
            analyzer.tick(now: Int64(Date().timeIntervalSince1970 * 1e9))
            if let p = namespacePath, (try? LiveCapture.enterNetworkNamespace(path: p)) == nil { continue }
            if let c = try? LiveCapture(options: liveOptions) { return c }
        }
        return nil
    }

    private func publish(_ stats: CaptureStats, _ capture: LiveCapture? = nil) {
        var s = stats
        if let k = capture?.stats() { s.kernelDrops = Int(k.kernelDrops + k.interfaceDrops) }
        s.callsNotStored = refusedCalls.value
        s.unattributedConnections = refusedOpenings.value // their owners were never looked up
        lock.withLock {
            s.duplicatePackets = duplicatePackets
            latest = s
        }
    }
}
