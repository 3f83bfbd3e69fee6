import AsyncHTTPClient
import Foundation
import OTLP
import NIOCore
import NIOHTTP1

/// Posts OTLP/HTTP protobuf requests (https://opentelemetry.io/docs/specs/otlp/#otlphttp) and sorts the
/// answer the way the specification does: 2xx delivered; 429, 502, 503, 504 (and 408, any other 5xx, a
/// refused or dropped connection, a timeout) worth retrying, after `Retry-After` when the server gives
/// one; any other status a rejection that retrying will not change.
public final class OTLPClient: Sendable {
    public enum Answer: Equatable, Sendable {
        case delivered
        case retry(after: Double?, reason: String)
        case rejected(reason: String)
    }

    private let http: HTTPClient
    private let headers: [(String, String)]

    public init(headers: [(String, String)], requestTimeout: TimeAmount = .seconds(10)) {
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(5), read: requestTimeout)
        // Redirects would re-send the body elsewhere: the endpoint is the endpoint.
        c.redirectConfiguration = .disallow
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
        self.headers = headers
    }

    public func post(_ body: [UInt8], to url: URL) async -> Answer {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-protobuf")
        request.headers.add(name: "User-Agent", value: "calltap")
        for (k, v) in headers { request.headers.replaceOrAdd(name: k, value: v) }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await http.execute(request, timeout: .seconds(15))
            // The body (a partial-success message or an error status) is read and bounded, never kept.
            _ = try? await response.body.collect(upTo: 1 << 20)
            let code = Int(response.status.code)
            switch code {
            case 200..<300: return .delivered
            case 408, 429, 500..<600:
                let after = response.headers.first(name: "Retry-After").flatMap(Self.retryAfter)
                return .retry(after: after, reason: "HTTP \(code)")
            default:
                return .rejected(reason: "HTTP \(code)")
            }
        } catch {
            return .retry(after: nil, reason: Self.describe(error))
        }
    }

    /// `Retry-After` in seconds (an HTTP date is read as seconds from now), bounded to 5 minutes.
    static func retryAfter(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let s = Double(t), s >= 0 { return min(s, 300) }
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
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    /// The same, for a caller on a thread of its own (not a task): blocks until the answer.
    public func postBlocking(_ body: [UInt8], to url: URL) -> Answer {
        let box = AnswerBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            box.set(await self.post(body, to: url))
            done.signal()
        }
        done.wait()
        return box.get()
    }

    public func shutdownBlocking() {
        let done = DispatchSemaphore(value: 0)
        Task {
            await self.shutdown()
            done.signal()
        }
        done.wait()
    }
}

private final class AnswerBox: @unchecked Sendable {
    private let lock = NSLock()
    private var answer: OTLPClient.Answer = .retry(after: nil, reason: "no answer")
    func set(_ a: OTLPClient.Answer) { lock.withLock { answer = a } }
    func get() -> OTLPClient.Answer { lock.withLock { answer } }
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
