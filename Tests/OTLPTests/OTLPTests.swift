import CallModel
import Foundation
@testable import OTLP
@testable import OTLPHTTP
import Testing

/// Test helpers over the module's `ProtoReader`.
extension ProtoReader {
    struct Bad: Error {}
    static func fieldsOrThrow(_ b: [UInt8]) throws -> [(field: Int, value: Value)] {
        guard let f = fields(b) else { throw Bad() }
        return f
    }
    static func messages(_ b: [UInt8], _ field: Int) throws -> [[UInt8]] {
        guard fields(b) != nil else { throw Bad() }
        return messages(b[...], field).map(Array.init)
    }
    static func string(_ b: [UInt8], _ field: Int) throws -> String? {
        try messages(b, field).first.map { String(decoding: $0, as: UTF8.self) }
    }
    static func uint(_ b: [UInt8], _ field: Int) throws -> UInt64? {
        guard fields(b) != nil else { throw Bad() }
        return number(b[...], field)
    }
    /// KeyValue list → [key: AnyValue bytes].
    static func attributes(_ b: [UInt8], _ field: Int) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for kv in try messages(b, field) { out[try string(kv, 1) ?? ""] = try messages(kv, 2).first ?? [] }
        return out
    }
}

@Suite struct ProtobufTests {
    @Test func varintsAreLittleEndianGroupsOfSeven() {
        let cases: [(UInt64, [UInt8])] = [(1, [1]), (127, [0x7f]), (128, [0x80, 1]), (300, [0xac, 2]),
                                           (UInt64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1])]
        for (v, want) in cases {
            var w = ProtoWriter()
            w.varint(v)
            #expect(w.bytes == want, "\(v)")
        }
    }

    /// A nested message's length takes one byte up to 127 and more after; the body is shifted intact.
    @Test(arguments: [0, 1, 126, 127, 128, 129, 16_383, 16_384, 300_000])
    func nestedLengthsOfEverySize(n: Int) throws {
        let body = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var w = ProtoWriter()
        w.uint(1, 7)
        w.message(2) { inner in
            inner.message(3) { $0.bytesField(4, body) }
        }
        w.string(5, "after")
        let top = try ProtoReader.fieldsOrThrow(w.bytes)
        #expect(top.count == 3)
        let inner = try ProtoReader.messages(w.bytes, 2)[0]
        let deepest = try ProtoReader.messages(inner, 3)[0]
        #expect(try ProtoReader.messages(deepest, 4).first ?? [] == body)
        #expect(try ProtoReader.string(w.bytes, 5) == "after")
    }

    @Test func defaultsAreLeftOutAsProto3Does() {
        var w = ProtoWriter()
        w.uint(1, 0)
        w.fixed64(2, 0)
        w.string(3, "")
        w.bytesField(4, [])
        #expect(w.bytes.isEmpty)
        w.string(3, "", always: true)
        #expect(w.bytes == [0x1a, 0])
    }
}

@Suite struct TraceParentTests {
    @Test(arguments: [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\t", true),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true), // a later version may add fields
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", false), // version 00 is exactly 55 bytes
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false), // upper case
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false),
        ("", false),
    ])
    func parses(value: String, valid: Bool) {
        let c = TraceParent.parse(value)
        #expect((c != nil) == valid)
        if let c {
            #expect(c.traceId == "4bf92f3577b34da6a3ce929d0e0e4736" && c.parentSpanId == "00f067aa0ba902b7")
        }
    }
}

@Suite struct OTLPConfigurationTests {
    func resolve(_ endpoint: String?, headers: [String] = [], env: [String: String] = [:]) throws -> OTLPConfiguration? {
        try OTLPConfiguration.resolve(endpoint: endpoint, headers: headers, timeout: 30, environment: env, hostName: "agent-host-1")
    }

    @Test func signalPathsAreAppendedToTheBaseEndpoint() throws {
        for (base, traces) in [("http://collector:4318", "http://collector:4318/v1/traces"),
                               ("http://collector:4318/", "http://collector:4318/v1/traces"),
                               ("https://gw.example/otlp", "https://gw.example/otlp/v1/traces")] {
            let c = try #require(try resolve(base))
            #expect(c.tracesURL.absoluteString == traces)
            #expect(c.metricsURL.absoluteString == traces.replacingOccurrences(of: "traces", with: "metrics"))
        }
        #expect(try resolve(nil) == nil)
    }

