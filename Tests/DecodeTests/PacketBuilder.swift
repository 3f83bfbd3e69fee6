/// Builds frames byte by byte for decoder tests.
enum PacketBuilder {
    static func be16(_ v: Int) -> [UInt8] { [UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func tcp(srcPort: Int, dstPort: Int, seq: UInt32, flags: UInt8, payload: [UInt8]) -> [UInt8] {
        be16(srcPort) + be16(dstPort) + be32(seq) + be32(0) + [0x50, flags] + be16(65535) + [0, 0, 0, 0] + payload
    }

    static func ipv4(src: [UInt8], dst: [UInt8], proto: UInt8, payload: [UInt8], options: [UInt8] = [], fragment: Int = 0,
                     id: Int = 1) -> [UInt8] {
        let ihl = (20 + options.count) / 4
        return [UInt8(0x40 | ihl), 0] + be16(20 + options.count + payload.count) + be16(id) + be16(fragment)
            + [64, proto, 0, 0] + src + dst + options + payload
    }

    static func ipv6(src: [UInt8], dst: [UInt8], next: UInt8, payload: [UInt8]) -> [UInt8] {
        [0x60, 0, 0, 0] + be16(payload.count) + [next, 64] + src + dst + payload
    }

    static func udp(srcPort: Int, dstPort: Int, payload: [UInt8]) -> [UInt8] {
        be16(srcPort) + be16(dstPort) + be16(8 + payload.count) + [0, 0] + payload
    }

    /// An IPv6 Fragment header: next header, offset in bytes (a multiple of 8), more fragments, identification.
    static func fragmentHeader(next: UInt8, offset: Int, more: Bool, id: UInt32) -> [UInt8] {
        [next, 0] + be16(offset | (more ? 1 : 0)) + be32(id)
    }

    static func ethernet(_ etherType: Int, _ payload: [UInt8], vlan: [Int] = []) -> [UInt8] {
        var out: [UInt8] = Array(repeating: 0xAA, count: 6) + Array(repeating: 0xBB, count: 6)
        for tag in vlan { out += be16(0x8100) + be16(tag) }
        return out + be16(etherType) + payload
    }
}
