/// A call's `url` as every output writes it (JSON Lines, the database and API, OTLP `url.full`, the
/// ClawMetry file): `scheme://host[:port]path`. An IPv6 literal is bracketed (RFC 3986 §3.2.2), a zone in
/// it written `%25` (RFC 6874); the port appears only when it is not the scheme's default (80 for http,
/// 443 for https). Built once per call, never per packet.
public enum CallURL {
    /// The scheme's default port: 80 for http, 443 for https, nil for any other.
    public static func defaultPort(_ scheme: String) -> Int? {
        switch scheme {
        case "http": return 80
        case "https": return 443
        default: return nil
        }
    }

    /// A host as a url's authority holds it: an IPv6 literal (anything with a colon) in brackets, names
    /// and IPv4 addresses as they are.
    public static func host(_ host: String) -> String {
        guard host.utf8.contains(UInt8(ascii: ":")), !host.hasPrefix("[") else { return host }
        guard let percent = host.utf8.firstIndex(of: UInt8(ascii: "%")) else { return "[\(host)]" }
        // A zone (fe80::1%eth0): the percent sign escaped, unless it already is.
        let zone = host[host.index(after: percent)...]
        let escaped = zone.hasPrefix("25") ? "%" : "%25"
        return "[\(host[..<percent])\(escaped)\(zone)]"
    }

    /// `host[:port]`, the port left out when it is the scheme's default (or unknown).
    public static func authority(scheme: String, host: String, port: Int?) -> String {
        let h = Self.host(host)
        guard let port, port != defaultPort(scheme) else { return h }
        return "\(h):\(port)"
    }

    /// The whole url; nil when the path is not an origin-form path (`*`, a CONNECT target), which has no
    /// url of its own.
    public static func make(scheme: String, host: String, port: Int?, path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        return "\(scheme)://\(authority(scheme: scheme, host: host, port: port))\(path)"
    }

    /// The port an authority names (`host:port`, `[v6]:port`, userinfo before an `@` skipped): a CONNECT
    /// target, or a url's authority; nil when it names none.
    public static func port(ofAuthority authority: some StringProtocol) -> Int? {
        let whole = Substring(authority)
        let hostPort = whole.split(separator: "@").last ?? whole
        let afterHost: Substring
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { return nil }
            afterHost = hostPort[hostPort.index(after: close)...]
        } else {
            guard let colon = hostPort.firstIndex(of: ":"), hostPort.lastIndex(of: ":") == colon else { return nil }
            afterHost = hostPort[colon...]
        }
        guard afterHost.hasPrefix(":"), let port = Int(afterHost.dropFirst()), (0...65535).contains(port) else { return nil }
        return port
    }

    /// The port a url goes to: the one it names, else its scheme's default.
    public static func port(ofURL url: String) -> Int? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return port(ofAuthority: authority) ?? defaultPort(String(url[..<schemeEnd.lowerBound]))
    }
}

extension CallRecord {
    /// The port of the call's destination: the server's, or through a forward proxy the one its url or
    /// CONNECT target names; nil when neither does (the `tls` record of a tunnel: its port is the
    /// CONNECT's).
    public var destinationPort: Int? {
        guard proxy != nil else { return serverPort }
        if method == "CONNECT", let target = path { return CallURL.port(ofAuthority: target) }
        if let url { return CallURL.port(ofURL: url) }
        return nil
    }
}
