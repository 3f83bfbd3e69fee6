import CallModel
import Foundation
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

    public init() {}

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

    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
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
    router.add(middleware: BearerTokenMiddleware(token: options.token))
    router.get("/healthz") { _, _ in JSONResponse.ok(#"{"status":"ok"}"#) }
    router.get("/api/external-calls") { request, _ in api.calls(request.queryParameters) }
    router.get("/api/external-calls/summary") { request, _ in api.summary(request.queryParameters) }
    router.get("/api/sessions") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? api.sessions()
    }
    router.get("/api/stats") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? api.stats()
    }
    router.get("/metrics") { request, _ in
        CallsAPI.refuseParameters(request.queryParameters) ?? metrics.scrape()
    }
    router.get("/openapi.json") { _, _ in
        JSONResponse.bytes(PackageResources.openapi_json, contentType: "application/json")
    }
    router.get("/") { _, _ in
        JSONResponse.bytes(PackageResources.index_html, contentType: "text/html; charset=utf-8")
    }
    return Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port),
                                                            serverName: "calltap"))
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
