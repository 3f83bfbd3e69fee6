/// Counters of one analysis run (or one interval of a live capture). Every cap that drops or skips
/// data has its own counter here, so nothing is lost silently.
public struct CaptureStats: Sendable, Equatable {
    public var packets = 0
    public var bytes = 0
    public var tcpPackets = 0
    public var udpPackets = 0
    public var nonIPPackets = 0
    public var ipFragments = 0
    public var otherTransportPackets = 0
    public var malformedPackets = 0
    public var snapTruncatedPackets = 0
    public var flows = 0
    public var midStreamFlows = 0
    public var gaps = 0
    public var missedBytes = 0
    public var retransmittedSegments = 0
    public var outOfOrderSegments = 0
    public var reassemblyCapFlushes = 0
    public var evictedIdle = 0
    public var evictedForCapacity = 0
    public var parseErrors = 0
    public var httpPendingDropped = 0
    public var dnsMalformed = 0
    public var dnsUnanswered = 0
    public var dnsFolded = 0
    public var calls = 0
    public var excludedLocal = 0
    public var excludedHost = 0
    public var excludedCgroup = 0
    /// Packets seen twice with `-i any` (on several interfaces), dropped.
    public var duplicatePackets = 0
    public var decryptedRecords = 0
    public var undecryptableRecords = 0
    public var http2Connections = 0
    /// HTTP/2 streams the server pushed (counted, not reported as calls).
    public var http2PushedStreams = 0
    /// HTTP/2 streams given up because too many were open at once.
    public var http2StreamsDropped = 0
    /// Address → name entries forgotten when the DNS name map was full.
    public var dnsNamesDropped = 0
    public var kernelDrops = 0
    public var unattributedConnections = 0
    /// Calls released before the ordering watermark because too many were waiting (a long connection held
    /// it back); they may come out of start order.
    public var callsReleasedEarly = 0
    /// Messages and directions given up because all parsers together (HTTP/1 heads, HTTP/2 frames and
    /// HPACK tables, TLS handshakes and held records, undecided streams) held their byte budget.
    public var parserMemoryRefusals = 0
    /// Finished calls dropped because a stage's queue or the database's hold was full (a live capture).
    public var callsNotStored = 0
    /// Session ids from the wire (`x-session-id`, `baggage`) outside the session-id policy, ignored.
    public var sessionIdsRejected = 0
    /// LLM API bodies that could not be read (larger than the budget allows, compressed beyond it, or not
    /// JSON): their calls have no token counts.
    public var llmBodiesUnread = 0
    /// Calls whose process the kernel recorded at connect time, the socket table showed, or the processes
    /// alive at the time suggested (`owner_source`).
    public var ownerConnect = 0
    public var ownerSocketTable = 0
    public var ownerProcessEvents = 0
    /// Connect-time records the kernel could not hand over (its ring buffer was full), or that were
    /// forgotten at the memory cap before their connection was seen.
    public var bpfEventsLost = 0
    /// Registrations the verified socket refused (another user's process, not the caller's own).
    public var registrationsRefused = 0
    /// Transcript entries read (`--transcripts`), and those skipped: not JSON, longer than the line cap,
    /// failing to decompress, in a file refused (a symbolic link), or forgotten at the index's caps.
    public var transcriptEntries = 0
    public var transcriptEntriesSkipped = 0
    /// Calls whose session a transcript key decided (`attribution_key`), and calls held for the
    /// transcripts that no key decided (released as the earlier rules left them).
    public var sessionByToolCallId = 0
    public var sessionByWebFetch = 0
    public var sessionByTraceId = 0
    public var sessionByTranscriptTurn = 0
    public var transcriptUndecided = 0
    /// QUIC flows reported before their idle timeout because more were tracked than the cap allows.
    public var quicFlowsReportedEarly = 0
    /// IP datagrams put back together from their fragments (each fragment is also in `ipFragments`), and
    /// fragments given up: duplicates of data held (dropped, the datagram kept, as Linux does), fragments of
    /// datagrams discarded for an overlap, as inconsistent (empty, past the end, two different ends), still
    /// incomplete 30 s (capture time) after their first fragment or at the end of the input, or at a cap
    /// (datagrams in progress, bytes held, larger than 65,535 bytes).
    public var ipDatagramsReassembled = 0
    public var ipFragmentsDuplicate = 0
    public var ipFragmentsOverlapping = 0
    public var ipFragmentsInvalid = 0
    public var ipFragmentsTimedOut = 0
    public var ipFragmentsOverCap = 0

