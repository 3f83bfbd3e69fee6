import Core
import Decode
import Source
import Crypto

/// Community ID v1 flow hashes (https://github.com/corelight/community-id-spec), so rows join with
/// Zeek and Suricata logs of the same traffic.
enum CommunityID {
    static func v1(_ a: IPAddress, _ ap: UInt16, _ b: IPAddress, _ bp: UInt16, proto: UInt8, seed: UInt16 = 0) -> String {
        // Order endpoints so both directions hash the same: smaller (address, port) first, the addresses
        // compared as their network-order bytes.
        let aFirst = a.isV4 == b.isV4 ? (a < b || (a == b && ap <= bp)) : lexLess(a.bytes, b.bytes)
        let (s, sp, d, dp) = aFirst ? (a, ap, b, bp) : (b, bp, a, ap)
        var hasher = Insecure.SHA1()
        // seed, two addresses of at most 16 bytes, protocol, a zero byte and two ports: at most 40 bytes.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { buf in
            var k = 0
            func put(_ v: UInt64, bytes n: Int) {
                for i in stride(from: n - 1, through: 0, by: -1) { buf[k] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)); k += 1 }
            }
            func put(_ ip: IPAddress) {
                if ip.isV4 { put(ip.low, bytes: 4) } else { put(ip.high, bytes: 8); put(ip.low, bytes: 8) }
            }
            put(UInt64(seed), bytes: 2)
            put(s)
            put(d)
            put(UInt64(proto), bytes: 1)
            put(0, bytes: 1)
            put(UInt64(sp), bytes: 2)
            put(UInt64(dp), bytes: 2)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buf[..<k])))
        }
        return hasher.finalize().withUnsafeBytes { "1:" + base64($0) }
    }

    private static func lexLess(_ x: [UInt8], _ y: [UInt8]) -> Bool {
        for (p, q) in zip(x, y) where p != q { return p < q }
        return x.count < y.count
    }

    static func base64(_ bytes: UnsafeRawBufferPointer) -> String {
        let table: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        let t = table.utf8Start
        return String(unsafeUninitializedCapacity: (bytes.count + 2) / 3 * 4) { out in
            var i = 0, k = 0
            func put(_ v: UInt32, _ count: Int) {
                for n in 0..<4 {
                    out[k] = n < count ? t[Int((v >> UInt32(18 - 6 * n)) & 63)] : 0x3D
                    k += 1
                }
            }
            while i + 2 < bytes.count {
                put(UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]), 4)
                i += 3
            }
            switch bytes.count - i {
            case 1: put(UInt32(bytes[i]) << 16, 2)
            case 2: put(UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8, 3)
            default: break
            }
            return k
        }
    }
}
