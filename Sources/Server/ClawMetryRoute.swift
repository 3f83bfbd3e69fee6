import CallModel
import ClawMetry
import Hummingbird
import Storage

/// `GET /api/local/external-calls`: calls as ClawMetry's own read API answers its `external_calls`
/// shape — `{rows, count, _shape}` with the rows of `query_external_calls` — so a ClawMetry page can read
/// calltap's calls directly, with the session calltap decided rather than ClawMetry's time window.
/// Rows are the calls that make a ClawMetry line (the kind → line table of the README), newest first.
///
/// Its parameters follow ClawMetry's: `session_id`, `since`, `until` (ISO-8601 or epoch seconds, on the
/// call's start), `limit` (default 200, clamped to 1…2000). An empty parameter is ignored and `limit`
/// out of range is clamped — the one exception to the API's 400 rule, as ClawMetry's callers expect;
/// an unknown parameter, a repeated one or an unreadable value is still a 400.
struct ClawMetryRoute: Sendable {
    let store: CallStore
    static let known: Set<String> = ["session_id", "since", "until", "limit"]
    /// Calls looked at per request at most (a window full of calls that make no line stops here).
    static let maxScanned = 20_000

    func rows(_ q: QueryParameters) -> Response {
        do {
            try CallsAPI.checkKnown(q, Self.known)
            // Empty values are ignored, as ClawMetry's own route does.
            let given = QueryParameters(pairs: q.pairs.filter { !$0.1.isEmpty })
            var f = CallStore.PageFilter()
            f.session = try CallsAPI.session(given)
            f.since = try CallsAPI.time(given, "since")
            f.until = try CallsAPI.time(given, "until")
            var limit = 200
            if let l = try CallsAPI.text(given, "limit") {
                guard let n = Int(l) else { throw CallsAPI.BadRequest(message: "limit must be an integer (clamped to 1…2000)") }
                limit = max(1, min(2000, n))
            }
            let lines = ClawMetryLines(includeLLM: true, environment: [:])
            var rows: [String] = []
            var scanned = 0
            while rows.count < limit && scanned < Self.maxScanned {
                f.limit = min(1000, max(100, (limit - rows.count) * 2))
                let page = try store.page(f)
                for r in page.calls where rows.count < limit {
                    if let row = lines.row(r, source: ClawMetryLines.defaultSource(r)) { rows.append(row) }
                }
                scanned += page.calls.count
                guard let next = page.next else { break }
                f.before = next
            }
            return JSONResponse.ok("{\"rows\":[" + rows.joined(separator: ",") + "],\"count\":\(rows.count),\"_shape\":\"external_calls\",\"_via\":\"calltap\"}")
        } catch let e as CallsAPI.BadRequest {
            return JSONResponse.error(.badRequest, e.message)
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }
}

/// `--cors-origin ORIGIN`: a page served from that origin (ClawMetry's, on another port) may read the
/// API. Only that exact origin is answered; preflights (for the `Authorization` header) are answered
/// before the token check, and allow only `GET` and `HEAD`.
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let origin: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let given = request.headers[.origin], given == origin else { return try await next(request, context) }
        if request.method == .options {
            var r = Response(status: .noContent)
            r.headers[.accessControlAllowOrigin] = origin
            r.headers[.accessControlAllowMethods] = "GET, HEAD"
            r.headers[.accessControlAllowHeaders] = "Authorization"
            r.headers[.accessControlMaxAge] = "600"
            r.headers[.vary] = "Origin"
            return r
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.vary] = "Origin"
        return response
    }
}
