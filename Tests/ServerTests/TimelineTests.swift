import CallModel
import Foundation
import Hummingbird
import HummingbirdTesting
@testable import Server
import Storage
import Testing

/// The dashboard's timeline route: its counts are the calls the list route pages through, for the same
/// session, host and range; it reads an index, never the whole calls table.
@Suite struct TimelineTests {
    typealias API = APITests

    /// Every call the list route returns for `query`, paged with its cursor.
    static func listed(_ client: some TestClientProtocol, _ query: String) async throws -> [[String: Any]] {
        var calls: [[String: Any]] = []
        var cursor: String?
        repeat {
            let uri = "/api/external-calls?limit=1000" + (query.isEmpty ? "" : "&" + query)
                + (cursor.map { "&before=\($0)" } ?? "")
            let r = try await client.execute(uri: uri, method: .get)
            #expect(r.status == .ok, "\(uri)")
            let body = try API.json(r)
            calls += body["calls"] as? [[String: Any]] ?? []
            cursor = body["next_cursor"] as? String
        } while cursor != nil
        return calls
    }

    /// The status class of a call as the list route gives it, by the rule the timeline documents.
    static func statusClass(_ c: [String: Any]) -> String {
        if let s = c["status_code"] as? Int, s >= 500 { return "5xx" }
        if let s = c["status_code"] as? Int, s >= 400 { return "4xx" }
        return c["outcome"] as? String == "ok" ? "ok" : "network"
    }

