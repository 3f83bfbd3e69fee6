import CallModel
import Foundation
import Logging
import OTLP
import OTLPHTTP
import ServiceLifecycle
import Storage

/// OTLP export for `capture`, with the database as the buffer: calls are read from SQLite behind a
/// cursor (`export_cursor`, name `otlp`) that moves only when the collector answers 2xx, so an outage
/// (refused, 5xx, 429 with Retry-After), a restart or a kill -9 loses nothing: the export resumes from
/// the cursor, and a batch in flight when the daemon died is sent again (at least once; the span ids are
/// derived from the calls, so a resend is recognisable). Metrics are cumulative over the calls this run
/// exported, posted every `metricsInterval` and at shutdown.
public final class OTLPExportService: Service, @unchecked Sendable {
    public static let cursorName = "otlp"
    let store: CallStore
    let configuration: OTLPConfiguration
    let client: OTLPClient
    let version: String
    let logger: Logger
    let batchSize: Int
    let metricsInterval: Duration
    let metrics: OTLPMetrics
    private let lock = NSLock()
    private var _exported = 0

    public init(store: CallStore, configuration: OTLPConfiguration, version: String, logger: Logger,
                batchSize: Int = OTLPBatchExporter.batchSize, metricsInterval: Duration = .seconds(10)) {
        self.store = store
        self.configuration = configuration
        self.version = version
        self.logger = logger
        self.batchSize = batchSize
        self.metricsInterval = metricsInterval
        client = OTLPClient(headers: configuration.headers)
        metrics = OTLPMetrics(start: UInt64(Date().timeIntervalSince1970 * 1e9))
    }

    /// Spans delivered by this run.
    public var exported: Int { lock.withLock { _exported } }

    private static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

    /// Sleeps up to `seconds`, waking early at shutdown.
    private func pause(_ seconds: Double) async {
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < end && !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    public func run() async throws {
        var cursor: Int64
        do {
            let state = try store.exportState(Self.cursorName)
            cursor = state.lastId
            if state.pending > 0 { logger.notice("OTLP export: \(state.pending) stored calls still to export") }
        } catch {
            logger.error("OTLP export: cannot read its cursor from the database: \(error)")
            return
        }
        var backoff = OTLPBackoff()
        var failing = false
        var lastMetrics = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            switch await exportBatch(after: &cursor) {
            case .idle:
                await pause(0.25)
            case .progress:
                if failing {
                    logger.notice("OTLP export: the collector takes spans again")
                    failing = false
                }
                backoff.reset()
            case .failed(let after, let reason):
                if !failing { logger.warning("OTLP export: \(reason); retrying (calls wait in the database)") }
                failing = true
                await pause(backoff.next(serverSays: after))
            }
            if ContinuousClock.now - lastMetrics >= metricsInterval {
                lastMetrics = ContinuousClock.now
                await sendMetrics()
            }
        }
        // At shutdown: what the database holds now, for a few seconds, then the metrics. What is left
        // waits in the database for the next start.
        if !Task.isCancelled {
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                guard case .progress = await exportBatch(after: &cursor) else { break }
            }
            await sendMetrics()
        }
        await client.shutdown()
    }

    enum Step {
        case idle, progress
        case failed(after: Double?, reason: String)
    }

    /// Sends the next batch after the cursor, moving it on a 2xx (or a rejection, which retrying will not change).
    func exportBatch(after cursor: inout Int64) async -> Step {
        let batch: (calls: [CallRecord], lastId: Int64)
        do {
            batch = try store.calls(afterId: cursor, limit: batchSize)
        } catch {
            return .failed(after: 1, reason: "cannot read calls from the database: \(error)")
        }
        guard !batch.calls.isEmpty else { return .idle }
        let (body, spans) = OTLPTraceRequest.encode(batch.calls, resource: configuration.resource, version: version)
        let answer: OTLPClient.Answer = spans > 0 ? await client.post(body, to: configuration.tracesURL) : .delivered
        switch answer {
        case .delivered:
            do {
                try store.advanceExport(Self.cursorName, to: batch.lastId, delivered: spans, rejected: 0, at: Self.now())
            } catch {
                // Not moved: the batch is sent again (recognisable by its span ids).
                return .failed(after: 1, reason: "cannot move the export cursor: \(error)")
            }
            cursor = batch.lastId
            for r in batch.calls { metrics.record(r) }
            lock.withLock { _exported += spans }
            return .progress
        case .rejected(let reason):
            logger.error("OTLP export: the collector refused \(spans) spans (\(reason)); they are counted as rejected")
            try? store.recordExportFailure(Self.cursorName, error: reason)
            try? store.advanceExport(Self.cursorName, to: batch.lastId, delivered: 0, rejected: spans, at: Self.now())
            cursor = batch.lastId
            return .progress
        case .retry(let after, let reason):
            try? store.recordExportFailure(Self.cursorName, error: reason)
            return .failed(after: after, reason: "\(configuration.tracesURL.absoluteString): \(reason)")
        }
    }

    func sendMetrics() async {
        guard metrics.hasNews else { return }
        let body = metrics.encode(resource: configuration.resource, version: version, now: UInt64(Self.now()))
        // Cumulative: a failed post is made good by the next one.
        if await client.post(body, to: configuration.metricsURL) == .delivered { metrics.markSent() }
    }
}