    @Test func theFlagWinsOverTheEnvironmentAndSignalVariablesAreUsedAsTheyAre() throws {
        let env = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318",
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env-traces:9999/custom"]
        #expect(try resolve("http://flag:4318", env: env)?.tracesURL.absoluteString == "http://flag:4318/v1/traces")
        let fromEnv = try #require(try resolve(nil, env: env))
        #expect(fromEnv.tracesURL.absoluteString == "http://env-traces:9999/custom")
        #expect(fromEnv.metricsURL.absoluteString == "http://env:4318/v1/metrics")
    }

    @Test func headersAndResource() throws {
        let env = ["OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b , x-tenant=t1",
                   "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from-attributes",
                   "OTEL_SERVICE_NAME": "agents"]
        let c = try #require(try resolve("http://c:4318", headers: ["X-Tenant=t2", "empty="], env: env))
        #expect(c.headers.map { "\($0.0)=\($0.1)" } == ["api-key=a b", "X-Tenant=t2", "empty="])
        let attrs = Dictionary(c.resource.attributes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        #expect(attrs["service.name"] == .string("agents"))
        #expect(attrs["host.name"] == .string("agent-host-1"))
        #expect(attrs["deployment.environment"] == .string("prod"))
        let plain = try #require(try resolve("http://c:4318"))
        #expect(plain.resource.attributes.first { $0.key == "service.name" }?.value == .string("calltap"))
    }

    @Test(arguments: ["ftp://x", "collector:4318", "http://", "not a url"])
    func badEndpointsAreRefused(endpoint: String) {
        #expect(throws: OTLPConfiguration.Problem.self) { try resolve(endpoint) }
    }

    @Test func headersThatCouldSplitARequestAreRefused() {
        #expect(throws: OTLPConfiguration.Problem.self) { try resolve("http://c", headers: ["x=a\r\nInjected: 1"]) }
        #expect(throws: OTLPConfiguration.Problem.self) { try resolve("http://c", headers: ["bad name=1"]) }
        #expect(throws: OTLPConfiguration.Problem.self) { try resolve("http://c", headers: ["novalue"]) }
        #expect(throws: OTLPConfiguration.Problem.self) { try resolve("http://c", env: ["OTEL_EXPORTER_OTLP_HEADERS": "a"]) }
    }
}

@Suite struct OTLPSpanTests {
    static func http(_ method: String? = "GET", status: Int? = 200, outcome: Outcome = .ok, ts: Int64 = 1_717_243_200_123_456_789) -> CallRecord {
        var r = CallRecord(kind: .http, ts: ts)
        r.method = method
        r.statusCode = status
        r.outcome = outcome
        r.host = "api.example.com"
        r.serverIp = "192.0.2.7"
        r.serverPort = 443
        r.clientIp = "10.0.0.2"
        r.clientPort = 40000
        r.connectionId = "1:abc="
        r.scheme = "https"
        r.path = "/v1/x"
        r.url = "https://api.example.com/v1/x"
        r.httpVersion = "2"
        r.latencyMicros = 250_000
        r.ttfbMicros = 200_000
        r.endedAt = ts + 250_000_000
        r.sessionId = "sess-1"
        r.visibility = .decrypted
        return r
    }

    @Test func namesAndErrorTypesFollowTheConventions() {
        #expect(OTLPSpans.name(Self.http()) == "GET")
        #expect(OTLPSpans.name(Self.http("PROPFIND")) == "HTTP")
        #expect(OTLPSpans.name(Self.http(nil)) == "HTTP")
        var d = CallRecord(kind: .dns, ts: 1)
        d.outcome = .dnsFailed
        #expect(OTLPSpans.name(d) == "dns" && OTLPSpans.errorType(d) == "dns_failed")
        #expect(OTLPSpans.errorType(Self.http(status: 503, outcome: .httpError)) == "503")
        #expect(OTLPSpans.errorType(Self.http()) == nil)
        #expect(OTLPSpans.errorType(Self.http(status: nil, outcome: .reset)) == "reset")
        // A response cut by either side is a failure of the call, whatever status came first.
        for (outcome, word) in [(Outcome.clientClosed, "client_closed"), (.serverClosed, "server_closed"), (.reset, "reset")] {
            let cut = Self.http(status: 200, outcome: outcome)
            #expect(OTLPSpans.errorType(cut) == word && OTLPSpans.isError(cut))
        }
        let other = OTLPSpans.attributes(Self.http("PROPFIND"))
        #expect(other.contains(OTLPAttribute("http.request.method", .string("_OTHER"))))
        #expect(other.contains(OTLPAttribute("http.request.method_original", .string("PROPFIND"))))
        var tls = CallRecord(kind: .tls, ts: 1)
        tls.visibility = .decrypted
        #expect(!OTLPSpans.isExported(tls))
        tls.visibility = .encrypted
        #expect(OTLPSpans.isExported(tls))
    }

