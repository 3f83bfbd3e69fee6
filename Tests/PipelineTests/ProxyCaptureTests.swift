import Analysers
import CallModel
import Foundation
import Pipeline
import Testing

/// proxy.pcap (Scripts/make-proxy-captures): curl and Python's urllib through tinyproxy on port 8888 —
/// HTTPS through CONNECT (HTTP/1.1 to 443, HTTP/2 to 8443, decrypted with curl's key log), plain HTTP
/// in absolute form (ports 80 and 8080), and a tunnel through the proxy's IPv6 address. Only the
/// client's side of the proxy is on the wire.
@Suite struct ProxyCaptureTests {
    static let proxy4 = "10.214.0.11:8888"
    static let proxy6 = "[fd00:214::11]:8888"

    static func calls() throws -> [CallRecord] {
        try WireCaptureTests.calls("proxy.pcap", keyLog: "proxy.keylog")
    }

    /// Every call of the capture went through the proxy: the endpoints on the wire are the proxy's,
    /// `proxy` says so, and the Community ID is the wire flow's (one per connection).
    @Test func everyCallNamesTheProxyAndKeepsTheWireEndpoints() throws {
        let calls = try Self.calls()
        #expect(calls.count == 12)
        for c in calls {
            #expect(c.serverPort == 8888, "\(c.kind) \(c.path ?? "")")
            let v6 = c.serverIp == "fd00:214::11"
            #expect(v6 || c.serverIp == "10.214.0.11")
            #expect(c.proxy == (v6 ? Self.proxy6 : Self.proxy4), "\(c.kind) \(c.path ?? "")")
            #expect(c.url.map { !$0.contains(":8888") } ?? true, "\(c.url ?? "")")
        }
        // One connection per client run; its calls share the flow's Community ID.
        let byConnection = Dictionary(grouping: calls, by: { $0.connectionId ?? "" })
        #expect(byConnection.count == 6 && !byConnection.keys.contains(""))
    }

    /// The CONNECT exchange is a call of its own: method CONNECT, the authority-form target in `path`,
    /// the destination in `host`, no url.
    @Test func theConnectExchangeIsACallWithoutAURL() throws {
        let connects = try Self.calls().filter { $0.method == "CONNECT" }
        #expect(connects.map(\.path) == ["api.weather.test:443", "api.weather.test:8443", "api.weather.test:443"])
        for c in connects {
            #expect(c.kind == .http && c.url == nil && c.host == "api.weather.test")
            #expect(c.statusCode == 200 && c.outcome == .ok && c.visibility == .plaintext)
        }
        #expect(connects.last?.proxy == Self.proxy6 && connects.last?.serverIp == "fd00:214::11")
    }

    /// HTTPS through the tunnel: TLS found after the proxy's 200, its SNI and JA4 read and its
    /// exchanges decrypted; the url is the destination's, with the port the tunnel was asked for.
    @Test func httpsThroughATunnelIsDecryptedWithTheDestinationsURL() throws {
        let calls = try Self.calls()
        let tls = calls.filter { $0.kind == .tls }
        #expect(tls.count == 3)
        for t in tls {
            #expect(t.sni == "api.weather.test" && t.host == "api.weather.test")
            #expect(t.ja4?.hasPrefix("t13d") == true && t.visibility == .decrypted, "\(t.ja4 ?? "")")
            #expect(t.tlsVersion == "1.3" && t.outcome == .ok)
        }
        #expect(tls.map(\.alpn) == [nil, "h2", nil]) // the Python server negotiates no ALPN
        let http = WireCaptureTests.byPath(calls)
        let want: [String: (url: String, version: String)] = [
            "/v1/forecast?lat=52.52&lon=13.41": ("https://api.weather.test/v1/forecast?lat=52.52&lon=13.41", "1.1"),
            "/v2/alerts?region=north": ("https://api.weather.test:8443/v2/alerts?region=north", "2"),
            "/v6/through-ipv6-proxy": ("https://api.weather.test/v6/through-ipv6-proxy", "1.1"),
        ]
        for (path, w) in want {
            let c = try #require(http[path], "\(path)")
            #expect(c.url == w.url, "\(path)")
            #expect(c.httpVersion == w.version && c.method == "GET" && c.statusCode == 200, "\(path)")
            #expect(c.host == "api.weather.test" && c.sni == "api.weather.test" && c.scheme == "https", "\(path)")
            #expect(c.visibility == .decrypted && c.outcome == .ok, "\(path)")
            #expect(c.responseContentType == "application/json", "\(path)")
        }
        #expect(http["/v6/through-ipv6-proxy"]?.proxy == Self.proxy6)
    }

