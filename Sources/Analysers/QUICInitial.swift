import Core
import Crypto
import _CryptoExtras

/// Initial packet protection of QUIC versions 1 (RFC 9001 §5) and 2 (RFC 9369 §3.3): keys derived from the
/// client's first Destination Connection ID, AES-128 header protection, AES-128-GCM payload protection.
public enum QUICInitialProtection {
    public static let version1: UInt32 = 0x0000_0001
    public static let version2: UInt32 = 0x6B33_43CF

    static let saltV1: [UInt8] = [
        0x38, 0x76, 0x2C, 0xF7, 0xF5, 0x59, 0x34, 0xB3, 0x4D, 0x17,
        0x9A, 0xE6, 0xA4, 0xC8, 0x0C, 0xAD, 0xCC, 0xBB, 0x7F, 0x0A,
    ]
    static let saltV2: [UInt8] = [
        0x0D, 0xED, 0xE3, 0xDE, 0xF7, 0x00, 0xA6, 0xDB, 0x81, 0x93,
        0x81, 0xBE, 0x6E, 0x26, 0x9D, 0xCB, 0xF9, 0xBD, 0x2E, 0xD9,
    ]

    /// The versions whose Initial packets can be read.
    public static func isSupported(_ version: UInt32) -> Bool { version == version1 || version == version2 }

    /// One direction's Initial keys.
    public struct Keys: Sendable {
        public let key: [UInt8]
        public let iv: [UInt8]
        public let hp: [UInt8]
        let aead: SymmetricKey
        let hpKey: SymmetricKey

        init(key: [UInt8], iv: [UInt8], hp: [UInt8]) {
            self.key = key
            self.iv = iv
            self.hp = hp
            aead = SymmetricKey(data: key)
            hpKey = SymmetricKey(data: hp)
        }
    }

