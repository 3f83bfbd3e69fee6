import Foundation

/// Fork, exec and exit events from the kernel's netlink process connector (needs CAP_NET_ADMIN, and
/// the initial network namespace). Lifetimes and lineage then come from the kernel as they happen,
/// not from polling /proc, so a child whose parent already exited still has a known ancestry.
public final class ProcessEvents: @unchecked Sendable {
    public enum Event: Sendable {
        case fork(parent: Int, child: Int)
        case exec(pid: Int)
        case exit(pid: Int)
    }

    private let fd: Int32

    /// Subscribes; throws when the connector is unavailable (no privilege, or not supported).
    public init() throws {
        fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 11 /* NETLINK_CONNECTOR */)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
        // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups } (not exported by Glibc's module)
        var addr = [UInt8](repeating: 0, count: 12)
        addr[0] = UInt8(AF_NETLINK & 0xFF)
        addr[8] = 1 // nl_groups = CN_IDX_PROC
        let bound = addr.withUnsafeBytes {
            bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(12))
        }
        guard bound == 0 else { close(fd); throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
        // nlmsghdr (16) + cn_msg (20) + PROC_CN_MCAST_LISTEN (4)
        var msg = [UInt8](repeating: 0, count: 40)
        func put32(_ v: UInt32, _ at: Int) { for k in 0..<4 { msg[at + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }
        func put16(_ v: UInt16, _ at: Int) { msg[at] = UInt8(v & 0xFF); msg[at + 1] = UInt8(v >> 8) }
        put32(40, 0); put16(3 /* NLMSG_DONE */, 4); put32(UInt32(getpid()), 12)
        put32(1, 16); put32(1, 20) // cb_id: CN_IDX_PROC, CN_VAL_PROC
        put16(4, 32) // cn_msg.len
        put32(1, 36) // PROC_CN_MCAST_LISTEN
        let sent = msg.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == 40 else { close(fd); throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Receives events until `shouldStop` says so; times out every 200 ms to check it.
    public func run(shouldStop: () -> Bool, _ handle: (Event) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !shouldStop() {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            var offset = 0
            while offset + 16 <= n {
                let len = Int(Self.u32(buffer, offset))
                guard len >= 16, offset + len <= n else { break }
                // proc_event after nlmsghdr (16) and cn_msg (20): what, cpu, timestamp, then the event data.
                let e = offset + 36
                if e + 16 + 16 <= offset + len {
                    let what = Self.u32(buffer, e)
                    let data = e + 16
                    switch what {
                    case 0x1: // FORK: parent_pid, parent_tgid, child_pid, child_tgid
                        let childPID = Self.u32(buffer, data + 8), childTGID = Self.u32(buffer, data + 12)
                        if childPID == childTGID { handle(.fork(parent: Int(Self.u32(buffer, data + 4)), child: Int(childTGID))) }
                    case 0x2: // EXEC: process_pid, process_tgid
                        handle(.exec(pid: Int(Self.u32(buffer, data + 4))))
                    case 0x8000_0000: // EXIT
                        let pid = Self.u32(buffer, data), tgid = Self.u32(buffer, data + 4)
                        if pid == tgid { handle(.exit(pid: Int(tgid))) }
                    default:
                        break
                    }
                }
                offset += (len + 3) & ~3
            }
        }
    }

    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }
}
