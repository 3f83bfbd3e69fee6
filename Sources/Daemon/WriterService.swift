import CallModel
import Foundation
import Logging
import ServiceLifecycle
import Storage

/// The writer stage: every quarter second it takes the attributed calls and hands them to every sink
/// (the database first), records per-interval capture statistics, and logs a status line. It is the
/// last service to stop: on graceful shutdown, once capture and attribution have drained, it writes what
/// is left, flushes every sink and reports anything not stored.
public final class WriterService: Service, @unchecked Sendable {
    private let input: StageQueue<CallRecord>
    private let sinks: [any CallSink]
    private let store: CallStore?
    private let writer: CallWriter?
    private let statistics: @Sendable () -> [(String, CaptureStats)]
    private let statsInterval: Duration
    private let showStatus: Bool
    private let logger: Logger
    private let lock = NSLock()
    private var _written = 0
    private var lastStats: [String: CaptureStats] = [:]
    private var lastStatsTime = ContinuousClock.now
    private var reportedSinkFailures: Set<String> = []

    init(input: StageQueue<CallRecord>, sinks: [any CallSink], store: CallStore?, writer: CallWriter?,
         statistics: @escaping @Sendable () -> [(String, CaptureStats)], statsInterval: Duration, showStatus: Bool,
         logger: Logger) {
        self.input = input
        self.sinks = sinks
        self.store = store
        self.writer = writer
        self.statistics = statistics
        self.statsInterval = statsInterval
        self.showStatus = showStatus
        self.logger = logger
    }

    /// Calls handed to the sinks so far.
    public var written: Int { lock.withLock { _written } }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Four times a second, or as soon as a quarter of the queue is waiting (a burst: thousands of
            // connections finishing at once), so the attribution stage rarely waits for room.
            for _ in 0..<25 {
                if input.count >= input.capacity / 4 || Task.isShuttingDownGracefully { break }
                try? await Task.sleep(for: .milliseconds(10))
            }
            drain(final: false)
        }
        // Cancelled (a service failed, e.g. a capture could not start): write what there is, but no final
        // statistics or status line for a run that did not happen.
        drain(final: !Task.isCancelled, cancelled: Task.isCancelled)
    }

    private func drain(final: Bool, cancelled: Bool = false) {
        let calls = input.take()
        // Calls the database refused are tried again every tick, not only when new ones come.
        if calls.isEmpty, let writer, writer.held > 0 { try? writer.flush() }
        if cancelled {
            if !calls.isEmpty { for sink in sinks { try? sink.write(calls); try? sink.flush() } }
            return
        }
        if !calls.isEmpty {
            for sink in sinks {
                do {
                    try sink.write(calls)
                    try sink.flush()
                    reportedSinkFailures.remove(sink.sinkName)
                } catch {
                    if reportedSinkFailures.insert(sink.sinkName).inserted && !(sink is CallWriter) {
                        logger.error("cannot write to the \(sink.sinkName): \(error)")
                    }
                }
            }
            lock.withLock { _written += calls.count }
        }
        if final {
            for sink in sinks { try? sink.flush() }
        }
        let now = ContinuousClock.now
        guard final || now - lastStatsTime >= statsInterval else { return }
        lastStatsTime = now
        let wall = Int64(Date().timeIntervalSince1970 * 1e9)
        var parts: [String] = []
        let stats = statistics()
        for (target, s) in stats {
            if let store {
                try? store.recordStats(s.delta(since: lastStats[target] ?? CaptureStats()), source: target, at: wall)
            }
            lastStats[target] = s
            parts.append("\(target): \(s.packets) packets, \(s.kernelDrops) drops, \(s.unattributedConnections) unattributed")
        }
        if showStatus || final {
            let notStored = stats.reduce(0) { $0 + $1.1.callsNotStored } + (final ? writer?.held ?? 0 : 0)
            let line = "\(written) calls; " + parts.joined(separator: "; ")
                + (notStored > 0 ? "; \(notStored) calls not stored (database errors or full queues)" : "")
            logger.notice("\(line)")
        }
    }
}

/// Something done every `interval` until shutdown (following the registry and key logs, pruning the
/// database), once more at the end when `atShutdown` is set.
public final class PeriodicService: Service, @unchecked Sendable {
    private let interval: Duration
    private let atShutdown: Bool
    private let body: @Sendable () -> Void

    public init(every interval: Duration, atShutdown: Bool = false, _ body: @escaping @Sendable () -> Void) {
        self.interval = interval
        self.atShutdown = atShutdown
        self.body = body
    }

    public func run() async throws {
        var last = ContinuousClock.now - interval
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if ContinuousClock.now - last >= interval {
                last = ContinuousClock.now
                body()
            }
            // Short naps, so a shutdown never waits a whole interval.
            try? await Task.sleep(for: .milliseconds(100))
        }
        if atShutdown { body() }
    }
}
