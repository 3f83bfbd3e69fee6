import CallModel
import Testing

/// A call's url, as every output writes it.
@Suite struct CallURLTests {
    @Test(arguments: [
        // IPv6 literals in brackets, with and without a port.
        ("http", "fd00:213::11", 80, "/status/200", "http://[fd00:213::11]/status/200"),
        ("http", "fd00::1", 8080, "/x", "http://[fd00::1]:8080/x"),
        ("https", "2001:db8::7", 443, "/v1/chat/completions?x=1", "https://[2001:db8::7]/v1/chat/completions?x=1"),
        ("https", "2001:db8::7", 8443, "/", "https://[2001:db8::7]:8443/"),
        ("http", "::1", 80, "/", "http://[::1]/"),
        ("http", "::ffff:192.0.2.1", 8080, "/m", "http://[::ffff:192.0.2.1]:8080/m"),
        // A zone: the percent sign escaped once (RFC 6874).
        ("http", "fe80::1%eth0", 80, "/z", "http://[fe80::1%25eth0]/z"),
        ("http", "fe80::1%25eth0", 80, "/z", "http://[fe80::1%25eth0]/z"),
        // Already bracketed: as it is.
        ("http", "[fd00::1]", 81, "/b", "http://[fd00::1]:81/b"),
        // Names and IPv4: never bracketed; the default port only for its own scheme.
        ("http", "api.example.com", 80, "/a", "http://api.example.com/a"),
        ("http", "api.example.com", 443, "/a", "http://api.example.com:443/a"),
        ("https", "api.example.com", 443, "/a", "https://api.example.com/a"),
        ("https", "api.example.com", 80, "/a", "https://api.example.com:80/a"),
        ("http", "192.0.2.7", 80, "/v4", "http://192.0.2.7/v4"),
        ("http", "192.0.2.7", 8080, "/v4", "http://192.0.2.7:8080/v4"),
        ("ws", "192.0.2.7", 80, "/sock", "ws://192.0.2.7:80/sock"),
    ] as [(String, String, Int, String, String)])
    func urls(scheme: String, host: String, port: Int, path: String, want: String) {
        #expect(CallURL.make(scheme: scheme, host: host, port: port, path: path) == want)
    }

    @Test func aTargetThatIsNotAPathHasNoURL() {
        #expect(CallURL.make(scheme: "http", host: "proxy.test", port: 3128, path: "api.weather.test:443") == nil)
        #expect(CallURL.make(scheme: "http", host: "example.com", port: 80, path: "*") == nil)
        #expect(CallURL.make(scheme: "http", host: "example.com", port: 80, path: "") == nil)
    }

    @Test func authorityAndHost() {
        #expect(CallURL.authority(scheme: "https", host: "fd00::1", port: 443) == "[fd00::1]")
        #expect(CallURL.authority(scheme: "https", host: "fd00::1", port: nil) == "[fd00::1]")
        #expect(CallURL.authority(scheme: "tcp", host: "fd00::1", port: 5432) == "[fd00::1]:5432")
        #expect(CallURL.authority(scheme: "tcp", host: "db.test", port: 0) == "db.test:0")
        #expect(CallURL.host("db.test") == "db.test" && CallURL.host("10.0.0.1") == "10.0.0.1")
        #expect(CallURL.defaultPort("http") == 80 && CallURL.defaultPort("https") == 443 && CallURL.defaultPort("tcp") == nil)
    }
}
