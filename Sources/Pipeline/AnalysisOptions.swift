import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

public struct AnalysisOptions: Sendable {
    /// Tag every call with this session.
    public var sessionId: String?
    /// The capture target (namespace or interface) calls are tagged with.
    public var target: String?
    /// Told of each new TCP connection (client address and port, server address and port, and the time
    /// of its first packet) on that packet, so the attribution stage can look its owner up while the socket
    /// exists. Must only hand the facts on: it runs on the packet thread.
    public var connectionOpened: (@Sendable (IPAddress, UInt16, IPAddress, UInt16, Int64) -> Void)?
    /// Told when a TCP connection is over, after its last call was emitted (so the attribution stage can
    /// forget its owner).
    public var connectionClosed: (@Sendable (IPAddress, UInt16, IPAddress, UInt16) -> Void)?
    /// Release calls in order of their start (offline reading). Live capture releases each call as
    /// soon as it completes instead, so a long-lived connection never holds others back.
    public var orderedOutput = true
    /// Keep loopback and link-local traffic (dropped by default).
    public var includeLocal = false
    /// Drop calls to these hosts (exact, or a suffix after a dot: "example.com" drops "api.example.com").
    public var excludeHosts: [String] = []
    /// TLS secrets (SSLKEYLOGFILE contents, pcapng Decryption Secrets Blocks): HTTPS is decrypted when set.
    public var keyLog: KeyLog?
    /// Keep short, redacted request/response summaries (opt-in).
    public var summaries = false
    public var summaryBytes = 256
    /// Body bytes an LLM API exchange may hold while it is read for its facts (model, tokens, stop
    /// reason, tool calls); streams hold one SSE line. Counted in the parsers' shared budget.
    public var llmBodyBytes = 1 << 20
    public var reassembly = ReassemblyLimits()
    public var http = HTTPLimits()
    /// How long a DNS lookup waits for its answer, and how long finished lookups are held for folding.
    public var dnsTimeout: Int64 = 5_000_000_000
    public var dnsFoldWindow: Int64 = 10_000_000_000
    /// Idle time after which a UDP/443 (QUIC) flow is reported.
    public var quicIdleTimeout: Int64 = 30_000_000_000
    /// Entries kept in the address → DNS name map used to name connections without SNI or Host.
    public var maxDNSNames = 0
    /// Finished calls held for ordering; beyond it the earliest are released at once (counted in
    /// `calls_released_early`), so a connection that never ends cannot hold every later call in memory.
    public var maxHeldCalls = 0
    /// Bytes all HTTP/1 parsers together may hold in head and chunk-line buffers (each is also capped on
    /// its own); beyond it the message that grew is given up (`parser_memory_refusals`).
    public var maxParserBufferBytes = 0

    /// TLS key log entries kept (a key log followed for weeks); beyond it the oldest half is forgotten.
    public var maxKeyLogEntries = 0
    /// Socket → owner entries the attribution stage keeps, and registry entries.
    public var maxSocketOwners = 0
    public var maxRegistryEntries = 0
    /// What the transcript join keeps of the agents' transcripts (`--transcripts`): tool-call ids,
    /// web_fetch windows and assistant turns; beyond a cap the oldest go (counted).
    public var maxTranscriptToolCallIds = 0
    public var maxTranscriptFetches = 0
    public var maxTranscriptTurns = 0
    /// UDP/443 (QUIC) flows tracked at once; beyond it the idlest half is reported early (counted).
    public var maxQUICFlows = 0
    /// IP datagrams being put back together from their fragments, and the bytes they may hold; beyond
    /// either the oldest are given up (counted in `ip_fragments_over_cap`).
    public var fragments = FragmentLimits()

    /// The memory budget the caps are set for unless `scaleCaps` is given another.
    public static let defaultMemoryMB = 256

    public init() {
        scaleCaps(toMemoryMB: Self.defaultMemoryMB)
    }

    /// Sets the caps that grow with the input — tracked connections, out-of-order bytes, calls held for
    /// ordering, parser buffers, DNS names, key log, socket owner and registry entries, QUIC flows, IP
    /// datagrams in reassembly — in proportion to a memory budget (`--memory-mb`). At 256 MB: 40,960
    /// connections, 32 MiB out of order, 20,000 held calls, 32 MiB of parser buffers, 65,536 names, 262,144
    /// key log entries, 65,536 socket owners and registry entries, 16,384 QUIC flows, 4,096 IP datagrams
    /// holding 16 MiB of fragments. The one place every cap is derived.
    public mutating func scaleCaps(toMemoryMB megabytes: Int) {
        let mb = max(16, megabytes)
        // Measured on hostile captures: an HTTP connection with a request in flight and a held hole costs
        // about 3 KB; the process itself about 28 MB.
        reassembly.maxConnections = mb * 160
        reassembly.maxPendingBytesTotal = mb << 17          // an eighth of the budget
        reassembly.maxPendingBytesPerConnection = min(4 << 20, reassembly.maxPendingBytesTotal / 4)
        maxHeldCalls = mb * 20_000 / 256
        maxParserBufferBytes = mb << 17                     // an eighth of the budget
        llmBodyBytes = min(1 << 20, maxParserBufferBytes / 16)
        maxDNSNames = mb * 256
        maxKeyLogEntries = mb * 1024                         // ~150 bytes each: about a sixth of the budget
        maxSocketOwners = mb * 256
        maxRegistryEntries = mb * 256
        // ~250 bytes a tool-call id (three keys for an OpenAI id), ~500 a fetch, ~200 a turn: about a tenth.
        maxTranscriptToolCallIds = mb * 256
        maxTranscriptFetches = mb * 64
        maxTranscriptTurns = mb * 128
        // A flow with its Initial reader costs about 1 KB beside the CRYPTO bytes the parser budget counts.
        maxQUICFlows = mb * 64
        // IP fragments: a sixteenth of the budget, as data and bookkeeping (an array may hold up to twice what
        // it counts while it grows); 16 datagrams per MB, each counted at 512 bytes before its data.
        fragments.maxDatagrams = mb * 16
        fragments.maxBytes = mb << 16
    }
}
