import Core
import Foundation

/// A TCP socket by its local and remote endpoints, as the kernel lists it.
public struct SocketKey: Hashable, Sendable {
    public var local: IPAddress
    public var localPort: UInt16
    public var remote: IPAddress
    public var remotePort: UInt16

    public init(local: IPAddress, localPort: UInt16, remote: IPAddress, remotePort: UInt16) {
        self.local = local
        self.localPort = localPort
        self.remote = remote
        self.remotePort = remotePort
    }
}

/// Reads the TCP socket tables of the calling thread's network namespace (/proc/thread-self/net/tcp{,6}).
public enum SocketTable {
    public struct Entry: Sendable {
        public var inode: UInt64
        public var uid: Int
    }

    /// The calling thread's namespace's TCP sockets: netlink sock_diag first (cheap), /proc/net/tcp{,6}
    /// as a fallback (the kernel walks its whole connection hash table for that file: milliseconds on
    /// a large machine).
    public static func read(base: String = "/proc/thread-self/net") -> [SocketKey: Entry] {
        if let viaNetlink = SockDiag.dump() { return viaNetlink }
        return readProc(base: base)
    }

    static func readProc(base: String) -> [SocketKey: Entry] {
        var out: [SocketKey: Entry] = [:]
        for file in ["tcp", "tcp6"] {
            guard let text = ProcFile.read("\(base)/\(file)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count >= 10, let local = endpoint(f[1]), let remote = endpoint(f[2]),
                      let uid = Int(f[7]), let inode = UInt64(f[9]), inode != 0 else { continue }
                out[SocketKey(local: local.0, localPort: local.1, remote: remote.0, remotePort: remote.1)] =
                    Entry(inode: inode, uid: uid)
            }
        }
        return out
    }

    /// "0100007F:1F90" (IPv4) or 32 hex digits (IPv6), each 32-bit word in host (little-endian) order.
    static func endpoint(_ s: Substring) -> (IPAddress, UInt16)? {
        let parts = s.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1], radix: 16) else { return nil }
        let hex = parts[0]
        func word(_ i: Int) -> UInt32? {
            let start = hex.index(hex.startIndex, offsetBy: i * 8)
            guard let v = UInt32(hex[start..<hex.index(start, offsetBy: 8)], radix: 16) else { return nil }
            return v.byteSwapped
        }
        if hex.count == 8, let w = word(0) { return (IPAddress(v4: w), port) }
        guard hex.count == 32, let a = word(0), let b = word(1), let c = word(2), let d = word(3) else { return nil }
        let addr = IPAddress(high: UInt64(a) << 32 | UInt64(b), low: UInt64(c) << 32 | UInt64(d))
        // IPv4-mapped sockets of dual-stack listeners: keep the IPv4 form the packets carry.
        return (addr, port)
    }
}

/// What calltap records about a process.
public struct ProcessFacts: Sendable, Equatable {
    public var pid: Int
    public var ppid: Int
    public var comm: String
    public var exe: String?
    public var cgroup: String?
    /// Field 22 of /proc/PID/stat: start time in clock ticks, to tell a reused PID.
    public var startTime: UInt64
}

/// Reads /proc: process facts, and which process holds a socket inode.
public enum ProcessTable {
    public static func facts(_ pid: Int) -> ProcessFacts? {
        guard let stat = ProcFile.read("/proc/\(pid)/stat"),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let comm = String(stat[stat.index(after: open)..<close])
        let rest = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        // rest[0] is field 3 (state): ppid is field 4, starttime field 22.
        guard rest.count > 19, let ppid = Int(rest[1]), let start = UInt64(rest[19]) else { return nil }
        let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        let cgroup = ProcFile.read("/proc/\(pid)/cgroup")
            .flatMap { $0.split(separator: "\n").first { $0.hasPrefix("0::") } }
            .map { String($0.dropFirst(3)) }
        return ProcessFacts(pid: pid, ppid: ppid, comm: comm, exe: exe, cgroup: cgroup, startTime: start)
    }

