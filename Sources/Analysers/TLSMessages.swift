import Core

/// What a ClientHello offers.
public struct ClientHello: Sendable {
    public var legacyVersion: UInt16 = 0
    public var supportedVersions: [UInt16] = []
    public var cipherSuites: [UInt16] = []
    /// Extension types in the order sent (GREASE included).
    public var extensions: [UInt16] = []
    public var serverName: String?
    /// ALPN protocol names as raw bytes, in the order offered.
    public var alpn: [[UInt8]] = []
    public var signatureAlgorithms: [UInt16] = []
    /// Encrypted Client Hello offered (the SNI above is then the outer, public name).
    public var offersECH = false
    public var random: [UInt8] = []

    public init() {}

    /// ALPN names as text, for records.
    public var alpnNames: [String] { alpn.map { String(decoding: $0, as: UTF8.self) } }
}

/// What a ServerHello chose.
public struct ServerHello: Sendable {
    public var legacyVersion: UInt16 = 0
    /// From supported_versions (TLS 1.3), if present.
    public var selectedVersion: UInt16?
    public var cipherSuite: UInt16 = 0
    public var alpn: String?
    public var isHelloRetryRequest = false
    public var random: [UInt8] = []

    public init() {}

    public var version: UInt16 { selectedVersion ?? legacyVersion }
}

public struct TLSAlert: Sendable {
    public var fromClient: Bool
    /// Read from a decrypted record (with keys), rather than in the clear.
    public var decrypted = false
    public var level: UInt8
    public var description: UInt8
    public var time: Nanos
    public var name: String { TLSNames.alert(description) }
    public var isFatal: Bool { level == 2 }
}

public enum TLSNames {
    static func isGREASE(_ v: UInt16) -> Bool { (v & 0x0F0F) == 0x0A0A && (v >> 8) == (v & 0xFF) }

    /// Version as records show it: "1.0" … "1.3", "1.3-draft23", "ssl3".
    public static func version(_ v: UInt16) -> String {
        switch v {
        case 0x0300: return "ssl3"
        case 0x0301: return "1.0"
        case 0x0302: return "1.1"
        case 0x0303: return "1.2"
        case 0x0304: return "1.3"
        case 0x7F00...0x7FFF: return "1.3-draft\(v & 0xFF)"
        default: return String(format4hex(v))
        }
    }

    public static func alert(_ d: UInt8) -> String {
        switch d {
        case 0: return "close_notify"
        case 10: return "unexpected_message"
        case 20: return "bad_record_mac"
        case 21: return "decryption_failed"
        case 22: return "record_overflow"
        case 30: return "decompression_failure"
        case 40: return "handshake_failure"
        case 41: return "no_certificate"
        case 42: return "bad_certificate"
        case 43: return "unsupported_certificate"
        case 44: return "certificate_revoked"
        case 45: return "certificate_expired"
        case 46: return "certificate_unknown"
        case 47: return "illegal_parameter"
        case 48: return "unknown_ca"
        case 49: return "access_denied"
        case 50: return "decode_error"
        case 51: return "decrypt_error"
        case 60: return "export_restriction"
        case 70: return "protocol_version"
        case 71: return "insufficient_security"
        case 80: return "internal_error"
        case 86: return "inappropriate_fallback"
        case 90: return "user_canceled"
        case 100: return "no_renegotiation"
        case 109: return "missing_extension"
        case 110: return "unsupported_extension"
        case 111: return "certificate_unobtainable"
        case 112: return "unrecognized_name"
        case 113: return "bad_certificate_status_response"
        case 114: return "bad_certificate_hash_value"
        case 115: return "unknown_psk_identity"
        case 116: return "certificate_required"
        case 120: return "no_application_protocol"
        case 121: return "ech_required"
        default: return "alert_\(d)"
        }
    }

    /// IANA names of common cipher suites; others print as hex.
    public static func cipher(_ c: UInt16) -> String {
        switch c {
        case 0x1301: return "TLS_AES_128_GCM_SHA256"
        case 0x1302: return "TLS_AES_256_GCM_SHA384"
        case 0x1303: return "TLS_CHACHA20_POLY1305_SHA256"
        case 0x1304: return "TLS_AES_128_CCM_SHA256"
        case 0xC02B: return "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        case 0xC02C: return "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        case 0xC02F: return "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        case 0xC030: return "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        case 0xCCA8: return "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0xCCA9: return "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0x009C: return "TLS_RSA_WITH_AES_128_GCM_SHA256"
        case 0x009D: return "TLS_RSA_WITH_AES_256_GCM_SHA384"
        case 0x009E: return "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
        case 0x009F: return "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"
        case 0xC013: return "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        case 0xC014: return "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        case 0xC009: return "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        case 0xC00A: return "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        case 0xC027: return "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"
        case 0xC028: return "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"
        case 0x002F: return "TLS_RSA_WITH_AES_128_CBC_SHA"
        case 0x0035: return "TLS_RSA_WITH_AES_256_CBC_SHA"
        case 0x003C: return "TLS_RSA_WITH_AES_128_CBC_SHA256"
        case 0x003D: return "TLS_RSA_WITH_AES_256_CBC_SHA256"
        case 0x000A: return "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        case 0x0004: return "TLS_RSA_WITH_RC4_128_MD5"
        case 0x0005: return "TLS_RSA_WITH_RC4_128_SHA"
        case 0x0039: return "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"
        case 0x0033: return "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"
        default: return "0x" + format4hex(c)
        }
    }
}

/// Four lower-case hex digits.
func format4hex(_ v: UInt16) -> String { format4hexList([v]) }

/// `0a0b,1301,…`: each value as four lower-case hex digits, comma-separated, written into one buffer
/// (JA4's cipher, extension and signature lists).
func format4hexList(_ values: [UInt16]) -> String {
    guard !values.isEmpty else { return "" }
    return String(unsafeUninitializedCapacity: values.count * 5 - 1) { out in
        var k = 0
        for (n, v) in values.enumerated() {
            if n > 0 { out[k] = UInt8(ascii: ","); k += 1 }
            for shift in stride(from: 12, through: 0, by: -4) {
                let d = UInt8((v >> UInt16(shift)) & 0xF)
                out[k] = d < 10 ? 48 + d : 87 + d
                k += 1
            }
        }
        return k
    }
}