    /// The Initial secret of one side (`client in` / `server in`).
    public static func secret(version: UInt32, dcid: [UInt8], server: Bool) -> [UInt8]? {
        guard isSupported(version) else { return nil }
        let salt = version == version2 ? saltV2 : saltV1
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: dcid), salt: salt)
        let initial = prk.withUnsafeBytes { Array($0) }
        return TLSKeys.expandLabel(sha384: false, secret: initial, label: server ? "server in" : "client in", length: 32)
    }

    /// Packet protection keys from a secret (labels `quic key`, `quic iv`, `quic hp`; `quicv2 …` for version 2).
    public static func keys(version: UInt32, secret: [UInt8]) -> Keys {
        let prefix = version == version2 ? "quicv2 " : "quic "
        return Keys(key: TLSKeys.expandLabel(sha384: false, secret: secret, label: prefix + "key", length: 16),
                    iv: TLSKeys.expandLabel(sha384: false, secret: secret, label: prefix + "iv", length: 12),
                    hp: TLSKeys.expandLabel(sha384: false, secret: secret, label: prefix + "hp", length: 16))
    }

    /// The fixed key and nonce of the Retry integrity tag: RFC 9001 §5.8 (v1), RFC 9369 §3.3.3 (v2).
    static let retryKeyV1: [UInt8] = [0xBE, 0x0C, 0x69, 0x0B, 0x9F, 0x66, 0x57, 0x5A, 0x1D, 0x76, 0x6B, 0x54, 0xE3, 0x68, 0xC8, 0x4E]
    static let retryNonceV1: [UInt8] = [0x46, 0x15, 0x99, 0xD3, 0x5D, 0x63, 0x2B, 0xF2, 0x23, 0x98, 0x25, 0xBB]
    static let retryKeyV2: [UInt8] = [0x8F, 0xB4, 0xB0, 0x1B, 0x56, 0xAC, 0x48, 0xE2, 0x60, 0xFB, 0xCB, 0xCE, 0xAD, 0x7C, 0xCC, 0x92]
    static let retryNonceV2: [UInt8] = [0xD8, 0x69, 0x69, 0xBC, 0x2D, 0x7C, 0x6D, 0x99, 0x90, 0xEF, 0xB0, 0x4A]

    /// The Retry integrity tag of a Retry packet without its tag: the AES-128-GCM tag, under the
    /// version's fixed key and nonce, of the Retry pseudo-packet — the client's original Destination
    /// Connection ID (its length byte first), then the packet.
    public static func retryTag(_ packet: some Collection<UInt8>, version: UInt32, originalDCID: [UInt8]) -> [UInt8]? {
        guard isSupported(version), originalDCID.count <= 20 else { return nil }
        let pseudo: [UInt8] = [UInt8(originalDCID.count)] + originalDCID + packet
        let v2 = version == version2
        guard let nonce = try? AES.GCM.Nonce(data: v2 ? retryNonceV2 : retryNonceV1),
              let sealed = try? AES.GCM.seal([UInt8](), using: SymmetricKey(data: v2 ? retryKeyV2 : retryKeyV1),
                                             nonce: nonce, authenticating: pseudo) else { return nil }
        return Array(sealed.tag)
    }

    /// True when the last 16 bytes of the Retry packet `packet` are its integrity tag (RFC 9001 §5.8).
    public static func retryIsAuthentic(_ packet: UnsafeRawBufferPointer, version: UInt32, originalDCID: [UInt8]) -> Bool {
        guard packet.count > 16 + 7,
              let tag = retryTag(packet[0..<(packet.count - 16)], version: version, originalDCID: originalDCID) else { return false }
        return tag.elementsEqual(packet[(packet.count - 16)...])
    }

    public static func keys(version: UInt32, dcid: [UInt8], server: Bool) -> Keys? {
        secret(version: version, dcid: dcid, server: server).map { keys(version: version, secret: $0) }
    }

    /// The header protection mask: AES-128 of the 16-byte sample.
    public static func mask(_ keys: Keys, sample: UnsafeRawBufferPointer) -> [UInt8]? {
        guard sample.count == 16 else { return nil }
        var block = Array(sample)
        do { try AES.permute(&block, key: keys.hpKey) } catch { return nil }
        return block
    }

    /// Removes header protection from a long-header packet (`packet` runs from its first byte to the end
    /// its Length field gives) and opens its payload. `largest` is the largest packet number seen so far in
    /// this space (for the full packet number). Returns the packet number and the plaintext frames.
    public static func open(_ packet: UnsafeRawBufferPointer, pnOffset: Int, keys: Keys, largest: Int64)
        -> (packetNumber: Int64, payload: [UInt8], header: [UInt8])? {
        guard pnOffset > 0, packet.count >= pnOffset + 4 + 16,
              let m = mask(keys, sample: UnsafeRawBufferPointer(rebasing: packet[(pnOffset + 4)..<(pnOffset + 20)]))
        else { return nil }
        let first = packet[0] ^ (m[0] & 0x0F)
        let pnLength = Int(first & 0x03) + 1
        guard packet.count >= pnOffset + pnLength + 16 else { return nil }
        var header = Array(packet[0..<(pnOffset + pnLength)])
        header[0] = first
        var truncated: Int64 = 0
        for i in 0..<pnLength {
            header[pnOffset + i] ^= m[1 + i]
            truncated = truncated << 8 | Int64(header[pnOffset + i])
        }
        let pn = decodePacketNumber(truncated: truncated, bits: pnLength * 8, largest: largest)
        var nonce = keys.iv
        for i in 0..<8 { nonce[11 - i] ^= UInt8(truncatingIfNeeded: pn >> (8 * i)) }
        let body = packet[(pnOffset + pnLength)...]
        let tagStart = packet.count - 16
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce),
                                            ciphertext: body[body.startIndex..<tagStart], tag: packet[tagStart...])
            return (pn, Array(try AES.GCM.open(box, using: keys.aead, authenticating: header)), header)
        } catch {
            return nil
        }
    }

    /// Protects a long-header packet (the inverse of `open`): `header` ends with the packet number in the
    /// clear, its length in the first byte's low bits, and its Length field already counts the 16-byte tag.
    public static func seal(header: [UInt8], pnOffset: Int, packetNumber: Int64, payload: [UInt8], keys: Keys) -> [UInt8]? {
        let pnLength = Int(header[0] & 0x03) + 1
        guard header.count == pnOffset + pnLength else { return nil }
        var nonce = keys.iv
        for i in 0..<8 { nonce[11 - i] ^= UInt8(truncatingIfNeeded: packetNumber >> (8 * i)) }
        guard let n = try? AES.GCM.Nonce(data: nonce),
              let box = try? AES.GCM.seal(payload, using: keys.aead, nonce: n, authenticating: header) else { return nil }
        var packet = header + Array(box.ciphertext) + Array(box.tag)
        guard packet.count >= pnOffset + 20,
              let m = packet.withUnsafeBytes({ mask(keys, sample: UnsafeRawBufferPointer(rebasing: $0[(pnOffset + 4)..<(pnOffset + 20)])) })
        else { return nil }
        packet[0] ^= m[0] & 0x0F
        for i in 0..<pnLength { packet[pnOffset + i] ^= m[1 + i] }
        return packet
    }

    /// RFC 9000 Appendix A.3.
    static func decodePacketNumber(truncated: Int64, bits: Int, largest: Int64) -> Int64 {
        let expected = largest &+ 1
        let window = Int64(1) << bits
        let half = window / 2
        let candidate = (expected & ~(window - 1)) | truncated
        if candidate <= expected - half && candidate < (Int64(1) << 62) - window { return candidate + window }
        if candidate > expected + half && candidate >= window { return candidate - window }
        return candidate
    }
}

