import CallModel
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Pipeline
@testable import Server
import Storage
import Testing

/// The API against a real server on loopback, over a database made from committed captures.
@Suite struct APITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let corpus = root.deletingLastPathComponent().appendingPathComponent("shared/corpus")

    /// Two sessions: the bundled sample as "agent-a", two corpus traces as "agent-b".
    static func makeStore() throws -> (CallStore, [String: [CallRecord]]) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-api-\(UUID().uuidString).db").path
        let store = try CallStore(path: path)
        var bySession: [String: [CallRecord]] = [:]
        let inputs = [("agent-a", root.appendingPathComponent("Samples/agent-demo.pcap").path),
                      ("agent-b", corpus.appendingPathComponent("zeek/http/pipelined-requests.pcap").path),
                      ("agent-b", corpus.appendingPathComponent("zeek/http/wikipedia.pcap").path)]
        for (session, file) in inputs {
            var options = AnalysisOptions()
            options.sessionId = session
            let result = try Analyzer.analyzeFile(file, options: options)
            try store.insert(result.calls)
            try store.recordStats(result.stats, source: file, at: 1)
            bySession[session, default: []] += result.calls
        }
        return (store, bySession)
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any] ?? [:]
    }

    static func options(token: String? = nil) -> ServerOptions {
        var o = ServerOptions()
        o.port = 0
        o.token = token
        return o
    }

    @Test func sessionFilterReturnsExactlyThatSessionsCalls() async throws {
        let (store, sessions) = try Self.makeStore()
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            for (session, calls) in sessions {
                for key in ["session", "session_id"] {
                    let r = try await client.execute(uri: "/api/external-calls?\(key)=\(session)&limit=1000", method: .get)
                    #expect(r.status == .ok)
                    let body = try Self.json(r)
                    let got = body["calls"] as? [[String: Any]] ?? []
                    #expect(body["session"] as? String == session)
                    #expect(body["count"] as? Int == calls.count)
                    #expect(got.count == calls.count && got.allSatisfy { $0["session_id"] as? String == session })
                    #expect(body["next_cursor"] is NSNull)
                    // Each object carries the contract fields, in ClawMetry's names where they exist.
                    #expect(got.first.map { Set($0.keys).isSuperset(of: ["ts", "host", "method", "status_code", "latency_ms", "url"]) } == true)
                }
            }
        }
    }

    @Test func pagingVisitsEveryCallOnceNewestFirst() async throws {
        let (store, sessions) = try Self.makeStore()
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let uri = "/api/external-calls?session=agent-a&limit=4" + (cursor.map { "&before=\($0)" } ?? "")
                let body = try Self.json(try await client.execute(uri: uri, method: .get))
                let calls = body["calls"] as? [[String: Any]] ?? []
                seen += calls.map { "\($0["ts"] ?? "")|\($0["connection_id"] ?? "")|\($0["path"] ?? "")|\($0["kind"] ?? "")" }
                cursor = body["next_cursor"] as? String
                pages += 1
            } while cursor != nil && pages < 50
            let expected = sessions["agent-a"]!.count
            #expect(seen.count == expected && Set(seen).count == expected)
            #expect(pages == (expected + 3) / 4)
            let times = seen.map { String($0.split(separator: "|")[0]) }
            #expect(times == times.sorted(by: >))
        }
    }

    @Test func everyFilter() async throws {
        let (store, sessions) = try Self.makeStore()
        let a = sessions["agent-a"]!
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            func count(_ q: String) async throws -> Int {
                let r = try await client.execute(uri: "/api/external-calls?limit=1000&" + q, method: .get)
                #expect(r.status == .ok, "\(q)")
                return try Self.json(r)["count"] as? Int ?? -1
            }
            let expected1 = a.filter { $0.host == "api.agent.test" }.count
            let got1 = try await count("host=api.agent.test")
            #expect(got1 == expected1, "host=api.agent.test")
            let expected2 = a.filter { $0.outcome != .ok }.count
            let got2 = try await count("session=agent-a&outcome=failed")
            #expect(got2 == expected2, "session=agent-a&outcome=failed")
            let expected3 = sessions.values.joined().filter { $0.outcome == .httpError }.count
            let got3 = try await count("outcome=http_error")
            #expect(got3 == expected3, "outcome=http_error")
            let expected4 = a.filter { $0.method == "POST" }.count
            let got4 = try await count("session=agent-a&method=post")
            #expect(got4 == expected4, "session=agent-a&method=post")
            let mid = a[a.count / 2].ts
            let iso = Timestamps.iso8601(mid)
            let expected5 = a.filter { $0.ts / 1000 >= mid / 1000 }.count
            let got5 = try await count("session=agent-a&since=\(iso)")
            #expect(got5 == expected5, "session=agent-a&since=\(iso)")
            let expected6 = a.filter { $0.ts / 1000 < mid / 1000 }.count
            let got6 = try await count("session=agent-a&until=\(iso)")
            #expect(got6 == expected6, "session=agent-a&until=\(iso)")
            let expected7 = a.count
            let got7 = try await count("session=agent-a&since=\(mid / 1_000_000_000 - 3600)")
            #expect(got7 == expected7, "session=agent-a&since=\(mid / 1_000_000_000 - 3600)") // epoch seconds
            let expected8 = 0
            let got8 = try await count("session=nobody")
            #expect(got8 == expected8, "session=nobody")
        }
    }

    @Test(arguments: ["limit=0", "limit=1001", "limit=abc", "since=yesterday", "until=2024-13-01", "outcome=bogus",
                      "since=999999999999999999999999999999", "until=9999-12-31T23:59:59Z",
                      "before=xyz", "method=GET%20X", "colour=red", "session=a&session=b", "host="])
    func badParametersAre400(query: String) async throws {
        let (store, _) = try Self.makeStore()
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            let r = try await client.execute(uri: "/api/external-calls?" + query, method: .get)
            #expect(r.status == .badRequest)
            #expect((try Self.json(r)["error"] as? String)?.isEmpty == false)
        }
    }

    /// Every route that takes parameters refuses unknown or bad ones; the routes that take none refuse any.
    @Test(arguments: ["/api/external-calls/summary?colour=red", "/api/external-calls/summary?limit=0",
                      "/api/external-calls/summary?since=yesterday", "/api/external-calls/summary?session=a&session=b",
                      "/api/sessions?colour=red", "/api/stats?x=1", "/metrics?x=1"])
    func badParametersAre400OnEveryRoute(uri: String) async throws {
        let (store, _) = try Self.makeStore()
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            let r = try await client.execute(uri: uri, method: .get)
            #expect(r.status == .badRequest)
            #expect((try Self.json(r)["error"] as? String)?.isEmpty == false)
        }
    }

    /// A database that cannot be read is a 503 with a reason on every data route, never a crash.
    @Test func unreadableDatabaseIs503() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-503-\(UUID().uuidString).db").path
        let store = try CallStore(path: path)
        try await store.writer.write { db in try db.execute(sql: "DROP TABLE calls; DROP TABLE capture_stats") }
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            for uri in ["/api/external-calls", "/api/external-calls/summary", "/api/external-calls/timeline", "/api/sessions", "/api/stats", "/metrics"] {
                let r = try await client.execute(uri: uri, method: .get)
                #expect(r.status == .serviceUnavailable, "\(uri)")
            }
        }
    }

    /// A call with every field set to a distinct value comes back from the API unchanged.
    /// Captures of real clients (Scripts/make-wire-captures): IPv6 urls and cut responses come back from
    /// the database as `read` made them, and each new outcome is a filter of its own.
    @Test func ipv6URLsAndCutResponsesThroughTheDatabase() async throws {
        let store = try CallStore.inMemory()
        let dir = Self.root.appendingPathComponent("Tests/Fixtures/captures")
        let calls = try Analyzer.analyzeFile(dir.appendingPathComponent("urls.pcap").path).calls
            + Analyzer.analyzeFile(dir.appendingPathComponent("cut-streams.pcap").path).calls
        try store.insert(calls)
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            func get(_ q: String) async throws -> [[String: Any]] {
                let r = try await client.execute(uri: "/api/external-calls?limit=1000&" + q, method: .get)
                #expect(r.status == .ok, "\(q)")
                return try Self.json(r)["calls"] as? [[String: Any]] ?? []
            }
            let v6 = try await get("host=fd00:213::11")
            #expect(Set(v6.compactMap { $0["url"] as? String }).isSuperset(of: [
                "http://[fd00:213::11]/status/200", "http://[fd00:213::11]:8080/x?q=1", "http://[fd00:213::11]:8080/py"]))
            for (outcome, paths) in [("client_closed", ["/events-curl", "/events-py", "/events-h2"]),
                                     ("server_closed", ["/cut-length", "/cut-chunked", "/half-closed"]),
                                     ("reset", ["/reset-by-server", "/events-reset"]),
                                     ("incomplete", ["/events-held"])] {
                let got = try await get("outcome=\(outcome)")
                #expect(Set(got.compactMap { $0["path"] as? String }) == Set(paths), "\(outcome)")
                #expect(got.allSatisfy { $0["ended_at"] is String } == (outcome != "incomplete"), "\(outcome)")
            }
            let failed = try await get("outcome=failed")
            #expect(failed.count == calls.filter { $0.outcome != .ok }.count && failed.count >= 9)
        }
    }

    @Test func everyFieldSurvivesTheAPI() async throws {
        let store = try CallStore.inMemory()
        let filled = CallFieldFiller.filledRecord()
        try store.insert([filled])
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            let r = try await client.execute(uri: "/api/external-calls", method: .get)
            let calls = try Self.json(r)["calls"] as? [[String: Any]] ?? []
            #expect(calls.count == 1)
            let back = try CallRecord.fromJSONObject(try #require(calls.first))
            #expect(back == filled)
        }
    }

    /// `openapi.json`'s Call schema lists exactly the call's fields, in contract order, with their types.
    @Test func openAPICallSchemaMatchesTheFieldList() throws {
        let spec = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.root.appendingPathComponent("Sources/Server/Assets/openapi.json"))) as? [String: Any]
        let call = try #require(((spec?["components"] as? [String: Any])?["schemas"] as? [String: Any])?["Call"] as? [String: Any])
        let properties = try #require(call["properties"] as? [String: Any])
        #expect(Set(properties.keys) == Set(CallRecord.fieldNames))
        #expect(call["required"] as? [String] == CallRecord.fieldNames)
        // Key order in the committed file is the contract order.
        let text = try String(contentsOf: Self.root.appendingPathComponent("Sources/Server/Assets/openapi.json"), encoding: .utf8)
        let callStart = try #require(text.range(of: "\"Call\": {"))
        let positions = CallRecord.fieldNames.compactMap { text.range(of: "\"\($0)\": {", range: callStart.upperBound..<text.endIndex)?.lowerBound }
        #expect(positions.count == CallRecord.fieldNames.count && positions == positions.sorted())
        let types: [CallFieldDescription.Shape: String] = [.time: "string", .millis: "number", .text: "string", .choice: "string",
                                                          .integer: "integer", .flag: "boolean", .list: "array"]
        for field in CallRecord.fieldList {
            let p = try #require(properties[field.name] as? [String: Any])
            #expect(p["type"] as? String == types[field.shape], "\(field.name)")
            #expect((p["nullable"] as? Bool ?? false) == field.nullable, "\(field.name) nullable")
            if field.shape == .time { #expect(p["format"] as? String == "date-time", "\(field.name)") }
            if field.shape == .choice {
                let words = (p["enum"] as? [Any] ?? []).compactMap { $0 as? String }
                #expect(words == field.choices, "\(field.name) enum")
            }
        }
    }

    @Test func summarySessionsStatsAndHealth() async throws {
        let (store, sessions) = try Self.makeStore()
        let app = try buildApplication(store: store, options: Self.options())
        try await app.test(.live) { client in
            let summary = try Self.json(try await client.execute(uri: "/api/external-calls/summary?session=agent-a", method: .get))
            let hosts = summary["hosts"] as? [[String: Any]] ?? []
            let api = try #require(hosts.first { $0["host"] as? String == "api.agent.test" })
            let calls = sessions["agent-a"]!.filter { $0.host == "api.agent.test" }
            #expect(api["calls"] as? Int == calls.count)
            #expect(api["failures"] as? Int == calls.filter { $0.outcome != .ok }.count)
            #expect((api["p95_ms"] as? Double ?? 0) >= 400) // the /slow call
            #expect((api["last_failure"] as? [String: Any])?["outcome"] != nil)
            let list = try Self.json(try await client.execute(uri: "/api/sessions", method: .get))["sessions"] as? [[String: Any]] ?? []
            #expect(Set(list.compactMap { $0["session_id"] as? String }) == ["agent-a", "agent-b"])
            let stats = try Self.json(try await client.execute(uri: "/api/stats", method: .get))
            #expect((stats["packets"] as? Int ?? 0) > 0 && stats["stored_calls"] as? Int == sessions.values.joined().count)
            let status1 = try await client.execute(uri: "/healthz", method: .get).status
            #expect(status1 == .ok)
            let page = try await client.execute(uri: "/", method: .get)
            #expect(String(buffer: page.body).contains("External API calls"))
            let spec = try await client.execute(uri: "/openapi.json", method: .get)
            let committed = try Data(contentsOf: Self.root.appendingPathComponent("Sources/Server/Assets/openapi.json"))
            #expect(Data(buffer: spec.body) == committed)
        }
    }

    @Test func tokenIsRequiredWhenSetAndOffLoopback() async throws {
        let (store, _) = try Self.makeStore()
        var open = Self.options()
        open.host = "0.0.0.0"
        #expect(throws: ServerError.self) { try buildApplication(store: store, options: open) }
        let app = try buildApplication(store: store, options: Self.options(token: "s3cret"))
        try await app.test(.live) { client in
            let status2 = try await client.execute(uri: "/api/external-calls", method: .get).status
            #expect(status2 == .unauthorized)
            let status3 = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer wrong"]).status
            #expect(status3 == .unauthorized)
            let status4 = try await client.execute(uri: "/api/external-calls", method: .get, headers: [.authorization: "Bearer s3cret"]).status
            #expect(status4 == .ok)
            let status5 = try await client.execute(uri: "/healthz", method: .get).status
            #expect(status5 == .ok)
        }
    }

    @Test func metricsCountCallsPerHostWithSeparateRegistries() async throws {
        let (store, sessions) = try Self.makeStore()
        let all = Array(sessions.values.joined())
        for _ in 0..<2 { // two servers, two registries, one process
            let app = try buildApplication(store: store, options: Self.options())
            try await app.test(.live) { client in
                for _ in 0..<2 { // scraping twice must not double count
                    let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                    let http = all.filter { $0.kind == .http && $0.host == "www.mozilla.org" }.count
                    #expect(text.contains("calltap_calls_total{host=\"www.mozilla.org\",kind=\"http\"} \(http)"))
                    #expect(text.contains("calltap_http_latency_seconds_bucket{host=\"www.mozilla.org\""))
                    #expect(text.contains("calltap_capture_packets "))
                }
            }
        }
    }

    @Test func hostLabelsAreCapped() async throws {
        let (store, _) = try Self.makeStore()
        var options = Self.options()
        options.maxHostLabels = 2
        let app = try buildApplication(store: store, options: options)
        try await app.test(.live) { client in
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            let hosts = Set(text.split(separator: "\n").filter { $0.hasPrefix("calltap_calls_total{") }
                .compactMap { $0.split(separator: "\"").dropFirst().first.map(String.init) })
            #expect(hosts.count == 3 && hosts.contains("other"))
        }
    }

    /// Without a token only the listen address, localhost and --allow-host names are accepted as Host (a
    /// page on a rebinding name that resolves to 127.0.0.1 is refused; Scripts/lib/cli-tests.sh sends
    /// such requests to a running server).
    @Test func hostHeadersAcceptedWithoutAToken() {
        var o = Self.options()
        o.port = 8477
        o.allowedHosts = ["Calltap.LAN"]
        let accepted = o.acceptedHostHeaders
        for ok in ["127.0.0.1:8477", "localhost", "localhost:8477", "[::1]:8477", "calltap.lan:8477", "calltap.lan"] {
            #expect(accepted.contains(ok), "\(ok)")
        }
        for bad in ["evil.example", "evil.example:8477", "127.0.0.1.evil.example", "localhost.evil:8477"] {
            #expect(!accepted.contains(bad), "\(bad)")
        }
    }

    /// Loopback is decided on the resolved address, not the spelling.
    @Test func loopbackIsCheckedOnTheResolvedAddress() {
        func loop(_ h: String) -> Bool { var o = ServerOptions(); o.host = h; return o.isLoopback }
        #expect(loop("127.0.0.1") && loop("::1") && loop("localhost") && loop("127.5.6.7"))
        #expect(!loop("0.0.0.0") && !loop("::") && !loop("10.1.2.3") && !loop("127.no-such-name.invalid"))
    }

    @Test func listenAddressesParse() {
        #expect(ServerOptions.parseListen("127.0.0.1:8477")! == ("127.0.0.1", 8477))
        #expect(ServerOptions.parseListen("[::1]:9000")! == ("::1", 9000))
        #expect(ServerOptions.parseListen(":80")! == ("127.0.0.1", 80))
        #expect(ServerOptions.parseListen("host:99999") == nil)
    }
}
