import Foundation

/// TLS secrets in the NSS key log format (SSLKEYLOGFILE; RFC 9850): `LABEL <client random hex> <secret hex>`
/// per line, with `#` comments and blank lines. Secrets are never logged or stored.
public final class KeyLog: @unchecked Sendable {
    public enum Label: String, CaseIterable, Sendable {
        case clientRandom = "CLIENT_RANDOM"
        case clientEarlyTrafficSecret = "CLIENT_EARLY_TRAFFIC_SECRET"
        case clientHandshakeTrafficSecret = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
        case serverHandshakeTrafficSecret = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
        case clientTrafficSecret0 = "CLIENT_TRAFFIC_SECRET_0"
        case serverTrafficSecret0 = "SERVER_TRAFFIC_SECRET_0"
        case exporterSecret = "EXPORTER_SECRET"
        case earlyExporterSecret = "EARLY_EXPORTER_SECRET"
    }

    // A daemon adds lines from a file follower while capture threads look keys up.
    private let lock = NSLock()
    /// Secrets in two generations: when the newer holds half of `maxEntries`, the older is forgotten
    /// (counted in `forgotten`) and the newer takes its place, so a key log that grows for weeks stays bounded.
    private var secrets: [Label: [[UInt8]: [UInt8]]] = [:]
    private var older: [Label: [[UInt8]: [UInt8]]] = [:]
    private var newerCount = 0
    private var _forgotten = 0
    /// Entries kept at most (set from the memory budget).
    public var maxEntries = Int.max
    public var forgotten: Int { lock.withLock { _forgotten } }
    private var _entries = 0
    private var _malformed = 0
    private var _generation = 0
    public var entries: Int { lock.withLock { _entries } }
    public var malformedLines: Int { lock.withLock { _malformed } }
    /// Changes whenever a secret is added, so waiting connections know to look again.
    public var generation: Int { lock.withLock { _generation } }

    static let ignoredLabels: Set<String> = ["RSA", "PMS_CLIENT_RANDOM"]

    public init() {}

    /// Adds every line of `text`; malformed lines are counted and skipped.
    public func add(text: String) {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            add(line: line)
        }
    }

    public func add(line: Substring) {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return }
        let parts = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
        // Labels for key exchanges we do not use (RSA pre-master secrets) are valid lines, not errors.
        if let first = parts.first, Self.ignoredLabels.contains(String(first)) { return }
        guard parts.count == 3, let label = Label(rawValue: String(parts[0])),
              let random = Self.hex(parts[1]), random.count == 32,
              let secret = Self.hex(parts[2]), !secret.isEmpty, secret.count <= 64 else {
            lock.withLock { _malformed += 1 }
            return
        }
        lock.withLock {
            if secrets[label, default: [:]][random] == nil && older[label]?[random] == nil {
                _entries += 1
                newerCount += 1
            }
            secrets[label, default: [:]][random] = secret
            _generation += 1
            if newerCount > maxEntries / 2 {
                let dropped = older.values.reduce(0) { $0 + $1.count }
                _forgotten += dropped
                _entries -= dropped
                older = secrets
                secrets = [:]
                newerCount = 0
            }
        }
    }

    public func secret(_ label: Label, clientRandom: [UInt8]) -> [UInt8]? {
        lock.withLock { secrets[label]?[clientRandom] ?? older[label]?[clientRandom] }
    }

    public var isEmpty: Bool { entries == 0 }

    static func hex(_ s: Substring) -> [UInt8]? {
        guard s.utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var high: UInt8?
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x41...0x46: v = c - 0x41 + 10
            case 0x61...0x66: v = c - 0x61 + 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out
    }
}
