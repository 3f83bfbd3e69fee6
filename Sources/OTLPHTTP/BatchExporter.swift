import CallModel
import Foundation
import OTLP

/// OTLP export for `read`: calls are taken in batches and posted by a thread of their own, so the packet
/// loop goes on while a batch is in flight; when the posting falls behind, `add` waits (the queue holds
/// a few batches), so nothing is dropped. An endpoint that keeps failing is retried with backoff until
/// `timeout` seconds pass without a delivery; then the exporter gives up, says why, and `read` exits 5.
/// Metrics are posted once at the end, over every delivered call.
public final class OTLPBatchExporter: CallSink, @unchecked Sendable {
    public var sinkName: String { "OTLP endpoint" }
    public static let batchSize = 2048
    static let queueDepth = 4

    public struct Outcome: Sendable {
        public var spans = 0
        public var requests = 0
        public var retries = 0
        /// Spans not delivered: refused (400, a partial success, too large alone), or not sent after giving up.
        public var spansNotDelivered = 0
        /// Why the export stopped, when it did.
        public var failure: String?
        public var metricsDelivered = false
        /// Seconds spent encoding and posting, on the exporter's own thread.
        public var busySeconds = 0.0
    }

    private let configuration: OTLPConfiguration
    private let client: OTLPClient
    private let version: String
    private let metrics: OTLPMetrics
    private let condition = NSCondition()
    private var queue: [[CallRecord]] = []
    private var current: [CallRecord] = []
    private var closed = false
    private var finished = false
    private var outcome = Outcome()
    private var thread: Thread?

    public init(configuration: OTLPConfiguration, version: String) {
        self.configuration = configuration
        self.version = version
        client = OTLPClient(headers: configuration.headers)
        metrics = OTLPMetrics(start: UInt64(Date().timeIntervalSince1970 * 1e9))
        current.reserveCapacity(Self.batchSize)
        let t = Thread { [unowned self] in self.loop() }
        t.name = "calltap-otlp"
        thread = t
        t.start()
    }

    /// True once the exporter has given up (every later call is counted as not delivered).
    public var hasFailed: Bool { condition.withLock { outcome.failure != nil } }

    /// Takes every call: the span request leaves out what is not a span (`OTLPSpans.isExported`), while
    /// the metrics count the bytes of those too.
    public func add(_ r: CallRecord) {
        current.append(r)
        if current.count >= Self.batchSize { enqueue() }
    }

    public func write(_ calls: [CallRecord]) throws { for r in calls { add(r) } }
    public func flush() throws { if !current.isEmpty { enqueue() } }

    private func enqueue() {
        let batch = current
        current = []
        current.reserveCapacity(Self.batchSize)
        condition.lock()
        while queue.count >= Self.queueDepth && outcome.failure == nil { condition.wait() }
        if outcome.failure != nil {
            outcome.spansNotDelivered += batch.filter(OTLPSpans.isExported).count
        } else {
            queue.append(batch)
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Sends what is left and the metrics, waits for the thread, and says how it went.
    public func finish() -> Outcome {
        if !current.isEmpty { enqueue() }
        condition.lock()
        closed = true
        condition.broadcast()
        while !finished { condition.wait() }
        let o = outcome
        condition.unlock()
        client.shutdownBlocking()
        return o
    }

    /// Posts `body` until it is delivered, refused, or the endpoint has failed for `timeout` seconds;
    /// each attempt gets at most what is left of that time.
    private func deliver(_ body: [UInt8], to url: URL) -> OTLPClient.Answer {
        var backoff = OTLPBackoff()
        let firstTry = Date()
        while true {
            let left = configuration.timeout - Date().timeIntervalSince(firstTry)
            let answer = client.postBlocking(body, to: url, timeout: max(left, 0.1))
            condition.withLock { outcome.requests += 1 }
            guard case let .retry(after, reason) = answer else { return answer }
            let waited = Date().timeIntervalSince(firstTry)
            if waited >= configuration.timeout {
                return .refused(reason: "\(OTLPClient.shown(url)) did not take the export for \(Int(configuration.timeout.rounded())) s (last: \(reason))")
            }
            // One last try at the deadline, whatever the backoff says.
            let pause = min(backoff.next(serverSays: after), configuration.timeout - waited)
            condition.withLock { outcome.retries += 1 }
            Thread.sleep(forTimeInterval: max(pause, 0.05))
        }
    }

    /// Sends `calls` as one request, or in halves when the endpoint says the request is too large.
    /// Returns spans delivered, spans not delivered, and why the export must stop (if it must).
    private func send(_ calls: ArraySlice<CallRecord>) -> (delivered: Int, lost: Int, stop: String?) {
        let (body, spans) = OTLPTraceRequest.encode(Array(calls), resource: configuration.resource, version: version)
        guard spans > 0 else { return (0, 0, nil) }
        switch deliver(body, to: configuration.tracesURL) {
        case .delivered(let rejected):
            return (spans - min(rejected, spans), min(rejected, spans), nil)
        case .tooLarge:
            guard calls.count > 1 else {
                return (0, spans, nil)
            }
            let mid = calls.startIndex + calls.count / 2
            let a = send(calls[..<mid])
            if a.stop != nil { return (a.delivered, spans - a.delivered, a.stop) }
            let b = send(calls[mid...])
            return (a.delivered + b.delivered, a.lost + b.lost, b.stop)
        case .rejected(let reason):
            return (0, spans, "the OTLP endpoint refused a batch of \(spans) spans (\(reason))")
        case .refused(let reason):
            return (0, spans, reason.hasPrefix("HTTP ")
                ? "\(OTLPClient.shown(configuration.tracesURL)) answered \(reason): check the endpoint and its headers"
                : reason)
        case .retry(_, let reason):
            return (0, spans, reason)
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !closed { condition.wait() }
            if queue.isEmpty && closed {
                condition.unlock()
                break
            }
            let batch = queue.removeFirst()
            condition.broadcast()
            let stopped = outcome.failure != nil
            condition.unlock()
            if stopped { continue }
            let began = Date()
            let (delivered, lost, stop) = send(batch[...])
            condition.withLock {
                outcome.spans += delivered
                outcome.spansNotDelivered += lost
                if delivered > 0 { for r in batch { metrics.record(r) } }
                if let stop {
                    outcome.failure = stop
                    // What is queued behind it will not be sent either.
                    for b in queue { outcome.spansNotDelivered += b.filter(OTLPSpans.isExported).count }
                    queue.removeAll()
                    condition.broadcast()
                }
                outcome.busySeconds += Date().timeIntervalSince(began)
            }
        }
        if !hasFailed && metrics.hasData {
            let began = Date()
            let body = metrics.encode(resource: configuration.resource, version: version,
                                      now: UInt64(Date().timeIntervalSince1970 * 1e9))
            let answer = deliver(body, to: configuration.metricsURL)
            condition.withLock {
                outcome.busySeconds += Date().timeIntervalSince(began)
                switch answer {
                case .delivered: outcome.metricsDelivered = true
                case .rejected(let reason), .refused(let reason), .retry(_, let reason): outcome.failure = "metrics: " + reason
                case .tooLarge: outcome.failure = "metrics: the endpoint said the request was too large"
                }
            }
        }
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }
}
