import Crypto

/// The JA4 TLS client fingerprint (FoxIO, BSD-3-Clause specification:
/// https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md).
public enum JA4 {
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`-style fingerprint of a ClientHello seen over TCP.
    public static func fingerprint(_ ch: ClientHello, transport: Character = "t") -> String {
        let r = parts(ch, transport: transport)
        return "\(r.a)_\(hash12(r.ciphers))_\(hash12(r.extensions))"
    }

    /// The raw (unhashed) form, `ja4_r`.
    public static func raw(_ ch: ClientHello, transport: Character = "t") -> String {
        let r = parts(ch, transport: transport)
        return "\(r.a)_\(r.ciphers)_\(r.extensions)"
    }

    static func parts(_ ch: ClientHello, transport: Character) -> (a: String, ciphers: String, extensions: String) {
        let versions = ch.supportedVersions.filter { !TLSNames.isGREASE($0) }
        let version = versions.max() ?? ch.legacyVersion
        let v: String
        switch version {
        case 0x0304: v = "13"
        case 0x0303: v = "12"
        case 0x0302: v = "11"
        case 0x0301: v = "10"
        case 0x0300: v = "s3"
        case 0x0002: v = "s2"
        case 0xFEFF: v = "d1"
        case 0xFEFD: v = "d2"
        case 0xFEFC: v = "d3"
        default: v = "00"
        }
        let ciphers = ch.cipherSuites.filter { !TLSNames.isGREASE($0) }
        let exts = ch.extensions.filter { !TLSNames.isGREASE($0) }
        let sni: Character = ch.extensions.contains(0x0000) ? "d" : "i"
        let a = "\(transport)\(v)\(sni)\(twoDigits(ciphers.count))\(twoDigits(exts.count))\(alpnChars(ch.alpn.first))"
        let cipherList = format4hexList(ciphers.sorted())
        var extList = format4hexList(exts.filter { $0 != 0x0000 && $0 != 0x0010 }.sorted())
        let sigs = ch.signatureAlgorithms.filter { !TLSNames.isGREASE($0) }
        if !sigs.isEmpty { extList += "_" + format4hexList(sigs) }
        return (a, cipherList, extList)
    }

    static func twoDigits(_ n: Int) -> String {
        let c = min(n, 99)
        return c < 10 ? "0\(c)" : "\(c)"
    }

    static func alpnChars(_ value: [UInt8]?) -> String {
        guard let value, let first = value.first, let last = value.last else { return "00" }
        // FoxIO's reference implementation prints "99" when the value starts with a non-ASCII byte.
        if first >= 0x80 { return "99" }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
        if alnum(first) && alnum(last) {
            return String(decoding: [first, last], as: UTF8.self)
        }
        let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(decoding: [hexDigits[Int(first >> 4)], hexDigits[Int(last & 0x0F)]], as: UTF8.self)
    }

    static func hash12(_ s: String) -> String {
        if s.isEmpty { return "000000000000" }
        let digest = SHA256.hash(data: Array(s.utf8))
        let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in digest.prefix(6) {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
