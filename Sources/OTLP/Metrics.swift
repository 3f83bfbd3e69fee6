import CallModel

/// Metrics over the exported calls, cumulative since `start`, as OTLP `ExportMetricsServiceRequest`
/// (opentelemetry/proto/collector/metrics/v1/metrics_service.proto):
///
/// | metric | type | unit | attributes |
/// |---|---|---|---|
/// | `http.client.request.duration` | histogram, the conventions' buckets | s | `http.request.method`, `server.address`, `server.port`, `http.response.status_code`, `error.type`, `network.protocol.version` |
/// | `dns.lookup.duration` | histogram, same buckets | s | `dns.question.name`, `error.type` |
/// | `calltap.network.io` | monotonic sum | By | `network.io.direction` (`transmit`, `receive`), `server.address` |
///
/// Bytes come from connection records only (`connect`, `tls`, `quic`: payload each way, TCP or UDP),
/// never from the exchanges inside them, so nothing is counted twice.
///
/// Never a session, a URL or a path as an attribute. Series are capped (`maxSeries` per metric); calls
/// beyond the cap go to one series marked `otel.metric.overflow: true`, as the OpenTelemetry SDKs do.
public final class OTLPMetrics {
    /// https://opentelemetry.io/docs/specs/semconv/http/http-metrics/#metric-httpclientrequestduration
    public static let durationBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
    public static let maxSeries = 2000

    struct Histogram {
        var counts = [UInt64](repeating: 0, count: OTLPMetrics.durationBounds.count + 1)
        var count: UInt64 = 0
        var sum = 0.0
        var min = Double.infinity
        var max = -Double.infinity

        mutating func record(_ seconds: Double) {
            var k = 0
            while k < OTLPMetrics.durationBounds.count && seconds > OTLPMetrics.durationBounds[k] { k += 1 }
            counts[k] += 1
            count += 1
            sum += seconds
            if seconds < min { min = seconds }
            if seconds > max { max = seconds }
        }
    }

    /// A series: its attributes, in a fixed order (so equal sets are equal keys).
    struct SeriesKey: Hashable {
        var values: [String]
    }

    let start: UInt64
    private(set) var httpDurations: [SeriesKey: Histogram] = [:]
    private(set) var dnsDurations: [SeriesKey: Histogram] = [:]
    private(set) var networkIO: [SeriesKey: UInt64] = [:]
    /// Calls counted into the HTTP histogram (for checks and the status line).
    public private(set) var httpCalls = 0

    static let httpKeys = ["http.request.method", "server.address", "server.port", "http.response.status_code", "error.type", "network.protocol.version"]
    static let dnsKeys = ["dns.question.name", "error.type"]
    static let ioKeys = ["network.io.direction", "server.address"]
    static let overflow = SeriesKey(values: [])

    /// `start`: the cumulative series' start, in nanoseconds since the epoch.
    public init(start: UInt64) { self.start = start }

    /// Whether anything was recorded (cumulative series are sent again every interval once there are any).
    public var hasData: Bool { !httpDurations.isEmpty || !dnsDurations.isEmpty || !networkIO.isEmpty }

    private static func bounded<V>(_ map: inout [SeriesKey: V], _ key: SeriesKey, default d: V, _ update: (inout V) -> Void) {
        let k = map[key] != nil || map.count < maxSeries ? key : overflow
        update(&map[k, default: d])
    }

    public func record(_ r: CallRecord) {
        let server = OTLPSpans.serverAddress(r) ?? ""
        let seconds = Double(max(r.latencyMicros ?? 0, 0)) / 1e6
        switch r.kind {
        case .http:
            guard r.latencyMicros != nil else { break }
            let key = SeriesKey(values: [OTLPSpans.method(r), server, r.serverPort.map(String.init) ?? "",
                                         r.statusCode.map(String.init) ?? "", OTLPSpans.errorType(r) ?? "",
                                         OTLPSpans.protocolVersion(r) ?? ""])
            Self.bounded(&httpDurations, key, default: Histogram()) { $0.record(seconds) }
            httpCalls += 1
        case .dns:
            guard r.latencyMicros != nil else { break }
            let key = SeriesKey(values: [r.host ?? "", OTLPSpans.errorType(r) ?? ""])
            Self.bounded(&dnsDurations, key, default: Histogram()) { $0.record(seconds) }
        default: break
        }
        guard r.kind == .connect || r.kind == .tls || r.kind == .quic else { return }
        if let sent = r.bytesSent, sent > 0 {
            Self.bounded(&networkIO, SeriesKey(values: ["transmit", server]), default: 0) { $0 += UInt64(sent) }
        }
        if let received = r.bytesReceived, received > 0 {
            Self.bounded(&networkIO, SeriesKey(values: ["receive", server]), default: 0) { $0 += UInt64(received) }
        }
    }

