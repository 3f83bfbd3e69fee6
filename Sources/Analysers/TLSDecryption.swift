import Crypto

/// How a cipher suite protects records, for the suites calltap decrypts (AEAD only; CBC suites are
/// counted as undecryptable rather than guessed).
struct CipherSpec {
    enum AEAD { case aes128GCM, aes256GCM, chacha20Poly1305 }
    var aead: AEAD
    var sha384: Bool

    var keyLength: Int { aead == .aes128GCM ? 16 : 32 }
    /// TLS 1.2 fixed IV length: the GCM salt, or ChaCha20's whole nonce.
    var tls12IVLength: Int { aead == .chacha20Poly1305 ? 12 : 4 }

    static func forSuite(_ s: UInt16) -> CipherSpec? {
        switch s {
        case 0x1301: return CipherSpec(aead: .aes128GCM, sha384: false)
        case 0x1302: return CipherSpec(aead: .aes256GCM, sha384: true)
        case 0x1303: return CipherSpec(aead: .chacha20Poly1305, sha384: false)
        // TLS 1.2 AES-GCM: RSA, DHE, ECDHE-RSA/ECDSA, PSK variants.
        case 0x009C, 0x009E, 0x00A8, 0x00AA, 0x00AC, 0xC02B, 0xC02F, 0xD001:
            return CipherSpec(aead: .aes128GCM, sha384: false)
        case 0x009D, 0x009F, 0x00A9, 0x00AB, 0x00AD, 0xC02C, 0xC030, 0xD002:
            return CipherSpec(aead: .aes256GCM, sha384: true)
        // TLS 1.2 ChaCha20-Poly1305 (RFC 7905).
        case 0xCCA8, 0xCCA9, 0xCCAA, 0xCCAB, 0xCCAC, 0xCCAD, 0xCCAE:
            return CipherSpec(aead: .chacha20Poly1305, sha384: false)
        default:
            return nil
        }
    }
}

/// One direction's record protection: key, IV and sequence number.
struct RecordProtection {
    var spec: CipherSpec
    var key: SymmetricKey
    var iv: [UInt8]
    var sequence: UInt64 = 0
    var tls13: Bool

    /// Opens one record body. Returns the plaintext, or nil when authentication fails; the sequence
    /// number advances only on success, so a record protected by other keys (0-RTT) can be skipped.
    mutating func open(type: UInt8, version: (UInt8, UInt8), body: [UInt8]) -> [UInt8]? {
        guard let plain = decrypt(type: type, version: version, body: body) else { return nil }
        sequence &+= 1
        return plain
    }

    private func decrypt(type: UInt8, version: (UInt8, UInt8), body: [UInt8]) -> [UInt8]? {
        var nonce: [UInt8]
        var ciphertext: ArraySlice<UInt8>
        if !tls13 && spec.aead != .chacha20Poly1305 {
            guard body.count >= 8 + 16 else { return nil }
            nonce = iv + body[0..<8] // salt + explicit nonce
            ciphertext = body[8...]
        } else {
            nonce = iv
            for k in 0..<8 { nonce[nonce.count - 1 - k] ^= UInt8((sequence >> (8 * UInt64(k))) & 0xFF) }
            ciphertext = body[...]
        }
        guard ciphertext.count >= 16 else { return nil }
        let tag = ciphertext.suffix(16)
        let sealed = ciphertext.dropLast(16)
        var aad: [UInt8]
        if tls13 {
            aad = [type, version.0, version.1, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
        } else {
            aad = []
            for k in (0..<8).reversed() { aad.append(UInt8((sequence >> (8 * UInt64(k))) & 0xFF)) }
            aad += [type, version.0, version.1, UInt8(sealed.count >> 8), UInt8(sealed.count & 0xFF)]
        }
        do {
            switch spec.aead {
            case .aes128GCM, .aes256GCM:
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: sealed, tag: tag)
                return Array(try AES.GCM.open(box, using: key, authenticating: aad))
            case .chacha20Poly1305:
                let box = try ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: nonce), ciphertext: sealed, tag: tag)
                return Array(try ChaChaPoly.open(box, using: key, authenticating: aad))
            }
        } catch {
            // swift-crypto reports a bad tag as an underlying error, not always .authenticationFailure.
            return nil
        }
    }
}

/// Key derivation for TLS 1.2 (the PRF) and TLS 1.3 (HKDF-Expand-Label).
enum TLSKeys {
    static func hmac(_ sha384: Bool, key: [UInt8], data: [UInt8]) -> [UInt8] {
        let k = SymmetricKey(data: key)
        return sha384 ? Array(HMAC<SHA384>.authenticationCode(for: data, using: k))
            : Array(HMAC<SHA256>.authenticationCode(for: data, using: k))
    }

    /// TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed).
    static func prf(sha384: Bool, secret: [UInt8], label: String, seed: [UInt8], length: Int) -> [UInt8] {
        let labelSeed = Array(label.utf8) + seed
        var out: [UInt8] = []
        var a = labelSeed
        while out.count < length {
            a = hmac(sha384, key: secret, data: a)
            out += hmac(sha384, key: secret, data: a + labelSeed)
        }
        return Array(out.prefix(length))
    }

    /// Both directions' protections from a TLS 1.2 master secret.
    static func tls12(spec: CipherSpec, masterSecret: [UInt8], clientRandom: [UInt8], serverRandom: [UInt8])
        -> (client: RecordProtection, server: RecordProtection) {
        let n = spec.keyLength, iv = spec.tls12IVLength
        let block = prf(sha384: spec.sha384, secret: masterSecret, label: "key expansion",
                        seed: serverRandom + clientRandom, length: 2 * n + 2 * iv)
        let ck = Array(block[0..<n]), sk = Array(block[n..<(2 * n)])
        let civ = Array(block[(2 * n)..<(2 * n + iv)]), siv = Array(block[(2 * n + iv)..<(2 * n + 2 * iv)])
        return (RecordProtection(spec: spec, key: SymmetricKey(data: ck), iv: civ, tls13: false),
                RecordProtection(spec: spec, key: SymmetricKey(data: sk), iv: siv, tls13: false))
    }

    /// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
    static func expandLabel(sha384: Bool, secret: [UInt8], label: String, length: Int) -> [UInt8] {
        let full = Array(("tls13 " + label).utf8)
        let info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(full.count)] + full + [0]
        let prk = SymmetricKey(data: secret)
        let key = sha384 ? HKDF<SHA384>.expand(pseudoRandomKey: prk, info: info, outputByteCount: length)
            : HKDF<SHA256>.expand(pseudoRandomKey: prk, info: info, outputByteCount: length)
        return key.withUnsafeBytes { Array($0) }
    }

    static func tls13(spec: CipherSpec, trafficSecret: [UInt8]) -> RecordProtection {
        let key = expandLabel(sha384: spec.sha384, secret: trafficSecret, label: "key", length: spec.keyLength)
        let iv = expandLabel(sha384: spec.sha384, secret: trafficSecret, label: "iv", length: 12)
        return RecordProtection(spec: spec, key: SymmetricKey(data: key), iv: iv, tls13: true)
    }

    /// The next application traffic secret after a KeyUpdate.
    static func nextTrafficSecret(sha384: Bool, _ secret: [UInt8]) -> [UInt8] {
        expandLabel(sha384: sha384, secret: secret, label: "traffic upd", length: sha384 ? 48 : 32)
    }
}
