import Core
@testable import Pipeline
import Testing

/// Community ID v1 against the specification's example and values computed independently (Python's
/// hashlib over the spec's byte layout), in both directions, for IPv4 and IPv6.
@Suite struct CommunityIDTests {
    static func v4(_ s: String) -> IPAddress { IPAddress(parsing: s)! }

    @Test(arguments: [
        // https://github.com/corelight/community-id-spec (README: 128.232.110.120:34855 → 66.35.250.204:80, TCP)
        ("128.232.110.120", UInt16(34855), "66.35.250.204", UInt16(80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("2001:db8::1", 443, "2001:db8::2", 51000, "1:2TiKiiiSIuDma9IxOEOpx4wCXWM="),
        ("fe80::200:86ff:fe05:80da", 0, "fe80::260:97ff:fe07:69ea", 0, "1:EWdNtvPeeiclX4gkxNmEIJPjWUc="),
    ])
    func matchesTheSpecInBothDirections(a: String, ap: UInt16, b: String, bp: UInt16, expected: String) {
        let x = IPAddress(parsing: a)!, y = IPAddress(parsing: b)!
        #expect(CommunityID.v1(x, ap, y, bp, proto: 6) == expected)
        #expect(CommunityID.v1(y, bp, x, ap, proto: 6) == expected)
    }

    @Test func sameAddressOrdersByPortAndBase64Pads() {
        let a = Self.v4("10.0.0.1")
        #expect(CommunityID.v1(a, 1000, a, 80, proto: 6) == CommunityID.v1(a, 80, a, 1000, proto: 6))
        for (bytes, text) in [([UInt8](), ""), ([0x66], "Zg=="), ([0x66, 0x6F], "Zm8="), ([0x66, 0x6F, 0x6F], "Zm9v")] {
            #expect(bytes.withUnsafeBytes { CommunityID.base64($0) } == text)
        }
    }
}
