import CallModel
import Foundation
import Logging

/// Buffered writes to standard output and one-line messages to standard error.
final class OutputStream {
    private var buffer: [UInt8] = []
    private let handle: FileHandle

    init(_ handle: FileHandle = .standardOutput) {
        self.handle = handle
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    func line(_ s: String) {
        write(s)
        write("\n")
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        handle.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    deinit { flush() }
}

/// Messages go through swift-log: one line each on stderr, `calltap: <message>` (with the level for
/// anything but errors and notices), so errors stay one clear line and a daemon's journal gets levels.
enum Log {
    static let logger: Logger = {
        LoggingSystem.bootstrap { label in OneLineLogHandler(label: label) }
        return Logger(label: "calltap")
    }()

    static func error(_ message: String) {
        logger.error("\(message)")
    }

    static func info(_ message: String) {
        logger.notice("\(message)")
    }

    static func progress(_ message: String) {
        FileHandle.standardError.write(Data("\r\u{1B}[K\(message)".utf8))
    }

    static var stderrIsTTY: Bool { isatty(2) != 0 }
}

/// The human-readable table: one row per call, then a per-host summary.
enum CallTable {
    static func row(_ r: CallRecord) -> String {
        let time = String(Timestamps.iso8601(r.ts).dropFirst(11).dropLast(4)) // HH:MM:SS.mmm
        let status = r.statusCode.map(String.init) ?? (r.dnsRcode ?? "-")
        let what: String
        switch r.kind {
        case .http: what = "\(r.method ?? "?") \(r.path ?? "")"
        case .tls: what = [r.tlsVersion.map { "TLS " + $0 }, r.alpn].compactMap { $0 }.joined(separator: " ")
        case .dns: what = "\(r.dnsQtype ?? "?") \(r.dnsAnswers?.first ?? "")"
        case .connect, .quic: what = "\(r.serverIp ?? ""):\(r.serverPort.map(String.init) ?? "")"
        }
        let latency = r.latencyMicros.map { Timestamps.millisText($0) } ?? "-"
        let outcome = r.outcome == .ok ? "ok" : "\(r.outcome.rawValue)\(r.error.map { " (\($0))" } ?? "")"
        let e = Printable.escape
        return [pad(time, 12), pad(r.kind.rawValue, 7), pad(e(r.host ?? r.serverIp ?? "-"), 28), pad(e(status), 8),
                pad(latency, 11, right: true), "  " + pad(String(e(what).prefix(48)), 48), e(outcome)].joined(separator: " ")
    }

    static var header: String {
        [pad("time", 12), pad("kind", 7), pad("host", 28), pad("status", 8), pad("latency_ms", 11, right: true),
         "  " + pad("request", 48), "outcome"].joined(separator: " ")
    }

    /// Per host: calls, failures, and p50/p95 latency over `kind: http` calls.
    static func summary(_ records: [CallRecord]) -> [String] {
        var byHost: [String: (calls: Int, failures: Int, latencies: [Int64])] = [:]
        for r in records {
            let host = r.host ?? r.serverIp ?? "-"
            var e = byHost[host] ?? (0, 0, [])
            e.calls += 1
            if r.isFailure { e.failures += 1 }
            if r.kind == .http, let l = r.latencyMicros { e.latencies.append(l) }
            byHost[host] = e
        }
        var lines = ["", "per host:", [pad("host", 32), pad("calls", 6, right: true), pad("failures", 9, right: true),
                                       pad("p50_ms", 10, right: true), pad("p95_ms", 10, right: true)].joined(separator: " ")]
        for (host, e) in byHost.sorted(by: { $0.value.calls != $1.value.calls ? $0.value.calls > $1.value.calls : $0.key < $1.key }) {
            let sorted = e.latencies.sorted()
            let p50 = percentile(sorted, 0.50).map { Timestamps.millisText($0) } ?? "-"
            let p95 = percentile(sorted, 0.95).map { Timestamps.millisText($0) } ?? "-"
            lines.append([pad(Printable.escape(host), 32), pad(String(e.calls), 6, right: true), pad(String(e.failures), 9, right: true),
                          pad(p50, 10, right: true), pad(p95, 10, right: true)].joined(separator: " "))
        }
        return lines
    }

    /// Nearest-rank percentile.
    static func percentile(_ sorted: [Int64], _ p: Double) -> Int64? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }

    static func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        guard s.count < width else { return s }
        let fill = String(repeating: " ", count: width - s.count)
        return right ? fill + s : s + fill
    }
}

/// `calltap: message` on stderr; levels below notice and above error are named.
struct OneLineLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .notice
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let tag = label == "calltap" ? "calltap" : "calltap [\(label)]"
        let prefix = (event.level == .error || event.level == .notice) ? "" : "\(event.level): "
        // One line each, whatever a message quotes (a registry line, a host): controls are made visible.
        FileHandle.standardError.write(Data("\(tag): \(prefix)\(Printable.escape("\(event.message)"))\n".utf8))
    }
}
