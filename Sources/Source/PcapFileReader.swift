import Core
import Decode
import CPcap

public enum CaptureError: Error, CustomStringConvertible, Sendable {
    case open(path: String, message: String)
    case unsupportedLinkType(path: String, dlt: Int32, name: String)
    case filter(expression: String, message: String)

    public var description: String {
        switch self {
        case let .open(path, message): return "cannot read capture \(path): \(message)"
        case let .unsupportedLinkType(path, dlt, name):
            return "capture \(path) has unsupported link type \(name) (DLT \(dlt))"
        case let .filter(expression, message): return "bad filter '\(expression)': \(message)"
        }
    }
}

/// How a file read ended.
public struct ReadOutcome: Sendable {
    /// Packets handed to the callback.
    public var packets = 0
    /// Set when libpcap stopped on damage (truncated or corrupt file) rather than at end of file.
    public var damage: String?
    /// Records whose timestamp could not be represented; they took the previous record's time.
    public var badTimestamps = 0
}

/// Reads a pcap or pcapng file (or "-" for standard input) through libpcap, with nanosecond timestamps.
/// Owns the pcap_t; not shared across threads.
public final class PcapFileReader {
    public let path: String
    public let linkType: LinkType
    private let handle: OpaquePointer

    public init(path: String, filter: String? = nil) throws {
        self.path = path
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = calltap_open_offline(path, &errbuf) else {
            throw CaptureError.open(path: path, message: errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        let dlt = pcap_datalink(h)
        guard let lt = LinkType(rawValue: dlt) else {
            let name = pcap_datalink_val_to_name(dlt).map { String(cString: $0) } ?? "unknown"
            pcap_close(h)
            throw CaptureError.unsupportedLinkType(path: path, dlt: dlt, name: name)
        }
        if let filter, !filter.isEmpty {
            var program = bpf_program()
            // Close by hand only before the stored properties are set; after that deinit owns the handle.
            if pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 {
                let message = String(cString: pcap_geterr(h))
                pcap_close(h)
                throw CaptureError.filter(expression: filter, message: message)
            }
            let rc = pcap_setfilter(h, &program)
            pcap_freecode(&program)
            if rc != 0 {
                let message = String(cString: pcap_geterr(h))
                pcap_close(h)
                throw CaptureError.filter(expression: filter, message: message)
            }
        }
        handle = h
        linkType = lt
    }

    deinit { pcap_close(handle) }

    /// Makes a `forEach` running on another thread return after its current packet, as if the file ended.
    public func stop() { pcap_breakloop(handle) }

    /// Calls `body` for every packet with the captured bytes (valid only during the call), the wire length,
    /// and the timestamp. Stops at end of file or at the first damage, which it reports.
    public func forEach(_ body: (UnsafeRawBufferPointer, Int, Nanos) -> Void) -> ReadOutcome {
        var outcome = ReadOutcome()
        var lastTimestamp: Nanos = 0
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while true {
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                let h = header.pointee
                // A timestamp out of range keeps the previous packet's time (counted), rather than trapping.
                let ts: Nanos
                if let t = captureNanos(seconds: h.ts.tv_sec, fraction: h.ts.tv_usec) {
                    ts = t
                    lastTimestamp = t
                } else {
                    ts = lastTimestamp
                    outcome.badTimestamps += 1
                }
                body(UnsafeRawBufferPointer(start: data, count: Int(h.caplen)), Int(h.len), ts)
                outcome.packets += 1
            } else if rc == PCAP_ERROR_BREAK || rc == -2 {
                break
            } else {
                outcome.damage = String(cString: pcap_geterr(handle))
                break
            }
        }
        return outcome
    }
}