/// A QUIC variable-length integer (RFC 9000 §16).
extension ByteCursor {
    mutating func varint() -> UInt64? {
        guard let first = u8() else { return nil }
        let length = 1 << Int(first >> 6)
        var v = UInt64(first & 0x3F)
        for _ in 1..<length {
            guard let b = u8() else { return nil }
            v = v << 8 | UInt64(b)
        }
        return v
    }
}

/// Reads what the Initial packets of one QUIC connection show in the clear once their well-known keys are
/// applied: the client's ClientHello (SNI, ALPN, JA4 with the `q` prefix) and the server's ServerHello
/// (version, cipher). CRYPTO frames are reassembled across packets and out of order, coalesced packets
/// read, a Retry followed, and at most `maxCryptoBytes` held per side (also counted in the shared parser
/// budget). Only the first `maxPacketsPerSide` Initial packets of each side are decrypted. Pure: no I/O.
public final class QUICInitialParser {
    public static let defaultMaxCryptoBytes = 16 << 10
    public static let maxPacketsPerSide = 8

    public private(set) var version: UInt32?
    public private(set) var clientHello: ClientHello?
    public private(set) var serverHello: ServerHello?
    /// A Retry was seen (the client's next Initial uses the Retry's connection id for its keys).
    public private(set) var sawRetry = false
    /// Retry packets whose integrity tag did not verify against the client's first Destination
    /// Connection ID; they are not followed.
    public private(set) var invalidRetries = 0
    /// CRYPTO data beyond the per-side cap, or refused by the shared budget.
    public private(set) var overCap = false
    /// Initial packets whose protection did not open.
    public private(set) var undecryptable = 0

    /// The client's Source Connection ID of its first Initial, and the ids its Initials may be sent to.
    public private(set) var clientSCID: [UInt8]?
    private var keyDCID: [UInt8]?
    private var knownDCIDs: [[UInt8]] = []

    private struct Side {
        var keys: QUICInitialProtection.Keys?
        var largest: Int64 = -1
        var packets = 0
        var buffer: [UInt8] = []
        /// Byte ranges of `buffer` received, merged, sorted.
        var ranges: [Range<Int>] = []
        var done = false
    }

    private var sides = [Side(), Side()]
    private let maxCryptoBytes: Int
    private let budget: ParserBudget?
    private var charged = 0

    public init(maxCryptoBytes: Int = QUICInitialParser.defaultMaxCryptoBytes, budget: ParserBudget? = nil) {
        self.maxCryptoBytes = maxCryptoBytes
        self.budget = budget
    }

    deinit { budget?.release(charged) }

    /// Both hellos read, or nothing more will be (no further datagram needs to be given).
    public var isFinished: Bool {
        (sides[0].done || sides[0].packets >= Self.maxPacketsPerSide)
            && (sides[1].done || sides[1].packets >= Self.maxPacketsPerSide)
    }

    /// Bytes held for reassembly.
    public var heldBytes: Int { sides[0].buffer.count + sides[1].buffer.count }

    /// True when `datagram`, sent by the client, is a long-header Initial that starts another connection
    /// (a Source Connection ID other than the first Initial's, or a Destination Connection ID the
    /// connection never used) — a reused address and port.
    public func startsNewConnection(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard let clientSCID, let h = Self.longHeader(datagram), h.type == .initial else { return false }
        if !h.scid.elementsEqual(clientSCID) { return true }
        return !knownDCIDs.contains { $0.elementsEqual(h.dcid) }
    }

    /// True when `datagram` holds a Handshake packet of a version this reader knows (the client's first
    /// one carries its Finished: the end of the handshake as the client sees it).
    public static func containsHandshakePacket(_ datagram: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < datagram.count {
            guard let h = longHeader(UnsafeRawBufferPointer(rebasing: datagram[offset...])), h.type != .retry else { return false }
            if h.type == .handshake { return true }
            offset += h.packetLength
        }
        return false
    }