    @Test func idsAreDerivedFromTheCallAndStableAtMicrosecondPrecision() {
        let a = Self.http(), b = Self.http(ts: 1_717_243_200_123_456_000)
        #expect(OTLPIds.spanId(a) == OTLPIds.spanId(b)) // the database keeps microseconds
        #expect(OTLPIds.traceId(a) == OTLPIds.traceId(b))
        var c = a
        c.streamId = 3
        #expect(OTLPIds.spanId(a) != OTLPIds.spanId(c))
        #expect(OTLPIds.spanId(a).count == 8 && OTLPIds.traceId(a).count == 16)
        #expect(OTLPIds.parentSpanId(a) == nil)
        var t = a
        t.traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
        t.parentSpanId = "00f067aa0ba902b7"
        #expect(OTLPIds.hex(OTLPIds.traceId(t)) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(OTLPIds.parentSpanId(t).map(OTLPIds.hex) == "00f067aa0ba902b7")
        #expect(OTLPSpans.times(a).start == 1_717_243_200_123_456_000)
    }

    @Test func aRequestHoldsOneResourcePerTargetAndEverySpanDecodes() throws {
        var calls: [CallRecord] = []
        for k in 0..<50 {
            var r = Self.http(ts: 1_717_243_200_000_000_000 + Int64(k) * 1_000_000)
            r.target = k % 2 == 0 ? "netns-a" : "netns-b"
            calls.append(r)
        }
        var decrypted = CallRecord(kind: .tls, ts: 5)
        decrypted.visibility = .decrypted
        calls.append(decrypted)
        let resource = OTLPResource(attributes: [OTLPAttribute("service.name", .string("calltap"))])
        let (bytes, spans) = OTLPTraceRequest.encode(calls, resource: resource, version: "1")
        #expect(spans == 50)
        let resourceSpans = try ProtoReader.messages(bytes, 1)
        #expect(resourceSpans.count == 2)
        var seen = 0
        for rs in resourceSpans {
            let res = try ProtoReader.messages(rs, 1)[0]
            let attrs = try ProtoReader.attributes(res, 1)
            let target = try ProtoReader.string(attrs["calltap.target"] ?? [], 1)
            #expect(target == "netns-a" || target == "netns-b")
            for ss in try ProtoReader.messages(rs, 2) {
                for span in try ProtoReader.messages(ss, 2) {
                    seen += 1
                    #expect(try ProtoReader.string(span, 5) == "GET")
                    #expect(try ProtoReader.uint(span, 6) == 3)
                    let start = try #require(try ProtoReader.uint(span, 7)), end = try #require(try ProtoReader.uint(span, 8))
                    #expect(end - start == 250_000_000)
                    let a = try ProtoReader.attributes(span, 9)
                    #expect(try ProtoReader.string(a["session.id"] ?? [], 1) == "sess-1")
                    #expect(try ProtoReader.uint(a["http.response.status_code"] ?? [], 3) == 200)
                    #expect(try ProtoReader.messages(span, 11).count == 1) // first byte
                }
            }
        }
        #expect(seen == 50)
    }

    @Test func failuresCarryAnErrorStatus() throws {
        var w = ProtoWriter()
        var r = Self.http(status: 502, outcome: .httpError)
        r.error = nil
        OTLPTraceRequest.encodeSpan(r, into: &w)
        let status = try ProtoReader.messages(w.bytes, 15)
        #expect(status.count == 1)
        #expect(try ProtoReader.uint(status[0], 3) == 2)
        var ok = ProtoWriter()
        OTLPTraceRequest.encodeSpan(Self.http(), into: &ok)
        #expect(try ProtoReader.messages(ok.bytes, 15).isEmpty)
    }
}

@Suite struct OTLPMetricsTests {
    @Test func bucketsAreUpperInclusiveAndCountsAddUp() {
        var h = OTLPMetrics.Histogram()
        for s in [0.0, 0.005, 0.0051, 10, 11] { h.record(s) }
        #expect(h.counts[0] == 2 && h.counts[1] == 1 && h.counts[13] == 1 && h.counts[14] == 1)
        #expect(h.count == 5 && h.counts.reduce(0, +) == 5)
    }

