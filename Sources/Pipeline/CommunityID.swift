import Core
import Decode
import Source
import Crypto

/// Community ID v1 flow hashes (https://github.com/corelight/community-id-spec), so rows join with
/// Zeek and Suricata logs of the same traffic.
enum CommunityID {
    static func v1(_ a: IPAddress, _ ap: UInt16, _ b: IPAddress, _ bp: UInt16, proto: UInt8, seed: UInt16 = 0) -> String {
        // Order endpoints so both directions hash the same: smaller (address, port) first.
        let ab = a.bytes, bb = b.bytes
        let aFirst = lexLess(ab, bb) || (ab == bb && ap <= bp)
        let (s, sp, d, dp) = aFirst ? (ab, ap, bb, bp) : (bb, bp, ab, ap)
        var input: [UInt8] = [UInt8(seed >> 8), UInt8(seed & 0xFF)]
        input += s
        input += d
        input += [proto, 0, UInt8(sp >> 8), UInt8(sp & 0xFF), UInt8(dp >> 8), UInt8(dp & 0xFF)]
        let digest = Insecure.SHA1.hash(data: input)
        return "1:" + base64(Array(digest))
    }

    private static func lexLess(_ x: [UInt8], _ y: [UInt8]) -> Bool {
        for (p, q) in zip(x, y) where p != q { return p < q }
        return x.count < y.count
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i + 2 < bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [table[Int(v >> 18)], table[Int((v >> 12) & 63)], table[Int((v >> 6) & 63)], table[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out += [table[Int(v >> 18)], table[Int((v >> 12) & 63)], 0x3D, 0x3D]
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [table[Int(v >> 18)], table[Int((v >> 12) & 63)], table[Int((v >> 6) & 63)], 0x3D]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
