import Core
import Decode
import CPcap
import Foundation

public struct LiveCaptureOptions: Sendable {
    public var interface = "any"
    public var snaplen: Int32 = 262_144
    public var bufferSize: Int32 = 32 << 20
    /// Deliver packets as they arrive (lower latency, more kernel drops under load).
    public var immediate = false
    public var timeoutMillis: Int32 = 100
    public var filter: String?
    public init() {}
}

public struct LiveStats: Sendable {
    public var received: UInt32
    public var kernelDrops: UInt32
    public var interfaceDrops: UInt32
}

/// Live capture through libpcap on the calling thread. Create, run and close it on one dedicated thread:
/// after `enterNetworkNamespace` that thread (and only it) lives in the target namespace.
public final class LiveCapture: @unchecked Sendable {
    private let handle: OpaquePointer
    public let linkType: LinkType
    public let interface: String

    /// Moves the calling thread into the network namespace at `path` (/var/run/netns/NAME or /proc/PID/ns/net).
    public static func enterNetworkNamespace(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CaptureError.open(path: path, message: "cannot open namespace: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard calltap_enter_netns(fd) == 0 else {
            throw CaptureError.open(path: path, message: "setns failed: \(String(cString: strerror(errno)))")
        }
    }

    public init(options: LiveCaptureOptions) throws {
        interface = options.interface
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_create(options.interface, &errbuf) else {
            throw CaptureError.open(path: options.interface, message: errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        pcap_set_snaplen(h, options.snaplen)
        pcap_set_buffer_size(h, options.bufferSize)
        pcap_set_timeout(h, options.timeoutMillis)
        pcap_set_immediate_mode(h, options.immediate ? 1 : 0)
        pcap_set_tstamp_precision(h, Int32(PCAP_TSTAMP_PRECISION_NANO))
        let rc = pcap_activate(h)
        if rc < 0 {
            let message = String(cString: pcap_geterr(h))
            pcap_close(h)
            throw CaptureError.open(path: options.interface, message: message)
        }
        let dlt = pcap_datalink(h)
        guard let lt = LinkType(rawValue: dlt) else {
            pcap_close(h)
            throw CaptureError.unsupportedLinkType(path: options.interface, dlt: dlt, name: "DLT \(dlt)")
        }
        if let filter = options.filter, !filter.isEmpty {
            var program = bpf_program()
            if pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(h, &program) != 0 {
                let message = String(cString: pcap_geterr(h))
                pcap_freecode(&program)
                pcap_close(h)
                throw CaptureError.filter(expression: filter, message: message)
            }
            pcap_freecode(&program)
        }
        handle = h
        linkType = lt
    }

    deinit { pcap_close(handle) }

    /// Reads packets until `stop()` or an error; `idle` runs at least every timeout so timers fire even
    /// when no packet arrives (also in immediate mode, where libpcap itself would block).
    /// Returns the error message when the interface failed.
    public func run(_ body: (UnsafeRawBufferPointer, Int, Nanos) -> Void, idle: () -> Void) -> String? {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        pcap_setnonblock(handle, 1, &errbuf)
        let fd = pcap_get_selectable_fd(handle)
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        var lastIdle = DispatchTime.now().uptimeNanoseconds
        while !stopped.withLock({ $0 }) {
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                let h = header.pointee
                body(UnsafeRawBufferPointer(start: data, count: Int(h.caplen)), Int(h.len),
                     captureNanos(seconds: h.ts.tv_sec, fraction: h.ts.tv_usec) ?? 0)
                let now = DispatchTime.now().uptimeNanoseconds
                if now - lastIdle > 100_000_000 { idle(); lastIdle = now }
            } else if rc == 0 {
                idle()
                lastIdle = DispatchTime.now().uptimeNanoseconds
                if fd >= 0 {
                    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    _ = poll(&p, 1, 100)
                } else {
                    usleep(10_000)
                }
            } else if rc == PCAP_ERROR_BREAK {
                return nil
            } else {
                return String(cString: pcap_geterr(handle))
            }
        }
        return nil
    }

    private let stopped = NSLockedFlag()

    /// Makes `run` return; safe from another thread.
    public func stop() {
        stopped.withLock { $0 = true }
        pcap_breakloop(handle)
    }

    public func stats() -> LiveStats? {
        var s = pcap_stat()
        guard pcap_stats(handle, &s) == 0 else { return nil }
        return LiveStats(received: s.ps_recv, kernelDrops: s.ps_drop, interfaceDrops: s.ps_ifdrop)
    }
}

/// A Bool behind a lock, shared between the capture thread and whoever stops it.
final class NSLockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func withLock<T>(_ body: (inout Bool) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
