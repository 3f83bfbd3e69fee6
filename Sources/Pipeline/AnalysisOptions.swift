import Analysers
import Reassembly

public struct AnalysisOptions: Sendable {
    /// Tag every call with this session.
    public var sessionId: String?
    /// Keep loopback and link-local traffic (dropped by default).
    public var includeLocal = false
    /// Drop calls to these hosts (exact, or a suffix after a dot: "example.com" drops "api.example.com").
    public var excludeHosts: [String] = []
    /// TLS secrets (SSLKEYLOGFILE contents, pcapng Decryption Secrets Blocks): HTTPS is decrypted when set.
    public var keyLog: KeyLog?
    /// Keep short, redacted request/response summaries (opt-in).
    public var summaries = false
    public var summaryBytes = 256
    public var reassembly = ReassemblyLimits()
    public var http = HTTPLimits()
    /// How long a DNS lookup waits for its answer, and how long finished lookups are held for folding.
    public var dnsTimeout: Int64 = 5_000_000_000
    public var dnsFoldWindow: Int64 = 10_000_000_000
    /// Idle time after which a UDP/443 (QUIC) flow is reported.
    public var quicIdleTimeout: Int64 = 30_000_000_000
    /// Entries kept in the address → DNS name map used to name connections without SNI or Host.
    public var maxDNSNames = 65_536

    public init() {}
}