    @Test func seriesAreCappedAndNeverCarryASessionOrURL() throws {
        let m = OTLPMetrics(start: 1)
        for k in 0..<(OTLPMetrics.maxSeries + 50) {
            var r = OTLPSpanTests.http()
            r.host = "h\(k).example"
            m.record(r)
        }
        #expect(m.httpDurations.count == OTLPMetrics.maxSeries + 1)
        #expect(m.httpDurations[OTLPMetrics.overflow]?.count == 50)
        #expect(m.httpCalls == OTLPMetrics.maxSeries + 50)
        let bytes = m.encode(resource: OTLPResource(attributes: []), version: "1", now: 2)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(!text.contains("session") && !text.contains("url.") && !text.contains("/v1/x"))
        #expect(text.contains("otel.metric.overflow"))
    }
}

@Suite struct OTLPClientTests {
    @Test func answersAreSortedAsTheSpecificationSays() {
        #expect(OTLPClient.classify(status: 200, retryAfter: nil, body: []) == .delivered(rejectedSpans: 0))
        #expect(OTLPClient.classify(status: 503, retryAfter: "7", body: []) == .retry(after: 7, reason: "HTTP 503"))
        #expect(OTLPClient.classify(status: 429, retryAfter: "99999", body: []) == .retry(after: 300, reason: "HTTP 429"))
        #expect(OTLPClient.classify(status: 502, retryAfter: "soon", body: []) == .retry(after: nil, reason: "HTTP 502"))
        #expect(OTLPClient.classify(status: 413, retryAfter: nil, body: []) == .tooLarge)
        #expect(OTLPClient.classify(status: 400, retryAfter: nil, body: []) == .rejected(reason: "HTTP 400"))
        // Wrong endpoint or credentials: no batch gets past these, so none is dropped for them.
        for code in [301, 302, 401, 403, 404, 405, 415] {
            #expect(OTLPClient.classify(status: code, retryAfter: nil, body: []) == .refused(reason: "HTTP \(code)"))
        }
    }

    @Test func aPartialSuccessNamesTheSpansDropped() {
        // ExportTraceServiceResponse { partial_success (1) { rejected_spans (1) = 42; error_message (2) = "x" } }
        var w = ProtoWriter()
        w.message(1) { p in
            p.string(2, "some spans were too old")
            p.int64(1, 42)
        }
        #expect(OTLPClient.classify(status: 200, retryAfter: nil, body: w.bytes) == .delivered(rejectedSpans: 42))
        #expect(OTLPClient.rejectedSpans([0x0a, 0x05, 0x08]) == 0) // cut short: nothing claimed
        #expect(OTLPClient.rejectedSpans([]) == 0)
    }

    @Test func credentialsInAnEndpointAreNeverShown() {
        #expect(OTLPClient.shown(URL(string: "https://user:secret@collector:4318/v1/traces")!) == "https://collector:4318/v1/traces")
        #expect(OTLPConfiguration.withoutCredentials("ftp://user:secret@host/x") == "ftp://…@host/x")
        #expect(OTLPConfiguration.withoutCredentials("http://host/a@b") == "http://host/a@b")
        do {
            _ = try OTLPConfiguration.resolve(endpoint: "gopher://u:hunter2@h", headers: [], timeout: 1, environment: [:], hostName: "h")
            Issue.record("a gopher endpoint was taken")
        } catch {
            #expect("\(error)".contains("gopher://…@h") && !"\(error)".contains("hunter2"))
        }
        do {
            _ = try OTLPConfiguration.resolve(endpoint: "http://c", headers: ["Authorization: Bearer hunter2"], timeout: 1,
                                              environment: [:], hostName: "h")
            Issue.record("a header without = was taken")
        } catch {
            #expect(!"\(error)".contains("hunter2"))
        }
    }