    /// One UDP payload from the client (`fromClient`) or the server.
    public func datagram(_ data: UnsafeRawBufferPointer, fromClient: Bool) {
        var offset = 0
        while offset < data.count {
            let rest = UnsafeRawBufferPointer(rebasing: data[offset...])
            guard let h = Self.longHeader(rest) else { return }
            offset += h.packetLength
            switch h.type {
            case .initial:
                initial(UnsafeRawBufferPointer(rebasing: rest[0..<h.packetLength]), h, fromClient: fromClient)
            case .retry:
                if !fromClient { retry(rest, h) }
                return
            default:
                continue
            }
        }
    }

    // MARK: Headers

    enum PacketType { case initial, zeroRTT, handshake, retry }

    struct LongHeader {
        var version: UInt32
        var type: PacketType
        var dcid: UnsafeRawBufferPointer
        var scid: UnsafeRawBufferPointer
        /// Offset of the (protected) packet number; 0 for Retry.
        var pnOffset: Int
        /// The whole packet's length, header included.
        var packetLength: Int
    }

    static func longHeader(_ b: UnsafeRawBufferPointer) -> LongHeader? {
        var c = ByteCursor(b)
        guard let first = c.u8(), first & 0x80 != 0, let version = c.u32(),
              QUICInitialProtection.isSupported(version),
              let dl = c.u8(), dl <= 20, let dcid = c.slice(Int(dl)),
              let sl = c.u8(), sl <= 20, let scid = c.slice(Int(sl)) else { return nil }
        let bits = (first >> 4) & 0x03
        // Version 2 rotates the type codes (RFC 9369 §3.2).
        let code = version == QUICInitialProtection.version2 ? (bits &+ 3) & 0x03 : bits
        let type: PacketType
        switch code {
        case 0: type = .initial
        case 1: type = .zeroRTT
        case 2: type = .handshake
        default: type = .retry
        }
        if type == .retry {
            return LongHeader(version: version, type: type, dcid: dcid, scid: scid, pnOffset: 0, packetLength: b.count)
        }
        if type == .initial {
            guard let tokenLength = c.varint(), tokenLength <= UInt64(c.remaining), c.skip(Int(tokenLength)) else { return nil }
        }
        guard let length = c.varint(), length <= UInt64(c.remaining) else { return nil }
        return LongHeader(version: version, type: type, dcid: dcid, scid: scid, pnOffset: c.position,
                          packetLength: c.position + Int(length))
    }

    // MARK: Packets

    private func initial(_ packet: UnsafeRawBufferPointer, _ h: LongHeader, fromClient: Bool) {
        let k = fromClient ? 0 : 1
        if version == nil { version = h.version }
        guard h.version == version else { return }
        if fromClient {
            if clientSCID == nil { clientSCID = Array(h.scid) }
            if !knownDCIDs.contains(where: { $0.elementsEqual(h.dcid) }) && knownDCIDs.count < 4 {
                knownDCIDs.append(Array(h.dcid))
            }
            if keyDCID == nil { setKeys(dcid: Array(h.dcid)) }
        } else if !knownDCIDs.contains(where: { $0.elementsEqual(h.scid) }) && knownDCIDs.count < 4 {
            // The client sends its later Initials to the id the server chose.
            knownDCIDs.append(Array(h.scid))
        }
        guard !sides[k].done, sides[k].packets < Self.maxPacketsPerSide, let keys = sides[k].keys else { return }
        sides[k].packets += 1
        defer { if sides[k].packets >= Self.maxPacketsPerSide && !sides[k].done { resetCrypto(k) } }
        guard let opened = QUICInitialProtection.open(packet, pnOffset: h.pnOffset, keys: keys, largest: sides[k].largest) else {
            undecryptable += 1
            return
        }
        sides[k].largest = max(sides[k].largest, opened.packetNumber)
        frames(opened.payload, k)
    }

    private func setKeys(dcid: [UInt8]) {
        guard let version else { return }
        keyDCID = dcid
        sides[0].keys = QUICInitialProtection.keys(version: version, dcid: dcid, server: false)
        sides[1].keys = QUICInitialProtection.keys(version: version, dcid: dcid, server: true)
    }

