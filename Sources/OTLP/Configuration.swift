import Foundation

/// Where and how to export: the endpoint, headers and resource, from the command line and the standard
/// environment variables (https://opentelemetry.io/docs/specs/otel/protocol/exporter/ and
/// https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/).
///
/// - `--otlp-endpoint URL` or `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL; `v1/traces` and `v1/metrics`
///   are appended to its path. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `…_METRICS_ENDPOINT` are used as
///   they are. The flag wins over the variables.
/// - `--otlp-header K=V` (repeatable) and `OTEL_EXPORTER_OTLP_HEADERS` (`k1=v1,k2=v2`, values
///   percent-decoded); a flag's header replaces the variable's of the same name.
/// - `OTEL_SERVICE_NAME` (default `calltap`), `OTEL_RESOURCE_ATTRIBUTES` (`k=v,…`), and `host.name`.
public struct OTLPConfiguration: Sendable, Equatable {
    public var tracesURL: URL
    public var metricsURL: URL
    public var headers: [(String, String)]
    public var resource: OTLPResource
    /// How long `read` keeps trying an endpoint that does not answer before giving up (seconds).
    public var timeout: Double

    public static func == (a: OTLPConfiguration, b: OTLPConfiguration) -> Bool {
        a.tracesURL == b.tracesURL && a.metricsURL == b.metricsURL && a.resource == b.resource && a.timeout == b.timeout
            && a.headers.map { [$0.0, $0.1] } == b.headers.map { [$0.0, $0.1] }
    }

    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// Builds the configuration, or nil when no endpoint is set anywhere. `environment` is normally
    /// `ProcessInfo.processInfo.environment`.
    public static func resolve(endpoint: String?, headers: [String], timeout: Double, environment: [String: String],
                               hostName: String) throws -> OTLPConfiguration? {
        let base = endpoint ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
        let tracesOverride = endpoint == nil ? environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } : nil
        let metricsOverride = endpoint == nil ? environment["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } : nil
        guard base != nil || tracesOverride != nil else { return nil }
        func checked(_ text: String, what: String) throws -> URL {
            guard let u = URL(string: text), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  let host = u.host, !host.isEmpty else {
                throw Problem(description: "\(what) must be an http:// or https:// URL, not '\(Self.withoutCredentials(text))'")
            }
            return u
        }
        func signal(_ base: String, _ path: String) throws -> URL {
            let u = try checked(base, what: endpoint != nil ? "--otlp-endpoint" : "OTEL_EXPORTER_OTLP_ENDPOINT")
            guard var c = URLComponents(url: u, resolvingAgainstBaseURL: false) else {
                throw Problem(description: "cannot parse the OTLP endpoint '\(Self.withoutCredentials(base))'")
            }
            var p = c.path
            if !p.hasSuffix("/") { p += "/" }
            c.path = p + path
            guard let out = c.url else { throw Problem(description: "cannot parse the OTLP endpoint '\(Self.withoutCredentials(base))'") }
            return out
        }
        let traces = try tracesOverride.map { try checked($0, what: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") }
            ?? signal(base!, "v1/traces")
        let metrics: URL
        if let metricsOverride {
            metrics = try checked(metricsOverride, what: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        } else if let base {
            metrics = try signal(base, "v1/metrics")
        } else {
            // Only a traces endpoint: metrics go beside it.
            var c = URLComponents(url: traces, resolvingAgainstBaseURL: false)!
            c.path = c.path.hasSuffix("/v1/traces") ? String(c.path.dropLast("traces".count)) + "metrics" : c.path
            metrics = c.url ?? traces
        }

        var merged: [(String, String)] = []
        func put(_ k: String, _ v: String) {
            merged.removeAll { $0.0.lowercased() == k.lowercased() }
            merged.append((k, v))
        }
        for (k, v) in try parsePairs(environment["OTEL_EXPORTER_OTLP_HEADERS"] ?? "", what: "OTEL_EXPORTER_OTLP_HEADERS") { put(k, v) }
        for h in headers {
            let kv = h.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].trimmingCharacters(in: .whitespaces).isEmpty else {
                // Never the value: a header given as "Authorization: Bearer …" is a secret.
                throw Problem(description: "--otlp-header must be NAME=VALUE (one was given without '=')")
            }
            put(kv[0].trimmingCharacters(in: .whitespaces), String(kv[1]))
        }
        for (k, v) in merged {
            let bad = k.unicodeScalars.contains { !($0.isASCII && $0.value > 32 && $0.value < 127 && $0 != ":") }
                || v.unicodeScalars.contains { $0 == "\r" || $0 == "\n" || $0 == "\0" }
            if bad {
                let name = String(k.unicodeScalars.prefix(40).map { $0.isASCII && $0.value >= 32 && $0.value < 127 ? Character($0) : "?" })
                throw Problem(description: "OTLP header '\(name)' has characters a header cannot carry")
            }
        }

        var attributes: [OTLPAttribute] = []
        func set(_ k: String, _ v: String) {
            attributes.removeAll { $0.key == k }
            attributes.append(OTLPAttribute(k, .string(v)))
        }
        set("service.name", "calltap")
        set("host.name", hostName)
        for (k, v) in try parsePairs(environment["OTEL_RESOURCE_ATTRIBUTES"] ?? "", what: "OTEL_RESOURCE_ATTRIBUTES") { set(k, v) }
        if let name = environment["OTEL_SERVICE_NAME"], !name.isEmpty { set("service.name", name) }
        return OTLPConfiguration(tracesURL: traces, metricsURL: metrics, headers: merged,
                                 resource: OTLPResource(attributes: attributes), timeout: timeout)
    }

    /// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage form the variables use).
    static func parsePairs(_ text: String, what: String) throws -> [(String, String)] {
        var out: [(String, String)] = []
        for member in text.split(separator: ",") {
            let trimmed = member.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let kv = trimmed.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw Problem(description: "\(what): member \(out.count + 1) is not key=value") }
            let k = kv[0].trimmingCharacters(in: .whitespaces)
            let raw = kv[1].trimmingCharacters(in: .whitespaces)
            guard !k.isEmpty, let v = raw.removingPercentEncoding else {
                throw Problem(description: "\(what): member \(out.count + 1) is not key=value (or its value is badly percent-encoded)")
            }
            out.append((k, v))
        }
        return out
    }

    /// An endpoint as it may be shown in a message: whatever precedes an `@` in its authority (a user
    /// name and password) left out.
    static func withoutCredentials(_ text: String) -> String {
        guard let scheme = text.range(of: "://") else { return text }
        let rest = text[scheme.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return text }
        return String(text[..<scheme.upperBound]) + "…@" + String(rest[rest.index(after: at)...])
    }
}