    public static func allPIDs() -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int.init)
    }

    /// Socket inodes held by `pid` (from its /proc/PID/fd links "socket:[inode]").
    public static func socketInodes(_ pid: Int) -> [UInt64] {
        let dir = "/proc/\(pid)/fd"
        guard let fds = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var out: [UInt64] = []
        var buffer = [CChar](repeating: 0, count: 64)
        for fd in fds {
            let n = readlink("\(dir)/\(fd)", &buffer, buffer.count - 1)
            guard n > 9 else { continue }
            let text = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("socket:["), text.hasSuffix("]"), let inode = UInt64(text.dropFirst(8).dropLast()) else { continue }
            out.append(inode)
        }
        return out
    }

    /// Children of every process (from /proc/PID/stat), for walking from registered processes down.
    public static func childrenMap(_ pids: [Int]) -> [Int: [Int]] {
        var map: [Int: [Int]] = [:]
        for pid in pids {
            if let f = facts(pid) { map[f.ppid, default: []].append(pid) }
        }
        return map
    }
}

/// Reads a procfs file to its end: they report a size of 0, so read until EOF rather than trusting stat.
enum ProcFile {
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
            if out.count > 64 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// NETLINK_SOCK_DIAG dumps of TCP sockets (inet_diag), in the calling thread's network namespace.
enum SockDiag {
    /// Every TCP socket but TIME_WAIT ones (those have no owner left), IPv4 and IPv6; nil when netlink fails.
    static func dump() -> [SocketKey: SocketTable.Entry]? {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [SocketKey: SocketTable.Entry] = [:]
        for family in [UInt8(AF_INET), UInt8(AF_INET6)] {
            guard request(fd, family: family), receive(fd, into: &out) else { return nil }
        }
        return out
    }

    private static func request(_ fd: Int32, family: UInt8) -> Bool {
        // nlmsghdr (16) + inet_diag_req_v2 (56)
        var m = [UInt8](repeating: 0, count: 72)
        func put32(_ v: UInt32, _ at: Int) { for k in 0..<4 { m[at + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }
        put32(72, 0)
        m[4] = 20 // SOCK_DIAG_BY_FAMILY
        m[6] = 0x01; m[7] = 0x03 // NLM_F_REQUEST | NLM_F_DUMP
        m[16] = family
        m[17] = 6 // IPPROTO_TCP
        put32(0xFFF & ~(1 << 6), 20) // every state but TIME_WAIT
        return m.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == 72
    }

    private static func receive(_ fd: Int32, into out: inout [SocketKey: SocketTable.Entry]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 32_768)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return false }
            var off = 0
            while off + 16 <= n {
                let len = Int(ProcessEvents.u32(buffer, off))
                let type = UInt16(buffer[off + 4]) | UInt16(buffer[off + 5]) << 8
                guard len >= 16, off + len <= n else { return false }
                if type == 3 { return true } // NLMSG_DONE
                if type == 2 { return false } // NLMSG_ERROR
                let d = off + 16
                if len >= 16 + 72 {
                    let family = buffer[d]
                    let sport = UInt16(buffer[d + 4]) << 8 | UInt16(buffer[d + 5])
                    let dport = UInt16(buffer[d + 6]) << 8 | UInt16(buffer[d + 7])
                    func address(_ at: Int) -> IPAddress {
                        if family == UInt8(AF_INET) {
                            return IPAddress(v4: UInt32(buffer[at]) << 24 | UInt32(buffer[at + 1]) << 16
                                | UInt32(buffer[at + 2]) << 8 | UInt32(buffer[at + 3]))
                        }
                        var hi: UInt64 = 0, lo: UInt64 = 0
                        for k in 0..<8 { hi = hi << 8 | UInt64(buffer[at + k]) }
                        for k in 8..<16 { lo = lo << 8 | UInt64(buffer[at + k]) }
                        return IPAddress(high: hi, low: lo)
                    }
                    let uid = Int(ProcessEvents.u32(buffer, d + 64))
                    let inode = UInt64(ProcessEvents.u32(buffer, d + 68))
                    if inode != 0 {
                        out[SocketKey(local: address(d + 8), localPort: sport, remote: address(d + 24), remotePort: dport)] =
                            SocketTable.Entry(inode: inode, uid: uid)
                    }
                }
                off += (len + 3) & ~3
            }
        }
    }
}