    public init() {}

    /// Name/value pairs in a fixed order, for tables, storage and the API.
    public var fields: [(String, Int)] {
        [
            ("packets", packets), ("bytes", bytes), ("tcp_packets", tcpPackets), ("udp_packets", udpPackets),
            ("non_ip_packets", nonIPPackets), ("ip_fragments", ipFragments),
            ("other_transport_packets", otherTransportPackets), ("malformed_packets", malformedPackets),
            ("snap_truncated_packets", snapTruncatedPackets), ("flows", flows), ("mid_stream_flows", midStreamFlows),
            ("gaps", gaps), ("missed_bytes", missedBytes), ("retransmitted_segments", retransmittedSegments),
            ("out_of_order_segments", outOfOrderSegments), ("reassembly_cap_flushes", reassemblyCapFlushes),
            ("evicted_idle", evictedIdle), ("evicted_for_capacity", evictedForCapacity),
            ("parse_errors", parseErrors), ("http_pending_dropped", httpPendingDropped),
            ("dns_malformed", dnsMalformed), ("dns_unanswered", dnsUnanswered), ("dns_folded", dnsFolded),
            ("calls", calls), ("excluded_local", excludedLocal), ("excluded_host", excludedHost), ("excluded_cgroup", excludedCgroup), ("duplicate_packets", duplicatePackets),
            ("decrypted_records", decryptedRecords), ("undecryptable_records", undecryptableRecords),
            ("http2_connections", http2Connections), ("http2_streams_dropped", http2StreamsDropped),
            ("http2_pushed_streams", http2PushedStreams),
            ("dns_names_dropped", dnsNamesDropped), ("kernel_drops", kernelDrops), ("unattributed_connections", unattributedConnections),
            ("calls_released_early", callsReleasedEarly), ("parser_memory_refusals", parserMemoryRefusals),
            ("calls_not_stored", callsNotStored), ("session_ids_rejected", sessionIdsRejected),
            ("owner_connect", ownerConnect), ("owner_socket_table", ownerSocketTable),
            ("owner_process_events", ownerProcessEvents), ("bpf_events_lost", bpfEventsLost),
            ("registrations_refused", registrationsRefused), ("llm_bodies_unread", llmBodiesUnread),
            ("transcript_entries", transcriptEntries), ("transcript_entries_skipped", transcriptEntriesSkipped),
            ("session_by_tool_call_id", sessionByToolCallId), ("session_by_web_fetch", sessionByWebFetch),
            ("session_by_trace_id", sessionByTraceId), ("session_by_transcript_turn", sessionByTranscriptTurn),
            ("transcript_undecided", transcriptUndecided), ("quic_flows_reported_early", quicFlowsReportedEarly),
            ("ip_datagrams_reassembled", ipDatagramsReassembled), ("ip_fragments_duplicate", ipFragmentsDuplicate),
            ("ip_fragments_overlapping", ipFragmentsOverlapping), ("ip_fragments_invalid", ipFragmentsInvalid),
            ("ip_fragments_timed_out", ipFragmentsTimedOut), ("ip_fragments_over_cap", ipFragmentsOverCap),
        ]
    }

    /// Counters of `self` as name/value pairs less those of `earlier` (for per-interval rows).
    public func delta(since earlier: CaptureStats) -> [(String, Int)] {
        let before = Dictionary(earlier.fields, uniquingKeysWith: { a, _ in a })
        return fields.map { ($0.0, $0.1 - (before[$0.0] ?? 0)) }
    }
}