    @Test func protocolVersionsAndServerAddressesFollowTheConventions() {
        var r = OTLPSpanTests.http()
        r.httpVersion = "1.1→2"
        #expect(OTLPSpans.protocolVersion(r) == "2")
        var d = CallRecord(kind: .dns, ts: 1)
        d.host = "api.example.com"
        d.serverIp = "10.0.0.53"
        #expect(OTLPSpans.serverAddress(d) == "10.0.0.53")
        var gap = OTLPSpanTests.http()
        gap.outcome = .incomplete
        #expect(OTLPSpans.errorType(gap) == nil && !OTLPSpans.isError(gap))
        #expect(OTLPSpans.method(OTLPSpanTests.http(nil)) == "_OTHER")
    }

    /// An IPv6 literal: bracketed in `url.full` (as the call's url is), bare in `server.address` and
    /// `network.peer.address`; the port in `server.port` whether or not the url shows it.
    @Test func ipv6AddressesAreBracketedOnlyInTheURL() {
        for (scheme, port, url) in [("http", 8080, "http://[fd00:213::11]:8080/x?q=1"), ("https", 443, "https://[fd00:213::11]/x?q=1")] {
            var r = OTLPSpanTests.http()
            r.scheme = scheme
            r.host = "fd00:213::11"
            r.serverIp = "fd00:213::11"
            r.serverPort = port
            r.path = "/x?q=1"
            r.url = CallURL.make(scheme: scheme, host: "fd00:213::11", port: port, path: "/x?q=1")
            let a = OTLPSpans.attributes(r)
            #expect(a.contains(OTLPAttribute("url.full", .string(url))))
            #expect(a.contains(OTLPAttribute("server.address", .string("fd00:213::11"))))
            #expect(a.contains(OTLPAttribute("server.port", .int(Int64(port)))))
            #expect(a.contains(OTLPAttribute("network.peer.address", .string("fd00:213::11"))))
        }
    }

    /// Through a forward proxy: `server.*` is the destination (the url's port, or a CONNECT target's),
    /// `network.peer.*` the proxy on the wire; a tunnel's `tls` record has no destination port to give.
    @Test func proxiedCallsNameTheDestinationAndThePeer() {
        func proxied(_ kind: CallKind) -> CallRecord {
            var r = kind == .http ? OTLPSpanTests.http() : CallRecord(kind: kind, ts: 1)
            r.host = "api.weather.test"
            r.serverIp = "10.214.0.11"
            r.serverPort = 8888
            r.proxy = "10.214.0.11:8888"
            return r
        }
        var get = proxied(.http)
        get.scheme = "https"
        get.path = "/v2/alerts"
        get.url = "https://api.weather.test:8443/v2/alerts"
        var plain = proxied(.http)
        plain.url = "http://api.github.test/repos"
        var connect = proxied(.http)
        connect.method = "CONNECT"
        connect.path = "api.weather.test:443"
        connect.url = nil
        for (r, port) in [(get, 8443), (plain, 80), (connect, 443)] {
            let a = OTLPSpans.attributes(r)
            #expect(a.contains(OTLPAttribute("server.address", .string("api.weather.test"))))
            #expect(a.contains(OTLPAttribute("server.port", .int(Int64(port)))), "\(r.url ?? r.path ?? "")")
            #expect(a.contains(OTLPAttribute("network.peer.address", .string("10.214.0.11"))))
            #expect(a.contains(OTLPAttribute("network.peer.port", .int(8888))))
        }
        let tls = OTLPSpans.attributes(proxied(.tls))
        #expect(!tls.contains { $0.key == "server.port" })
        #expect(tls.contains(OTLPAttribute("network.peer.port", .int(8888))))
        // A direct call: the server is the peer.
        var direct = OTLPSpanTests.http()
        direct.serverPort = 8443
        #expect(OTLPSpans.attributes(direct).contains(OTLPAttribute("server.port", .int(8443))))
    }

    @Test func bytesAreCountedOnceFromConnectionRecords() {
        let m = OTLPMetrics(start: 1)
        var exchange = OTLPSpanTests.http()
        exchange.bytesSent = 100
        m.record(exchange)
        var tls = CallRecord(kind: .tls, ts: 1)
        tls.host = "api.example.com"
        tls.bytesSent = 1000
        tls.bytesReceived = 5000
        m.record(tls)
        #expect(m.networkIO.values.reduce(0, +) == 6000)
    }
}
