@testable import Analysers
import Core
import Testing

/// QUIC Initial packets: the example packets of RFC 9001 Appendix A (version 1) and RFC 9369 Appendix A
/// (version 2), then packets built here for reassembly, coalescing, Retry, caps and a reused address.
struct QUICInitialTests {
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8.filter { !($0 == 0x20 || $0 == 0x0A) })
        func v(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }
        return stride(from: 0, to: digits.count, by: 2).map { v(digits[$0]) << 4 | v(digits[$0 + 1]) }
    }

    static func hex(_ b: [UInt8]) -> String {
        b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    static let dcid = bytes("8394c8f03e515708")

    /// RFC 9001 A.2: the client's Initial (1200 bytes, packet number 2).
    static let v1Client = bytes("""
        c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
        d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
        1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
        8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
        30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
        457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
        4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
        4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
        485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
        059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
        7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
        9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
        be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
        68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
        c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
        f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
        291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
        25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
        14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
        ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
        e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
        c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
        203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
        cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
        fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
        a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
        90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
        162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
        40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
        6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
        8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
        be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
        54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
        760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
        f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
        056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
        7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
        e221af44860018ab0856972e194cd934
        """)
    /// RFC 9001 A.3: the server's Initial (packet number 1).
    static let v1Server = bytes("""
        cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
        5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
        dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
        022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
        2158407dd074ee
        """)
    /// RFC 9369 A.2 and A.3: the same packets in version 2.
    static let v2Client = bytes("""
        d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
        dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
        9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
        250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
        12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
        cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
        18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
        12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
        d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
        6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
        bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
        636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
        ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
        16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
        4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
        fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
        8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
        14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
        9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
        abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
        80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
        848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
        d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
        c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
        7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
        f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
        10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
        3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
        06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
        8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
        34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
        e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
        5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
        8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
        d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
        6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
        9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
        a18b2faa745b6fe189cf772a9f84cbfc
        """)
    static let v2Server = bytes("""
        dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698
        baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17
        f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2
        c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8
        4bed8521e2e140
        """)
    /// RFC 9001 A.2: the CRYPTO frame (a ClientHello for example.com) before the PADDING.
    static let clientFrames = bytes("""
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff
        """)

    @Test func version1Keys() throws {
        let cs = try #require(QUICInitialProtection.secret(version: 1, dcid: Self.dcid, server: false))
        #expect(Self.hex(cs) == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        let ss = try #require(QUICInitialProtection.secret(version: 1, dcid: Self.dcid, server: true))
        #expect(Self.hex(ss) == "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        let c = try #require(QUICInitialProtection.keys(version: 1, dcid: Self.dcid, server: false))
        #expect(Self.hex(c.key) == "1f369613dd76d5467730efcbe3b1a22d")
        #expect(Self.hex(c.iv) == "fa044b2f42a3fd3b46fb255c")
        #expect(Self.hex(c.hp) == "9f50449e04a0e810283a1e9933adedd2")
        let s = try #require(QUICInitialProtection.keys(version: 1, dcid: Self.dcid, server: true))
        #expect(Self.hex(s.key) == "cf3a5331653c364c88f0f379b6067e37")
        #expect(Self.hex(s.iv) == "0ac1493ca1905853b0bba03e")
        #expect(Self.hex(s.hp) == "c206b8d9b9f0f37644430b490eeaa314")
    }

    @Test func version2Keys() throws {
        let v2 = QUICInitialProtection.version2
        let cs = try #require(QUICInitialProtection.secret(version: v2, dcid: Self.dcid, server: false))
        #expect(Self.hex(cs) == "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
        let ss = try #require(QUICInitialProtection.secret(version: v2, dcid: Self.dcid, server: true))
        #expect(Self.hex(ss) == "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1")
        let c = try #require(QUICInitialProtection.keys(version: v2, dcid: Self.dcid, server: false))
        #expect(Self.hex(c.key) == "8b1a0bc121284290a29e0971b5cd045d")
        #expect(Self.hex(c.iv) == "91f73e2351d8fa91660e909f")
        #expect(Self.hex(c.hp) == "45b95e15235d6f45a6b19cbcb0294ba9")
        let s = try #require(QUICInitialProtection.keys(version: v2, dcid: Self.dcid, server: true))
        #expect(Self.hex(s.key) == "82db637861d55e1d011f19ea71d5d2a7")
        #expect(Self.hex(s.iv) == "dd13c276499c0249d3310652")
        #expect(Self.hex(s.hp) == "edf6d05c83121201b436e16877593c3a")
    }

    @Test func version1HeaderProtectionMask() throws {
        let c = try #require(QUICInitialProtection.keys(version: 1, dcid: Self.dcid, server: false))
        let sample = Self.bytes("d1b1c98dd7689fb8ec11d242b123dc9b")
        let mask = try #require(sample.withUnsafeBytes { QUICInitialProtection.mask(c, sample: $0) })
        #expect(Self.hex(Array(mask.prefix(5))) == "437b9aec36")
    }

    @Test(arguments: [(UInt32(1), "c300000001088394c8f03e5157080000449e00000002"),
                      (QUICInitialProtection.version2, "d36b3343cf088394c8f03e5157080000449e00000002")])
    func clientInitialOpensAndSeals(version: UInt32, unprotectedHeader: String) throws {
        let packet = version == 1 ? Self.v1Client : Self.v2Client
        let keys = try #require(QUICInitialProtection.keys(version: version, dcid: Self.dcid, server: false))
        let opened = try #require(packet.withUnsafeBytes { QUICInitialProtection.open($0, pnOffset: 18, keys: keys, largest: -1) })
        #expect(opened.packetNumber == 2)
        #expect(Self.hex(opened.header) == unprotectedHeader)
        #expect(opened.payload.count == 1162)
        #expect(Array(opened.payload.prefix(Self.clientFrames.count)) == Self.clientFrames)
        #expect(opened.payload.dropFirst(Self.clientFrames.count).allSatisfy { $0 == 0 })
        let sealed = QUICInitialProtection.seal(header: Self.bytes(unprotectedHeader), pnOffset: 18, packetNumber: 2,
                                                payload: opened.payload, keys: keys)
        #expect(sealed == packet)
    }

    @Test(arguments: [UInt32(1), QUICInitialProtection.version2])
    func parserReadsBothHellos(version: UInt32) throws {
        let parser = QUICInitialParser()
        (version == 1 ? Self.v1Client : Self.v2Client).withUnsafeBytes { parser.datagram($0, fromClient: true) }
        let ch = try #require(parser.clientHello)
        #expect(ch.serverName == "example.com")
        #expect(ch.alpnNames == ["alpn"])
        #expect(ch.cipherSuites == [0x1301, 0x1302])
        #expect(JA4.fingerprint(ch, transport: "q").hasPrefix("q13d0211an_"))
        (version == 1 ? Self.v1Server : Self.v2Server).withUnsafeBytes { parser.datagram($0, fromClient: false) }
        let sh = try #require(parser.serverHello)
        #expect(sh.version == 0x0304)
        #expect(sh.cipherSuite == 0x1301)
        #expect(parser.version == version)
        #expect(parser.heldBytes == 0)
        #expect(parser.isFinished)
    }

    // MARK: Packets built here

    static func varint(_ v: Int) -> [UInt8] {
        if v < 64 { return [UInt8(v)] }
        if v < 16384 { return [UInt8(0x40 | (v >> 8)), UInt8(v & 0xFF)] }
        return [UInt8(0x80 | (v >> 24)), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func crypto(_ offset: Int, _ data: ArraySlice<UInt8>) -> [UInt8] {
        [0x06] + varint(offset) + varint(data.count) + data
    }

    /// The RFC's ClientHello (the CRYPTO frame's data).
    static var hello: [UInt8] { Array(clientFrames[4...]) }

    /// A protected Initial packet; keys from `keyDCID` (the connection's first destination id).
    static func initial(version: UInt32 = 1, dcid: [UInt8], scid: [UInt8], keyDCID: [UInt8]? = nil, pn: Int64,
                        frames: [UInt8], server: Bool = false, token: [UInt8] = []) -> [UInt8] {
        let typeBits: UInt8 = version == 1 ? 0 : 1
        var payload = frames
        if payload.count < 24 { payload += [UInt8](repeating: 0, count: 24 - payload.count) }
        var header: [UInt8] = [0xC0 | typeBits << 4 | 0x01]
        header += [UInt8(version >> 24), UInt8((version >> 16) & 0xFF), UInt8((version >> 8) & 0xFF), UInt8(version & 0xFF)]
        header += [UInt8(dcid.count)] + dcid + [UInt8(scid.count)] + scid
        header += varint(token.count) + token
        let length = 2 + payload.count + 16
        header += [UInt8(0x40 | (length >> 8)), UInt8(length & 0xFF)]
        let pnOffset = header.count
        header += [UInt8((pn >> 8) & 0xFF), UInt8(pn & 0xFF)]
        let keys = QUICInitialProtection.keys(version: version, dcid: keyDCID ?? dcid, server: server)!
        return QUICInitialProtection.seal(header: header, pnOffset: pnOffset, packetNumber: pn, payload: payload, keys: keys)!
    }

    static let clientCID: [UInt8] = [0xC1, 0xC2, 0xC3, 0xC4]

    @Test func cryptoFramesOutOfOrderAcrossCoalescedPackets() throws {
        let h = Self.hello
        let parser = QUICInitialParser()
        // The second half first, in a packet of its own.
        let second = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: 0, frames: Self.crypto(120, h[120...]))
        second.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        #expect(parser.clientHello == nil)
        #expect(parser.heldBytes == h.count)
        // Then a datagram of two packets: the first half split in two CRYPTO frames (after PING and an ACK),
        // and a 0-RTT-like long-header packet the parser skips.
        let frames: [UInt8] = [0x01, 0x02, 0x00, 0x00, 0x00, 0x00] + Self.crypto(60, h[60..<120]) + Self.crypto(0, h[0..<60])
        let first = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: 1, frames: frames)
        var zeroRTT: [UInt8] = [0xD1, 0, 0, 0, 1, 8] + Self.dcid + [4] + Self.clientCID + [0x40, 30]
        zeroRTT += [UInt8](repeating: 0xAB, count: 30)
        (first + zeroRTT).withUnsafeBytes { parser.datagram($0, fromClient: true) }
        #expect(!(first + zeroRTT).withUnsafeBytes { QUICInitialParser.containsHandshakePacket($0) })
        var handshake = zeroRTT
        handshake[0] = 0xE1 // the same packet typed Handshake, after an Initial
        #expect((first + handshake).withUnsafeBytes { QUICInitialParser.containsHandshakePacket($0) })
        let ch = try #require(parser.clientHello)
        #expect(ch.serverName == "example.com")
        #expect(parser.heldBytes == 0)
    }

    @Test func retryChangesTheKeys() throws {
        let h = Self.hello
        let parser = QUICInitialParser()
        let before = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: 0, frames: Self.crypto(0, h[0..<100]))
        before.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        let newDCID: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
        var retry: [UInt8] = [0xF0, 0, 0, 0, 1, 4] + Self.clientCID + [8] + newDCID
        retry += [UInt8](repeating: 0x55, count: 20) // token
        // A Retry whose tag does not answer the client's first Initial is not followed.
        (retry + [UInt8](repeating: 0x77, count: 16)).withUnsafeBytes { parser.datagram($0, fromClient: false) }
        #expect(!parser.sawRetry && parser.invalidRetries == 1)
        retry += try #require(QUICInitialProtection.retryTag(retry, version: 1, originalDCID: Self.dcid))
        retry.withUnsafeBytes { parser.datagram($0, fromClient: false) }
        #expect(parser.sawRetry && parser.invalidRetries == 1)
        #expect(parser.heldBytes == 0)
        let after = Self.initial(dcid: newDCID, scid: Self.clientCID, pn: 1, frames: Self.crypto(0, h[...]),
                                 token: [UInt8](repeating: 0x55, count: 20))
        #expect(!after.withUnsafeBytes { parser.startsNewConnection($0) })
        after.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        #expect(parser.clientHello?.serverName == "example.com")
        #expect(parser.undecryptable == 0)
    }

    /// RFC 9001 A.4 and RFC 9369 A.4: the example Retry packets verify against the example client's
    /// Destination Connection ID, and fail with one bit changed or against another id.
    @Test func retryIntegrityTagsOfTheRFCs() {
        for (version, hex) in [(QUICInitialProtection.version1, "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba"),
                               (QUICInitialProtection.version2, "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6")] {
            var packet = Self.bytes(hex)
            #expect(packet.withUnsafeBytes { QUICInitialProtection.retryIsAuthentic($0, version: version, originalDCID: Self.dcid) })
            #expect(!packet.withUnsafeBytes { QUICInitialProtection.retryIsAuthentic($0, version: version, originalDCID: [1, 2, 3, 4]) })
            packet[20] ^= 1
            #expect(!packet.withUnsafeBytes { QUICInitialProtection.retryIsAuthentic($0, version: version, originalDCID: Self.dcid) })
        }
    }

    @Test func anotherConnectionOnTheSameAddress() {
        let parser = QUICInitialParser()
        Self.v1Client.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        #expect(parser.clientHello != nil)
        #expect(!Self.v1Client.withUnsafeBytes { parser.startsNewConnection($0) })
        let other = Self.initial(dcid: [1, 2, 3, 4, 5, 6, 7, 8], scid: Self.clientCID, pn: 0, frames: Self.crypto(0, Self.hello[...]))
        #expect(other.withUnsafeBytes { parser.startsNewConnection($0) })
    }

    @Test func cryptoDataIsCapped() {
        let small = QUICInitialParser(maxCryptoBytes: 100)
        Self.v1Client.withUnsafeBytes { small.datagram($0, fromClient: true) }
        #expect(small.clientHello == nil)
        #expect(small.overCap)
        let budget = ParserBudget(limit: 50)
        let refused = QUICInitialParser(budget: budget)
        let part = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: 0, frames: Self.crypto(100, Self.hello[100...]))
        part.withUnsafeBytes { refused.datagram($0, fromClient: true) }
        #expect(refused.overCap)
        #expect(budget.refusals == 1)
        #expect(budget.used == 0)
        let held = QUICInitialParser(budget: budget)
        let piece = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: 0, frames: Self.crypto(10, Self.hello[10..<40]))
        piece.withUnsafeBytes { held.datagram($0, fromClient: true) }
        #expect(budget.used == 40)
    }

    @Test func onlyTheFirstInitialPacketsAreDecrypted() {
        let parser = QUICInitialParser()
        for pn in 0..<20 {
            let p = Self.initial(dcid: Self.dcid, scid: Self.clientCID, pn: Int64(pn), frames: [0x01])
            p.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        }
        #expect(parser.clientHello == nil)
        #expect(parser.undecryptable == 0)
        #expect(parser.heldBytes == 0)
    }

    @Test func garbageIsIgnored() {
        let parser = QUICInitialParser()
        var junk = Self.v1Client
        junk[100] ^= 0xFF
        junk.withUnsafeBytes { parser.datagram($0, fromClient: true) }
        #expect(parser.clientHello == nil)
        #expect(parser.undecryptable == 1)
        for n in 0..<64 { [UInt8](repeating: UInt8(n * 4), count: n).withUnsafeBytes { parser.datagram($0, fromClient: n % 2 == 0) } }
    }
}
