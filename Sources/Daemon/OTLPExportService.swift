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
        // The cursor, once the database gives it (a busy or locked database is waited out).
        var cursor: Int64 = 0
        var backoff = OTLPBackoff()
        while true {
            do {
                let state = try store.exportState(Self.cursorName)
                cursor = state.lastId
                if state.pending > 0 { logger.notice("OTLP export: \(state.pending) stored calls still to export") }
                break
            } catch {
                if backoff.failures == 0 { logger.error("OTLP export: cannot read its cursor from the database: \(error); retrying") }
                await pause(backoff.next(serverSays: nil))
                if Task.isShuttingDownGracefully || Task.isCancelled {
                    await client.shutdown()
                    return
                }
            }
        }
        backoff.reset()
        var failing: String?
        var lastMetrics = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            switch await exportBatch(after: &cursor, timeout: 15) {
            case .idle:
                await pause(0.25)
            case .progress:
                if failing != nil {
                    logger.notice("OTLP export: the collector takes spans again")
                    failing = nil
                }
                backoff.reset()
            case .failed(let after, let reason):
                // Said when it starts and when the reason changes, not on every retry.
                if failing != reason { logger.warning("OTLP export: \(reason); retrying (calls wait in the database)") }
                failing = reason
                await pause(backoff.next(serverSays: after))
            }
            if ContinuousClock.now - lastMetrics >= metricsInterval {
                lastMetrics = ContinuousClock.now
                await sendMetrics(timeout: 15)
            }
        }
        // At shutdown: what the database holds now, within 5 s in all (each request gets what is left),
        // then the metrics. What is left waits in the database for the next start.
        if !Task.isCancelled {
            let deadline = Date().addingTimeInterval(5)
            while deadline.timeIntervalSinceNow > 0.2 {
                guard case .progress = await exportBatch(after: &cursor, timeout: deadline.timeIntervalSinceNow) else { break }
            }
            if deadline.timeIntervalSinceNow > 0.2 { await sendMetrics(timeout: deadline.timeIntervalSinceNow) }
        }
        await client.shutdown()
    }

    enum Step {
        case idle, progress
        case failed(after: Double?, reason: String)
    }

    /// Calls per request; halved (down to one) when the collector answers 413.
    private var currentBatch: Int?

    /// Sends the next batch after the cursor. The cursor moves on a 2xx (spans a partial success names
    /// are counted as rejected), on a 400 (a malformed batch: counted as rejected) and for a single call
    /// too large to take; never on an outage or on an answer that says the endpoint or its credentials
    /// are wrong (a redirect, 401, 403, 404, …), which no batch can get past.
    func exportBatch(after cursor: inout Int64, timeout: Double) async -> Step {
        let size = currentBatch ?? batchSize
        let batch: (calls: [CallRecord], lastId: Int64)
        do {
            batch = try store.calls(afterId: cursor, limit: size)
        } catch {
            return .failed(after: 1, reason: "cannot read calls from the database: \(error)")
        }
        guard !batch.calls.isEmpty else { return .idle }
        let (body, spans) = OTLPTraceRequest.encode(batch.calls, resource: configuration.resource, version: version)
        let answer: OTLPClient.Answer = spans > 0
            ? await client.post(body, to: configuration.tracesURL, timeout: timeout) : .delivered(rejectedSpans: 0)
        var delivered = 0, rejected = 0
        switch answer {
        case .delivered(let dropped):
            rejected = min(dropped, spans)
            delivered = spans - rejected
            if rejected > 0 { logger.warning("OTLP export: the collector dropped \(rejected) of \(spans) spans (partial success)") }
        case .tooLarge:
            if size > 1 {
                currentBatch = max(1, size / 2)
                logger.notice("OTLP export: the collector said a request of \(size) spans was too large; sending \(currentBatch!) at a time")
                return .progress
            }
            logger.error("OTLP export: the collector refused one call as too large; it is counted as rejected")
            rejected = spans
        case .rejected(let reason):
            logger.error("OTLP export: the collector refused \(spans) spans as malformed (\(reason)); they are counted as rejected")
            try? store.recordExportFailure(Self.cursorName, error: reason)
            rejected = spans
        case .refused(let reason):
            try? store.recordExportFailure(Self.cursorName, error: reason)
            return .failed(after: 30, reason: "\(OTLPClient.shown(configuration.tracesURL)) answered \(reason): check the endpoint and its headers")
        case .retry(let after, let reason):
            try? store.recordExportFailure(Self.cursorName, error: reason)
            return .failed(after: after, reason: "\(OTLPClient.shown(configuration.tracesURL)): \(reason)")
        }
        do {
            try store.advanceExport(Self.cursorName, to: batch.lastId, delivered: delivered, rejected: rejected, at: Self.now())
        } catch {
            // Not moved: the batch is sent again (recognisable by its span ids).
            return .failed(after: 1, reason: "cannot move the export cursor: \(error)")
        }
        cursor = batch.lastId
        if delivered > 0 { for r in batch.calls { metrics.record(r) } }
        lock.withLock { _exported += delivered }
        return .progress
    }

    /// Cumulative metrics, sent every interval once there are any (so series do not go stale while the
    /// host is quiet); a failed post is made good by the next one.
    func sendMetrics(timeout: Double) async {
        guard metrics.hasData else { return }
        let body = metrics.encode(resource: configuration.resource, version: version, now: UInt64(Self.now()))
        _ = await client.post(body, to: configuration.metricsURL, timeout: timeout)
    }
}