    private func retry(_ packet: UnsafeRawBufferPointer, _ h: LongHeader) {
        // Only a Retry before any server Initial counts, and only one.
        guard !sawRetry, sides[1].packets == 0, h.version == version || version == nil else { return }
        // Its tag proves it answers the client's first Initial (when that Initial was seen: a capture
        // that starts later has nothing to check it against, and follows it).
        if let keyDCID, !QUICInitialProtection.retryIsAuthentic(packet, version: h.version, originalDCID: keyDCID) {
            invalidRetries += 1
            return
        }
        sawRetry = true
        // The client's next Initial carries the Retry's Source Connection ID as its destination; its keys
        // come from that id, and its ClientHello starts again at offset 0.
        let newDCID = Array(h.scid)
        if !knownDCIDs.contains(where: { $0.elementsEqual(newDCID) }) { knownDCIDs.append(newDCID) }
        keyDCID = nil
        sides[0].keys = nil
        sides[1].keys = nil
        if clientHello == nil { resetCrypto(0) }
        sides[0].largest = -1
        sides[0].packets = 0
    }

    // MARK: Frames

    private func frames(_ payload: [UInt8], _ k: Int) {
        payload.withUnsafeBytes { raw in
            var c = ByteCursor(raw)
            while let type = c.varint() {
                switch type {
                case 0x00, 0x01:
                    continue // PADDING, PING
                case 0x02, 0x03: // ACK
                    guard let _ = c.varint(), let _ = c.varint(), let count = c.varint(), let _ = c.varint(),
                          count <= UInt64(c.remaining) else { return }
                    for _ in 0..<count {
                        guard let _ = c.varint(), let _ = c.varint() else { return }
                    }
                    if type == 0x03 {
                        guard let _ = c.varint(), let _ = c.varint(), let _ = c.varint() else { return }
                    }
                case 0x06: // CRYPTO
                    guard let offset = c.varint(), let length = c.varint(), length <= UInt64(c.remaining),
                          let data = c.slice(Int(length)) else { return }
                    crypto(k, offset: offset, data)
                case 0x1C, 0x1D: // CONNECTION_CLOSE
                    return
                default:
                    return // not allowed in an Initial packet
                }
            }
        }
    }

    private func crypto(_ k: Int, offset: UInt64, _ data: UnsafeRawBufferPointer) {
        guard !sides[k].done, !data.isEmpty else { return }
        guard offset < UInt64(maxCryptoBytes), UInt64(maxCryptoBytes) - offset >= UInt64(data.count) else {
            overCap = true
            return
        }
        let start = Int(offset), end = start + data.count
        if end > sides[k].buffer.count {
            let grow = end - sides[k].buffer.count
            if let budget {
                guard budget.reserve(grow) else {
                    overCap = true
                    return
                }
                charged += grow
            }
            sides[k].buffer.append(contentsOf: repeatElement(0, count: grow))
        }
        sides[k].buffer.withUnsafeMutableBytes { dst in
            dst.baseAddress!.advanced(by: start).copyMemory(from: data.baseAddress!, byteCount: data.count)
        }
        addRange(k, start..<end)
        tryHello(k)
    }

    private func addRange(_ k: Int, _ r: Range<Int>) {
        var merged = r
        var kept: [Range<Int>] = []
        for x in sides[k].ranges {
            if x.upperBound < merged.lowerBound || x.lowerBound > merged.upperBound {
                kept.append(x)
            } else {
                merged = min(x.lowerBound, merged.lowerBound)..<max(x.upperBound, merged.upperBound)
            }
        }
        kept.append(merged)
        kept.sort { $0.lowerBound < $1.lowerBound }
        sides[k].ranges = kept
    }

    /// Parses the first handshake message once it is all there.
    private func tryHello(_ k: Int) {
        guard let first = sides[k].ranges.first, first.lowerBound == 0, first.upperBound >= 4 else { return }
        let b = sides[k].buffer
        let length = Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        if 4 + length > maxCryptoBytes {
            overCap = true
            finish(k)
            return
        }
        guard first.upperBound >= 4 + length else { return }
        b.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[4..<(4 + length)])
            if k == 0 && b[0] == 1 {
                clientHello = TLSHelloParser.clientHello(body)
            } else if k == 1 && b[0] == 2 {
                serverHello = TLSHelloParser.serverHello(body)
            }
        }
        finish(k)
    }

    private func finish(_ k: Int) {
        sides[k].done = true
        resetCrypto(k)
    }

    private func resetCrypto(_ k: Int) {
        let held = sides[k].buffer.count
        if budget != nil && held > 0 {
            budget?.release(held)
            charged -= held
        }
        sides[k].buffer = []
        sides[k].ranges = []
    }
}
