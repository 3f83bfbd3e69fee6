import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OTLP

/// Posts OTLP/HTTP protobuf requests (https://opentelemetry.io/docs/specs/otlp/#otlphttp) and sorts the
/// answer:
/// - 2xx: delivered (a partial success names the spans the collector dropped);
/// - 408, 429, 5xx, a refused or dropped connection, a timeout: worth retrying, after `Retry-After`
///   when the server gives one;
/// - 413: the batch is too large (the caller splits it);
/// - 400: this batch is malformed, retrying it will not help;
/// - any other status (a redirect, 401, 403, 404, …): the endpoint or its credentials are wrong, which
///   no batch can get past; the caller waits and says so rather than dropping calls.
/// Requests run on AsyncHTTPClient's event loops; `postBlocking` waits on a future from a thread of the
/// caller's own (never a task), so it needs no thread of Swift's cooperative pool.
public final class OTLPClient: Sendable {
    public enum Answer: Equatable, Sendable {
        case delivered(rejectedSpans: Int)
        case retry(after: Double?, reason: String)
        case tooLarge
        case rejected(reason: String)
        case refused(reason: String)
    }

    private let http: HTTPClient
    private let headers: HTTPHeaders
    public static let maxResponseBytes = 1 << 20

    public init(headers: [(String, String)]) {
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(5), read: .seconds(15))
        // A redirect would send the calls somewhere the operator did not name.
        c.redirectConfiguration = .disallow
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
        var h = HTTPHeaders()
        h.add(name: "Content-Type", value: "application/x-protobuf")
        h.add(name: "User-Agent", value: "calltap")
        for (k, v) in headers { h.replaceOrAdd(name: k, value: v) }
        self.headers = h
    }

    /// One attempt, answered within `timeout` seconds (at most 15).
    private func start(_ body: [UInt8], to url: URL, timeout: Double) -> EventLoopFuture<Answer> {
        let loop = http.eventLoopGroup.any()
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: url.absoluteString, method: .POST, headers: headers,
                                             body: .byteBuffer(ByteBuffer(bytes: body)))
        } catch {
            return loop.makeSucceededFuture(.refused(reason: "cannot make a request to \(Self.shown(url)): \(error)"))
        }
        let deadline = NIODeadline.now() + .milliseconds(Int64(max(0.1, min(timeout, 15)) * 1000))
        let task = http.execute(request: request, delegate: ResponseAccumulator(request: request, maxBodySize: Self.maxResponseBytes),
                                deadline: deadline)
        return task.futureResult.map { response in
            Self.classify(status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"),
                          body: response.body.map { Array($0.readableBytesView) } ?? [])
        }.recover { error in
            .retry(after: nil, reason: Self.describe(error))
        }
    }

    static func classify(status code: Int, retryAfter: String?, body: [UInt8]) -> Answer {
        switch code {
        case 200..<300: return .delivered(rejectedSpans: rejectedSpans(body))
        case 408, 429, 500..<600: return .retry(after: retryAfter.flatMap(Self.retryAfter), reason: "HTTP \(code)")
        case 413: return .tooLarge
        case 400: return .rejected(reason: "HTTP 400")
        default: return .refused(reason: "HTTP \(code)")
        }
    }

    /// `ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }` with
    /// `rejected_spans = 1` (int64): what a 2xx says the collector dropped. 0 when absent or unreadable.
    static func rejectedSpans(_ body: [UInt8]) -> Int {
        guard let partial = ProtoReader.messages(body[...], 1).first,
              let rejected = ProtoReader.number(partial, 1) else { return 0 }
        return Int(clamping: Int64(bitPattern: rejected))
    }

    public func post(_ body: [UInt8], to url: URL, timeout: Double = 15) async -> Answer {
        (try? await start(body, to: url, timeout: timeout).get()) ?? .retry(after: nil, reason: "no answer")
    }

    /// The same, for a caller on a thread of its own: blocks until the answer.
    public func postBlocking(_ body: [UInt8], to url: URL, timeout: Double = 15) -> Answer {
        (try? start(body, to: url, timeout: timeout).wait()) ?? .retry(after: nil, reason: "no answer")
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    public func shutdownBlocking() {
        try? http.syncShutdown()
    }

    /// `Retry-After` in seconds (an HTTP date is read as seconds from now), bounded to 5 minutes.
    static func retryAfter(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let s = Double(t), s >= 0, s.isFinite { return min(s, 300) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let d = f.date(from: t) { return min(max(d.timeIntervalSinceNow, 0), 300) }
        return nil
    }

    static func describe(_ error: Error) -> String {
        let text = String(describing: error)
        if text.contains("connectTimeout") || text.contains("readTimeout") || text.contains("deadlineExceeded") { return "timed out" }
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("responseBodyTooLong") || text.contains("TooLong") { return "answer larger than 1 MiB" }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    /// A URL as it may be shown: without a user name or password.
    public static func shown(_ url: URL) -> String {
        guard url.user != nil || url.password != nil, var c = URLComponents(url: url, resolvingAgainstBaseURL: false) else {
            return url.absoluteString
        }
        c.user = nil
        c.password = nil
        return c.url?.absoluteString ?? "(endpoint)"
    }
}

/// Waits between attempts: 0.5 s doubling to 30 s, with jitter, or what the server asked for.
public struct OTLPBackoff: Sendable {
    public private(set) var failures = 0
    public init() {}
    public mutating func next(serverSays: Double?) -> Double {
        failures += 1
        if let s = serverSays { return max(s, 0.1) }
        let base = min(0.5 * pow(2, Double(min(failures - 1, 10))), 30)
        return base * Double.random(in: 0.8...1.2)
    }
    public mutating func reset() { failures = 0 }
}
