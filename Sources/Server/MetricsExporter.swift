import CallModel
import Foundation
import Hummingbird
import Prometheus
import Storage

/// Prometheus exposition of the stored calls and capture counters. Calls are folded in incrementally
/// (by row id) at each scrape; host labels are capped, the rest counted under host="other".
final class MetricsExporter: @unchecked Sendable {
    private let store: CallStore
    private let registry: PrometheusCollectorRegistry
    private let maxHostLabels: Int
    private let lock = NSLock()
    private var lastId: Int64 = 0
    private var hosts: Set<String> = []
    private var stats: [String: Gauge] = [:]
    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    private let calls = MetricNameDescriptor(namespace: "calltap", metricName: "calls", unitName: "total",
                                            helpText: "Calls seen, by host and kind.")
    private let failures = MetricNameDescriptor(namespace: "calltap", subsystem: "call", metricName: "failures", unitName: "total",
                                               helpText: "Failed calls, by host, kind and outcome.")
    private let latency = MetricNameDescriptor(namespace: "calltap", subsystem: "http", metricName: "latency", unitName: "seconds",
                                              helpText: "HTTP call latency, request start to last response byte.")

    init(store: CallStore, registry: PrometheusCollectorRegistry, maxHostLabels: Int) {
        self.store = store
        self.registry = registry
        self.maxHostLabels = maxHostLabels
    }

    func scrape() -> Response {
        lock.lock()
        defer { lock.unlock() }
        do {
            try update()
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: registry.emitToString())))
    }

    private func hostLabel(_ host: String) -> String {
        if hosts.contains(host) { return host }
        if hosts.count < maxHostLabels {
            hosts.insert(host)
            return host
        }
        return "other"
    }

    private func update() throws {
        while true {
            let batch = try store.calls(afterId: lastId)
            for c in batch.calls {
                let host = hostLabel(c.host ?? c.serverIp ?? "unknown")
                let labels = [("host", host), ("kind", c.kind.rawValue)]
                registry.makeCounter(descriptor: calls, labels: labels).increment()
                if c.outcome != .ok {
                    registry.makeCounter(descriptor: failures, labels: labels + [("outcome", c.outcome.rawValue)]).increment()
                }
                if c.kind == .http, let l = c.latencyMicros {
                    registry.makeValueHistogram(descriptor: latency, labels: [("host", host)], buckets: Self.latencyBuckets)
                        .record(Double(l) / 1_000_000)
                }
            }
            lastId = batch.lastId
            if batch.calls.count < 10_000 { break }
        }
        // Export progress (OTLP), from the cursor the exporting daemon keeps in the database.
        let now = Date().timeIntervalSince1970
        for (name, state) in try store.exportStates() {
            let lag = state.oldestPendingTs.map { max(0, now - Double($0) / 1e9) } ?? 0
            let values: [(String, String, Double)] = [
                ("exported_spans", "Calls the collector confirmed.", Double(state.exported)),
                ("failures", "Export attempts that failed (refused, timed out, 5xx, 429).", Double(state.failures)),
                ("rejected_spans", "Calls the collector refused for good (4xx).", Double(state.rejected)),
                ("pruned_unexported", "Calls retention deleted before they were exported.", Double(state.prunedUnexported)),
                ("lag_calls", "Stored calls not exported yet.", Double(state.pending)),
                ("lag_seconds", "Age of the oldest call not exported yet.", lag),
                ("last_success_timestamp_seconds", "When the collector last confirmed a batch.",
                 state.lastSuccessAt.map { Double($0) / 1e6 } ?? 0),
            ]
            for (metric, help, value) in values {
                let key = "export:\(name):\(metric)"
                let gauge = stats[key] ?? registry.makeGauge(descriptor: MetricNameDescriptor(
                    namespace: "calltap", subsystem: "export", metricName: metric, unitName: "", helpText: help),
                    labels: [("exporter", name)])
                stats[key] = gauge
                gauge.set(value)
            }
        }
        for (name, value) in try store.statsTotals() {
            let gauge = stats[name] ?? registry.makeGauge(descriptor: MetricNameDescriptor(
                namespace: "calltap", subsystem: "capture", metricName: name, unitName: "", helpText: "Capture counter \(name)."))
            stats[name] = gauge
            gauge.set(Double(value))
        }
    }
}
