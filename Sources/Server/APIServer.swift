import CallModel
import Foundation
import HTTPTypes
import Hummingbird
import Prometheus
import Storage

public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8477
    /// Bearer token required on every route but /healthz; mandatory off loopback.
    public var token: String?
    /// Most distinct host labels in /metrics; the rest are counted under host="other".
    public var maxHostLabels = 50
    /// Host names (besides the listen address and localhost) a browser may use to reach the server when it
    /// has no token (`--allow-host`).
    public var allowedHosts: [String] = []
    /// An origin whose pages may read the API (`--cors-origin`; off when nil).
    public var corsOrigin: String?

    public init() {}

    /// `scheme://host[:port]` and nothing else (it is sent back in a header): http or https, a host of
    /// letters, digits, dots, dashes (or a bracketed IPv6 address), an optional port.
    public static func isOrigin(_ s: String) -> Bool {
        let rest: Substring
        if s.hasPrefix("http://") { rest = s.dropFirst(7) } else if s.hasPrefix("https://") { rest = s.dropFirst(8) } else { return false }
        guard !rest.isEmpty, rest.count <= 255 else { return false }
        return rest.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x2D || c == 0x3A || c == 0x5B || c == 0x5D
        }
    }

    /// "127.0.0.1:8477", "[::1]:8477", ":8477" or "8477".
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            let h = text[..<colon]
            if !h.isEmpty { host = String(h) }
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        return (host, port)
    }

    /// Whether every address `host` resolves to is a loopback address (127.0.0.0/8 or ::1). A name is
    /// resolved first, so "127.example" resolving to 0.0.0.0 is not taken for loopback by its spelling.
    public var isLoopback: Bool {
        let addresses = Self.resolve(host)
        return !addresses.isEmpty && addresses.allSatisfy { $0.hasPrefix("127.") || $0 == "::1" }
    }

    /// The numeric addresses `host` stands for (itself when it is one).
    public static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var out: [String] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(a.pointee.ai_addr, a.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            p = a.pointee.ai_next
        }
        return out
    }

    /// Host header values accepted without a token: the listen address (and what it resolves to),
    /// localhost, loopback literals and `allowedHosts`, each with or without the port.
    var acceptedHostHeaders: Set<String> {
        var names = Set([host.lowercased(), "localhost", "127.0.0.1", "[::1]", "::1"] + allowedHosts.map { $0.lowercased() })
        for a in Self.resolve(host) { names.insert(a.contains(":") ? "[\(a)]" : a) }
        if host.contains(":") { names.insert("[\(host.lowercased())]") }
        return names.union(names.map { "\($0):\(port)" })
    }
}

public enum ServerError: Error, CustomStringConvertible {
    case tokenRequired(String)
    public var description: String {
        switch self {
        case let .tokenRequired(host):
            return "listening on \(host) (not loopback) requires --token: the API would be open to the network"
        }
    }
}

/// Builds the HTTP application: the external-calls API, /metrics, the OpenAPI document and the dashboard.
/// The registry is passed in (rather than bootstrapped globally) so several servers can live in one process.
public func buildApplication(store: CallStore, options: ServerOptions,
                             registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry())
    throws -> some ApplicationProtocol {
    if !options.isLoopback && (options.token ?? "").isEmpty { throw ServerError.tokenRequired(options.host) }
    let api = CallsAPI(store: store)
    let metrics = MetricsExporter(store: store, registry: registry, maxHostLabels: options.maxHostLabels)
    let router = Router()
    // CORS first: a preflight carries no token.
    if let origin = options.corsOrigin { router.add(middleware: CORSMiddleware(origin: origin)) }
    router.add(middleware: BearerTokenMiddleware(token: options.token))
    // Without a token the only protection is that the server is on loopback; a web page on a name that
    // resolves to 127.0.0.1 (DNS rebinding) must still not read it through a browser.
    if (options.token ?? "").isEmpty { router.add(middleware: HostCheckMiddleware(accepted: options.acceptedHostHeaders)) }
    getAndHead(router, "/healthz") { _, _ in JSONResponse.ok(#"{"status":"ok"}"#) }
    getAndHead(router, "/api/external-calls") { request, _ in api.calls(request.queryParameters) }
    getAndHead(router, "/api/external-calls/summary") { request, _ in api.summary(request.queryParameters) }
    getAndHead(router, "/api/external-calls/timeline") { request, _ in api.timeline(request.queryParameters) }
    getAndHead(router, "/api/sessions") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? api.sessions()
    }
    getAndHead(router, "/api/stats") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? api.stats()
    }
    getAndHead(router, "/metrics") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? metrics.scrape()
    }
    let clawmetry = ClawMetryRoute(store: store)
    getAndHead(router, "/api/local/external-calls") { request, _ in clawmetry.rows(request.queryParameters) }
    getAndHead(router, "/openapi.json") { _, _ in
        JSONResponse.bytes(PackageResources.openapi_json, contentType: "application/json")
    }
    getAndHead(router, "/") { _, _ in
        JSONResponse.bytes(PackageResources.index_html, contentType: "text/html; charset=utf-8")
    }
    return Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port),
                                                            serverName: "calltap"))
}

/// A GET route, and the same route for HEAD (its headers, no body).
func getAndHead(_ router: Router<BasicRequestContext>, _ path: RouterPath,
                _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response) {
    router.get(path, use: handler)
    router.head(path) { request, context in
        var response = try await handler(request, context)
        let length = response.body.contentLength
        response.body = .init()
        if let length { response.headers[.contentLength] = String(length) }
        return response
    }
}

/// Requires `Authorization: Bearer <token>` when a token is set; /healthz stays open for probes.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, !token.isEmpty, request.uri.path != "/healthz", request.uri.path != "/" else {
            return try await next(request, context)
        }
        let given = request.headers[.authorization] ?? ""
        guard given == "Bearer " + token else {
            var r = JSONResponse.error(.unauthorized, "missing or wrong bearer token")
            r.headers[.wwwAuthenticate] = "Bearer"
            return r
        }
        return try await next(request, context)
    }
}

/// Refuses requests whose Host header names neither the listen address, localhost nor an allowed host.
struct HostCheckMiddleware<Context: RequestContext>: RouterMiddleware {
    let accepted: Set<String>
    static var hostField: HTTPField.Name { HTTPField.Name("Host")! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let host = request.head.authority ?? request.headers[Self.hostField], !accepted.contains(host.lowercased()) {
            return JSONResponse.error(.forbidden, "Host '\(Printable.escape(String(host.prefix(200))))' is not this server's name; use --allow-host NAME or --token")
        }
        return try await next(request, context)
    }
}

enum JSONResponse {
    static func ok(_ json: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    static func bytes(_ bytes: [UInt8], contentType: String) -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var w = JSONObjectWriter()
        w.string("error", message)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: w.finish())))
    }
}

extension Request {
    var queryParameters: QueryParameters {
        QueryParameters(pairs: uri.queryParameters.map { (String($0.key), String($0.value)) })
    }
}