    /// Plain HTTP in absolute form: the target names the destination (host, and a port only when it is
    /// not 80), the path is its origin-form part.
    @Test func absoluteFormRequestsCarryTheDestination() throws {
        let http = WireCaptureTests.byPath(try Self.calls())
        let want: [String: (url: String, status: Int)] = [
            "/repos/calltap/calltap": ("http://api.github.test/repos/calltap/calltap", 200),
            "/missing/page": ("http://api.github.test:8080/missing/page", 404),
            "/py/urllib": ("http://api.github.test/py/urllib", 200),
        ]
        for (path, w) in want {
            let c = try #require(http[path], "\(path)")
            #expect(c.url == w.url, "\(path)")
            #expect(c.host == "api.github.test" && c.scheme == "http" && c.method == "GET", "\(path)")
            #expect(c.statusCode == w.status && c.visibility == .plaintext && c.sni == nil, "\(path)")
            #expect(c.proxy == Self.proxy4 && c.serverPort == 8888, "\(path)")
        }
    }

    /// Without the key log the tunnels stay encrypted, but TLS inside them is still found and named.
    @Test func withoutKeysTheTunnelsTLSIsStillRead() throws {
        let calls = try WireCaptureTests.calls("proxy.pcap")
        let tls = calls.filter { $0.kind == .tls }
        #expect(tls.count == 3 && tls.allSatisfy { $0.sni == "api.weather.test" && $0.ja4 != nil && $0.visibility == .encrypted })
        #expect(tls.allSatisfy { $0.proxy != nil && $0.host == "api.weather.test" })
        #expect(calls.filter { $0.method == "CONNECT" }.count == 3)
    }

    @Test func destinationPortsOfProxiedCalls() throws {
        let calls = try Self.calls()
        let ports = Set(calls.filter { $0.kind == .http }.compactMap { c in c.destinationPort.map { "\(c.path ?? ""):\($0)" } })
        #expect(ports.isSuperset(of: ["api.weather.test:443:443", "api.weather.test:8443:8443",
                                      "/v2/alerts?region=north:8443", "/missing/page:8080", "/py/urllib:80"]))
        #expect(calls.filter { $0.kind == .tls }.allSatisfy { $0.destinationPort == nil })
    }

    /// proxy-tunnel.pcap: plain HTTP inside CONNECT tunnels (`curl --proxytunnel` to ports 80 and 8080,
    /// Python's `set_tunnel` with two requests on one tunnel): each request is a call of its own, named
    /// by the tunnel's destination and port, after the CONNECT that opened it.
    @Test func plainHTTPInsideATunnel() throws {
        let calls = try WireCaptureTests.calls("proxy-tunnel.pcap")
        #expect(calls.map { $0.method ?? "" } == ["CONNECT", "GET", "CONNECT", "GET", "CONNECT", "GET", "GET"])
        let inner = calls.filter { $0.method == "GET" }
        #expect(inner.map(\.url) == ["http://api.github.test/tunnel/plain?page=2", "http://api.github.test:8080/missing/tunnel",
                                     "http://api.github.test/py/tunnel/one", "http://api.github.test/py/tunnel/two"])
        #expect(inner.map(\.statusCode) == [200, 404, 200, 200])
        #expect(inner.map(\.outcome) == [.ok, .httpError, .ok, .ok])
        for c in calls {
            #expect(c.host == "api.github.test" && c.proxy == Self.proxy4 && c.serverPort == 8888, "\(c.path ?? "")")
            #expect(c.visibility == .plaintext)
        }
        // The two requests of one tunnel share its connection, after its CONNECT.
        #expect(Set(calls[4...].map(\.connectionId)).count == 1)
    }
}