    @Test func countsEqualTheListForEveryFilterAndRange() async throws {
        let (store, sessions) = try API.makeStore()
        let a = sessions["agent-a"]!.sorted { $0.ts < $1.ts }
        let mid = Timestamps.iso8601(a[a.count / 2].ts), late = Timestamps.iso8601(a[a.count * 3 / 4].ts)
        let app = try buildApplication(store: store, options: API.options())
        try await app.test(.live) { client in
            let filters = ["", "session=agent-a", "session_id=agent-b", "host=api.agent.test", "since=\(mid)",
                           "until=\(mid)", "since=\(mid)&until=\(late)", "session=agent-a&since=\(mid)&until=\(late)",
                           "session=agent-a&host=api.agent.test&until=\(late)", "session=nobody", "since=\(late)&until=\(mid)"]
            for filter in filters {
                for buckets in ["", "buckets=1", "buckets=7", "buckets=1000"] {
                    let query = [filter, buckets].filter { !$0.isEmpty }.joined(separator: "&")
                    let r = try await client.execute(uri: "/api/external-calls/timeline" + (query.isEmpty ? "" : "?" + query), method: .get)
                    #expect(r.status == .ok, "\(query)")
                    let t = try API.json(r)
                    let listed = try await Self.listed(client, filter)
                    #expect(t["count"] as? Int == listed.count, "\(query)")
                    // Per host and class, and every bucket inside the range.
                    var expected: [String: [String: Int]] = [:]
                    for c in listed {
                        let h = c["host"] as? String ?? c["server_ip"] as? String ?? "unknown"
                        expected[h, default: [:]][Self.statusClass(c), default: 0] += 1
                    }
                    let hosts = t["hosts"] as? [[String: Any]] ?? []
                    #expect(hosts.count == expected.count, "\(query)")
                    let bucketCount = t["buckets"] as? Int ?? -1
                    for h in hosts {
                        let name = h["host"] as? String ?? ""
                        let totals = h["totals"] as? [String: Int] ?? [:]
                        #expect(totals.filter { $0.value > 0 } == (expected[name] ?? [:]), "\(query) \(name)")
                        let cells = h["buckets"] as? [[Int]] ?? []
                        #expect(cells.allSatisfy { $0.count == 5 && (0..<bucketCount).contains($0[0]) }, "\(query) \(name)")
                        #expect(cells.reduce(0) { $0 + $1.dropFirst().reduce(0, +) } == h["count"] as? Int, "\(query) \(name)")
                    }
                    if let n = Int(buckets.dropFirst("buckets=".count)) { #expect(bucketCount <= n, "\(query)") }
                }
            }
            // The range is echoed; without one it is the calls' own.
            let whole = try API.json(try await client.execute(uri: "/api/external-calls/timeline?session=agent-a", method: .get))
            #expect(whole["since"] as? String == Timestamps.iso8601(a.first!.ts / 1000 * 1000))
            #expect(whole["classes"] as? [String] == ["ok", "4xx", "5xx", "network"])
            let none = try API.json(try await client.execute(uri: "/api/external-calls/timeline?session=nobody", method: .get))
            #expect(none["since"] is NSNull && none["count"] as? Int == 0 && (none["hosts"] as? [Any])?.isEmpty == true)
        }
    }

    /// Calls of every class in known buckets: a call at a bucket's edge goes to the later bucket, and a
    /// call without a host is counted under its server address.
    @Test func bucketsAndClasses() throws {
        let store = try CallStore.inMemory()
        let t0: Int64 = 1_700_000_000_000_000_000
        func call(_ offsetMs: Int64, status: Int?, outcome: Outcome, host: String? = "h.example") -> CallRecord {
            var r = CallRecord(kind: status == nil ? .connect : .http, ts: t0 + offsetMs * 1_000_000)
            r.host = host
            r.serverIp = "192.0.2.1"
            r.statusCode = status
            r.outcome = outcome
            return r
        }
        try store.insert([call(0, status: 200, outcome: .ok), call(999, status: 404, outcome: .httpError),
                          call(1000, status: 503, outcome: .httpError), call(1500, status: nil, outcome: .refused),
                          call(2500, status: 302, outcome: .ok), call(2600, status: 200, outcome: .incomplete),
                          call(3999, status: nil, outcome: .timeout, host: nil)])
        var f = CallStore.TimelineFilter()
        f.since = t0
        f.until = t0 + 4_000_000_000
        f.buckets = 4
        let t = try store.timeline(f)
        #expect(t.bucketMicros == 1_000_000 && t.bucketCount == 4 && t.count == 7)
        let h = try #require(t.hosts.first { $0.host == "h.example" })
        #expect(h.totals == [2, 1, 1, 2])
        #expect(h.buckets.map(\.index) == [0, 1, 2])
        #expect(h.buckets.map(\.counts) == [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]])
        let bare = try #require(t.hosts.first { $0.host == "192.0.2.1" })
        #expect(bare.buckets.map(\.index) == [3] && bare.totals == [0, 0, 0, 1])
        // Without a range: from the first call to just after the last, cut into at most 3 buckets.
        f = CallStore.TimelineFilter()
        f.buckets = 3
        let whole = try store.timeline(f)
        #expect(whole.start == t0 / 1000 && whole.end == (t0 + 3_999_000_000) / 1000 + 1)
        #expect(whole.bucketCount <= 3 && whole.count == 7)
    }

    /// No timeline query reads the calls table from end to end: each one searches an index, or scans a
    /// covering one, whatever the filter.
    @Test func queryPlansReadAnIndex() throws {
        let (store, _) = try API.makeStore()
        var filters: [CallStore.TimelineFilter] = []
        for session in [nil, "agent-a"] as [String?] {
            for host in [nil, "api.agent.test"] as [String?] {
                for range in [(nil, nil), (Int64(1_700_000_000_000_000_000), nil), (nil, Int64(1_800_000_000_000_000_000)),
                              (Int64(1_700_000_000_000_000_000), Int64(1_800_000_000_000_000_000))] as [(Int64?, Int64?)] {
                    var f = CallStore.TimelineFilter()
                    f.session = session
                    f.host = host
                    f.since = range.0
                    f.until = range.1
                    filters.append(f)
                }
            }
        }
        for f in filters {
            let plans = try store.timelineQueryPlans(f)
            #expect(plans.count >= 3)
            for p in plans {
                #expect(!(p.hasPrefix("SCAN calls") && !p.contains("COVERING INDEX")), "\(f): \(p)")
            }
            if f.session == nil && f.host == nil {
                #expect(plans.contains { $0.contains("COVERING INDEX calls_timeline") || $0.contains("call_counts") }, "\(f): \(plans)")
            }
        }
    }

    @Test(arguments: ["buckets=0", "buckets=1001", "buckets=ten", "buckets=", "colour=red", "limit=10", "outcome=ok",
                      "since=yesterday", "until=soon", "host=a&host=b", "session=bad%20id", "session=a&session_id=b&session=c"])
    func badParametersAre400(query: String) async throws {
        let store = try CallStore.inMemory()
        let app = try buildApplication(store: store, options: API.options())
        try await app.test(.live) { client in
            let r = try await client.execute(uri: "/api/external-calls/timeline?" + query, method: .get)
            #expect(r.status == .badRequest, "\(query)")
            #expect((try API.json(r)["error"] as? String)?.isEmpty == false)
        }
    }
}
