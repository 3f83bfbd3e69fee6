import Foundation

/// Reads the TLS key logs embedded in a pcapng file's Decryption Secrets Blocks (type 0x0000000A,
/// secrets type 'TLSK'), wherever they appear in the file. libpcap skips these blocks, so the file is
/// scanned once on its own before analysis.
public enum DecryptionSecrets {
    static let sectionHeader: UInt32 = 0x0A0D_0D0A
    static let secretsBlock: UInt32 = 0x0000_000A
    static let tlsKeyLog: UInt32 = 0x544C_534B

    /// Key log text of every TLS DSB in the file; empty for classic pcap or a file without them.
    public static func tlsKeyLogs(path: String) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        var logs: [String] = []
        var bigEndian = false
        var offset: UInt64 = 0
        func read(_ n: Int) -> [UInt8]? {
            guard let d = try? handle.read(upToCount: n), d.count == n else { return nil }
            return [UInt8](d)
        }
        func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
            let v = UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
            return bigEndian ? v.byteSwapped : v
        }
        guard let first = read(12) else { return [] }
        guard first[0] == 0x0A, first[1] == 0x0D, first[2] == 0x0D, first[3] == 0x0A else { return [] } // not pcapng
        try? handle.seek(toOffset: 0)
        while let head = read(12) {
            let type = u32(head, 0)
            if type == sectionHeader {
                bigEndian = head[8] == 0x1A // byte-order magic 0x1A2B3C4D written big-endian
            }
            let total = Int(u32(head, 4))
            guard total >= 12, total % 4 == 0, total < 1 << 28 else { return logs } // damaged: stop quietly
            if type == secretsBlock {
                guard let rest = read(total - 12) else { return logs }
                let body = head[8..<12] + rest
                let secretsType = u32(Array(body), 0)
                let length = Int(u32(Array(body), 4))
                if secretsType == tlsKeyLog, length <= body.count - 8 {
                    logs.append(String(decoding: Array(body)[8..<(8 + length)], as: UTF8.self))
                }
            } else {
                offset += UInt64(total)
                guard (try? handle.seek(toOffset: offset)) != nil else { return logs }
                continue
            }
            offset += UInt64(total)
        }
        return logs
    }
}