    private static func attributes(_ key: SeriesKey, names: [String], into w: inout ProtoWriter, field: Int) {
        if key == overflow {
            w.attribute(field, OTLPAttribute("otel.metric.overflow", .bool(true)))
            return
        }
        for (name, value) in zip(names, key.values) where !value.isEmpty {
            if name == "server.port" || name == "http.response.status_code", let n = Int64(value) {
                w.attribute(field, OTLPAttribute(name, .int(n)))
            } else {
                w.attribute(field, OTLPAttribute(name, .string(value)))
            }
        }
    }

    /// The request for everything recorded so far, stamped `now` (nanoseconds since the epoch).
    public func encode(resource: OTLPResource, version: String, now: UInt64) -> [UInt8] {
        var w = ProtoWriter(capacity: 4096)
        // ExportMetricsServiceRequest.resource_metrics = 1
        w.message(1) { rm in
            rm.message(1) { res in for a in resource.attributes { res.attribute(1, a) } }
            // ResourceMetrics.scope_metrics = 2
            rm.message(2) { sm in
                sm.message(1) { scope in
                    scope.string(1, OTLPTraceRequest.scopeName)
                    scope.string(2, version)
                }
                histogram(&sm, name: "http.client.request.duration", description: "Duration of HTTP client requests.",
                          series: httpDurations, names: Self.httpKeys, now: now)
                histogram(&sm, name: "dns.lookup.duration", description: "Duration of DNS lookups, query to answer.",
                          series: dnsDurations, names: Self.dnsKeys, now: now)
                if !networkIO.isEmpty {
                    // Metric { name 1; description 2; unit 3; Sum sum = 7 }
                    sm.message(2) { m in
                        m.string(1, "calltap.network.io")
                        m.string(2, "Payload bytes each way on connections, per server.")
                        m.string(3, "By")
                        // Sum { repeated NumberDataPoint data_points = 1; temporality = 2; is_monotonic = 3 }
                        m.message(7) { sum in
                            for (key, value) in networkIO.sorted(by: { $0.key.values.lexicographicallyPrecedes($1.key.values) }) {
                                // NumberDataPoint { start 2; time 3; as_int 6 (sfixed64); attributes 7 }
                                sum.message(1) { p in
                                    p.fixed64(2, start)
                                    p.fixed64(3, now)
                                    p.fixed64(6, value)
                                    Self.attributes(key, names: Self.ioKeys, into: &p, field: 7)
                                }
                            }
                            sum.uint(2, 2) // AGGREGATION_TEMPORALITY_CUMULATIVE
                            sum.bool(3, true)
                        }
                    }
                }
            }
        }
        return w.bytes
    }

    private func histogram(_ sm: inout ProtoWriter, name: String, description: String, series: [SeriesKey: Histogram],
                           names: [String], now: UInt64) {
        guard !series.isEmpty else { return }
        sm.message(2) { m in
            m.string(1, name)
            m.string(2, description)
            m.string(3, "s")
            // Histogram { repeated HistogramDataPoint data_points = 1; temporality = 2 }
            m.message(9) { h in
                for (key, value) in series.sorted(by: { $0.key.values.lexicographicallyPrecedes($1.key.values) }) {
                    // HistogramDataPoint { start 2; time 3; count 4; sum 5; bucket_counts 6; explicit_bounds 7;
                    // attributes 9; min 11; max 12 }
                    h.message(1) { p in
                        p.fixed64(2, start)
                        p.fixed64(3, now)
                        p.fixed64(4, value.count)
                        p.double(5, value.sum)
                        p.packedFixed64(6, value.counts)
                        p.packedDouble(7, Self.durationBounds)
                        Self.attributes(key, names: names, into: &p, field: 9)
                        if value.count > 0 {
                            p.double(11, value.min)
                            p.double(12, value.max)
                        }
                    }
                }
                h.uint(2, 2) // AGGREGATION_TEMPORALITY_CUMULATIVE
            }
        }
    }
}
