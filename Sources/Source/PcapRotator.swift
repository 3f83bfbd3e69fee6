import Core
import Decode
import CPcap
import Foundation

/// Writes captured packets to rotating pcap files (size and count limits), created 0600: they hold
/// everything on the wire, secrets included.
public final class PcapRotator {
    public let directory: String
    public let prefix: String
    public let maxBytes: Int
    public let maxFiles: Int
    private let dead: OpaquePointer
    private var dumper: OpaquePointer?
    private var written = 0
    private var sequence = 0
    private var files: [String] = []
    public private(set) var filesWritten = 0

    public init(directory: String, prefix: String, linkType: LinkType, snaplen: Int32, maxBytes: Int, maxFiles: Int) throws {
        self.directory = directory
        self.prefix = prefix
        self.maxBytes = max(4096, maxBytes)
        self.maxFiles = max(1, maxFiles)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // Files that hold every secret on the wire go only where no one else can plant a name or a link.
        do { try SafeFiles.checkDirectory(directory) } catch { throw CaptureError.open(path: directory, message: "\(error)") }
        guard let d = pcap_open_dead_with_tstamp_precision(linkType.rawValue, snaplen, UInt32(PCAP_TSTAMP_PRECISION_NANO)) else {
            throw CaptureError.open(path: directory, message: "cannot prepare pcap writer")
        }
        dead = d
        // Files from an earlier run count towards the limit.
        files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix(prefix + "-") && $0.hasSuffix(".pcap") }.sorted().map { "\(directory)/\($0)" }
        try rotate()
    }

    deinit {
        if let dumper { pcap_dump_close(dumper) }
        pcap_close(dead)
    }

    public func write(_ frame: UnsafeRawBufferPointer, wireLength: Int, timestamp: Nanos) throws {
        if written >= maxBytes { try rotate() }
        guard let dumper, let base = frame.baseAddress else { return }
        var h = pcap_pkthdr()
        h.ts.tv_sec = Int(timestamp / 1_000_000_000)
        h.ts.tv_usec = Int(timestamp % 1_000_000_000) // nanoseconds: the file is written with ns precision
        h.caplen = UInt32(frame.count)
        h.len = UInt32(wireLength)
        withUnsafePointer(to: &h) { hp in
            pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), hp,
                      base.assumingMemoryBound(to: UInt8.self))
        }
        written += frame.count + 16
    }

    public func close() {
        if let dumper { pcap_dump_close(dumper) }
        dumper = nil
    }

    private func rotate() throws {
        if let dumper { pcap_dump_close(dumper) }
        dumper = nil
        sequence += 1
        let stamp = Int(Date().timeIntervalSince1970)
        // A name no one can guess ahead, created exclusively and never through a link: a file or link
        // planted under the name makes the rotation fail, it never writes elsewhere.
        let nonce = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let path = String(format: "%@/%@-%d-%04d-%@.pcap", directory, prefix, stamp, sequence, nonce)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0, let file = fdopen(fd, "w") else {
            throw CaptureError.open(path: path, message: String(cString: strerror(errno)))
        }
        guard let d = pcap_dump_fopen(dead, file) else {
            fclose(file)
            throw CaptureError.open(path: path, message: String(cString: pcap_geterr(dead)))
        }
        dumper = d
        written = 24
        files.append(path)
        filesWritten += 1
        while files.count > maxFiles {
            try? FileManager.default.removeItem(atPath: files.removeFirst())
        }
    }
}
