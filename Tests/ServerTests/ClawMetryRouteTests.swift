import CallModel
import ClawMetry
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
@testable import Server
import Storage
import Testing

/// The ClawMetry-compatible read route, HEAD on every GET route, and `--cors-origin`.
@Suite struct ClawMetryRouteTests {
    static let columns: Set<String> = ["id", "node_id", "ts", "host", "url", "method", "status_code", "latency_ms", "library",
                                       "source", "cost_usd", "input_tokens", "output_tokens", "model"]

    static func rows(_ r: TestResponse) throws -> [[String: Any]] {
        try APITests.json(r)["rows"] as? [[String: Any]] ?? []
    }

    @Test func rowsAreClawMetrysShapeForEveryExternalCall() async throws {
        let (store, sessions) = try APITests.makeStore()
        let lines = ClawMetryLines(includeLLM: true, environment: [:])
        let expectedA = sessions["agent-a"]!.compactMap { lines.fields($0, source: "x") }
        let expectedAll = sessions.values.joined().compactMap { lines.fields($0, source: "x") }
        #expect(expectedA.count > 5)
        let app = try buildApplication(store: store, options: APITests.options())
        try await app.test(.live) { client in
            let a = try await client.execute(uri: "/api/local/external-calls?session_id=agent-a", method: .get)
            #expect(a.status == .ok)
            let body = try APITests.json(a)
            let rows = try Self.rows(a)
            #expect(body["count"] as? Int == expectedA.count && rows.count == expectedA.count)
            #expect(body["_shape"] as? String == "external_calls")
            for row in rows {
                #expect(Self.columns.isSubset(of: Set(row.keys)), "missing columns in \(row.keys.sorted())")
                #expect(row["library"] as? String == "calltap" && row["session_id"] as? String == "agent-a")
                #expect((row["url"] as? String)?.isEmpty == false && (row["host"] as? String)?.isEmpty == false)
            }
            // The ids are ClawMetry's: sha256(ts + url + library), first 32 hex digits.
            #expect(Set(rows.compactMap { $0["id"] as? String }) == Set(expectedA.map(\.id)))
            // Newest first.
            let ts = rows.compactMap { $0["ts"] as? String }
            #expect(ts.count == rows.count)
            // Empty parameters are ignored; the limit is clamped to 1…2000.
            let all = try await client.execute(uri: "/api/local/external-calls?session_id=&since=&until=&limit=99999", method: .get)
            #expect(try Self.rows(all).count == min(2000, expectedAll.count))
            let one = try await client.execute(uri: "/api/local/external-calls?limit=0", method: .get)
            #expect(try Self.rows(one).count == 1)
            let defaulted = try await client.execute(uri: "/api/local/external-calls", method: .get)
            #expect(try Self.rows(defaulted).count == min(200, expectedAll.count))
            // Still 400: unknown, repeated or unreadable parameters.
            for bad in ["colour=red", "session_id=a&session_id=b", "limit=many", "since=yesterday", "session_id=%1B%5B2J"] {
                let r = try await client.execute(uri: "/api/local/external-calls?\(bad)", method: .get)
                #expect(r.status == .badRequest, "\(bad)")
            }
        }
    }

    @Test func headWhereverGetWorks() async throws {
        let (store, _) = try APITests.makeStore()
        let app = try buildApplication(store: store, options: APITests.options())
        try await app.test(.live) { client in
            for uri in ["/", "/healthz", "/api/external-calls?limit=3", "/api/external-calls/summary", "/api/sessions", "/api/stats",
                        "/metrics", "/openapi.json", "/api/local/external-calls", "/api/stats?bad=1"] {
                let get = try await client.execute(uri: uri, method: .get)
                let head = try await client.execute(uri: uri, method: .head)
                #expect(head.status == get.status, "\(uri)")
                #expect(head.body.readableBytes == 0, "\(uri)")
                #expect(head.headers[.contentLength] == String(get.body.readableBytes), "\(uri)")
                #expect(head.headers[.contentType] == get.headers[.contentType], "\(uri)")
            }
        }
    }

    @Test func corsOnlyForTheNamedOrigin() async throws {
        let (store, _) = try APITests.makeStore()
        var options = APITests.options(token: "s3cret")
        options.corsOrigin = "http://127.0.0.1:8900"
        let app = try buildApplication(store: store, options: options)
        try await app.test(.live) { client in
            // The preflight carries no token and is answered before the token check.
            let pre = try await client.execute(uri: "/api/local/external-calls", method: .options,
                                               headers: [.origin: "http://127.0.0.1:8900", .accessControlRequestMethod: "GET"])
            #expect(pre.status == .noContent)
            #expect(pre.headers[.accessControlAllowOrigin] == "http://127.0.0.1:8900")
            #expect(pre.headers[.accessControlAllowHeaders] == "Authorization")
            let ok = try await client.execute(uri: "/api/stats", method: .get,
                                              headers: [.origin: "http://127.0.0.1:8900", .authorization: "Bearer s3cret"])
            #expect(ok.status == .ok && ok.headers[.accessControlAllowOrigin] == "http://127.0.0.1:8900")
            // Still the token: CORS lets a page read, not skip authentication.
            let noToken = try await client.execute(uri: "/api/stats", method: .get, headers: [.origin: "http://127.0.0.1:8900"])
            #expect(noToken.status == .unauthorized)
            let other = try await client.execute(uri: "/api/stats", method: .get,
                                                 headers: [.origin: "http://evil.test", .authorization: "Bearer s3cret"])
            #expect(other.status == .ok && other.headers[.accessControlAllowOrigin] == nil)
            let otherPre = try await client.execute(uri: "/api/stats", method: .options, headers: [.origin: "http://evil.test"])
            #expect(otherPre.headers[.accessControlAllowOrigin] == nil && otherPre.status != .noContent)
        }
        // Without the flag, no CORS headers at all.
        let plain = try buildApplication(store: store, options: APITests.options())
        try await plain.test(.live) { client in
            let r = try await client.execute(uri: "/api/stats", method: .get, headers: [.origin: "http://127.0.0.1:8900"])
            #expect(r.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test func originsAreOriginsOnly() {
        for good in ["http://127.0.0.1:8900", "https://dash.example.com", "http://[::1]:8900"] { #expect(ServerOptions.isOrigin(good), "\(good)") }
        for bad in ["", "127.0.0.1:8900", "http://", "http://a/b", "http://a\r\nX: y", "javascript:alert(1)", "*", "http://a b"] {
            #expect(!ServerOptions.isOrigin(bad), "\(bad)")
        }
    }
}
