import Foundation

/// Removes secrets from what is stored: query parameters that carry credentials, well-known
/// secret-bearing paths, and userinfo in absolute URLs. Header values are never stored at all.
public enum Redaction {
    public static let placeholder = "REDACTED"

    /// Query parameter names whose values are secrets (compared case-insensitively; also matched as
    /// a suffix, e.g. "x_api_key", "refresh_token").
    static let secretParameterNames: [String] = [
        "key", "apikey", "api_key", "api-key", "token", "access_token", "id_token", "refresh_token", "auth",
        "authorization", "sig", "signature", "password", "passwd", "pwd", "secret", "client_secret",
        "session", "sessionid", "session_id", "code", "x-amz-signature", "x-amz-credential",
        "x-amz-security-token", "x-goog-signature", "x-goog-credential", "awsaccesskeyid", "private_token", "jwt",
        "credential", "credentials", "bearer", "pass", "passphrase", "auth_header", "cookie", "x-api-key",
    ]

    /// A name that says its value is a secret, after percent-decoding: exact, by suffix (`x_api_key`,
    /// `refresh_token`), and inside brackets (`api_key[]`, `data[token]`).
    static func isSecretName(_ name: String) -> Bool {
        let n = percentDecoded(name).lowercased().trimmingCharacters(in: .whitespaces)
        let parts = n.split(whereSeparator: { $0 == "[" || $0 == "]" }).map(String.init)
        for part in parts.isEmpty ? [n] : parts {
            if secretParameterNames.contains(part) { return true }
            for suffix in ["key", "token", "secret", "password", "passwd", "signature", "_pass", "-pass", "_auth",
                           "-auth", "credential", "credentials"] where part.hasSuffix(suffix) { return true }
        }
        return false
    }

    /// A value that is a secret by its shape, whatever it is called: an authorization scheme with its
    /// credential (`Bearer …`), a provider key prefix, a JWT, an AWS access key id, or a long
    /// high-entropy token (upper and lower case letters and digits, 32+ characters) — never a UUID or a
    /// hex digest, which are all hex.
    static func looksLikeSecretValue(_ raw: String) -> Bool {
        let v = raw.trimmingCharacters(in: .whitespaces)
        let lower = v.lowercased()
        for scheme in ["bearer ", "basic ", "token "] where lower.hasPrefix(scheme) && v.utf8.count >= scheme.utf8.count + 8 {
            return true
        }
        return looksLikeKey(v) || isAWSKeyID(v) || isHighEntropy(v)
    }

    static func isAWSKeyID(_ v: String) -> Bool {
        let u = Array(v.utf8)
        guard u.count == 20, v.hasPrefix("AKIA") || v.hasPrefix("ASIA") else { return false }
        return u.allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) }
    }

    static func isHighEntropy(_ v: String) -> Bool {
        let u = v.utf8
        guard u.count >= 32, u.count <= 8192 else { return false }
        var upper = false, lower = false, digit = false, hexOnly = true
        for b in u {
            switch b {
            case 65...90: upper = true; if b > 70 { hexOnly = false }
            case 97...122: lower = true; if b > 102 { hexOnly = false }
            case 48...57: digit = true
            case UInt8(ascii: "-"): break
            case UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "."): hexOnly = false
            default: return false
            }
        }
        return !hexOnly && upper && lower && digit
    }

    /// `%XX` decoded (and `+` as a space, as forms write it); malformed escapes are kept as they are.
    static func percentDecoded(_ s: String) -> String {
        guard s.utf8.contains(UInt8(ascii: "%")) || s.utf8.contains(UInt8(ascii: "+")) else { return s }
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 65...70: return b - 55
            case 97...102: return b - 87
            default: return nil
            }
        }
        while i < u.count {
            if u[i] == UInt8(ascii: "%"), i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(u[i] == UInt8(ascii: "+") ? UInt8(ascii: " ") : u[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Redacts a request target (origin-form path?query, or absolute-form URL).
    public static func target(_ raw: String) -> String {
        guard mayHoldSecret(raw) else { return raw }
        var t = raw
        // Absolute-form: drop userinfo from scheme://user:pass@host/...
        if !t.hasPrefix("/"), let schemeEnd = t.range(of: "://") {
            let afterScheme = t[schemeEnd.upperBound...]
            let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
            if let at = afterScheme[..<authorityEnd].lastIndex(of: "@") {
                t = String(t[..<schemeEnd.upperBound]) + String(afterScheme[afterScheme.index(after: at)...])
            }
        }
        var path = t
        var query: String?
        if let q = t.firstIndex(of: "?") {
            path = String(t[..<q])
            query = String(t[t.index(after: q)...])
        }
        path = redactPath(path)
        guard let query else { return path }
        return path + "?" + redactQuery(query)
    }

    /// Each `name=value` (separated by `&` or `;`) whose name, or whose decoded value, is a secret.
    static func redactQuery(_ query: String) -> String {
        var out = ""
        var pair = ""
        func flush() {
            if let eq = pair.firstIndex(of: "=") {
                let name = String(pair[..<eq])
                let value = String(pair[pair.index(after: eq)...])
                out += isSecretName(name) || looksLikeSecretValue(percentDecoded(value)) ? name + "=" + placeholder : pair
            } else {
                out += looksLikeSecretValue(percentDecoded(pair)) ? placeholder : pair
            }
            pair = ""
        }
        for c in query {
            if c == "&" || c == ";" {
                flush()
                out.append(c)
            } else {
                pair.append(c)
            }
        }
        flush()
        return out
    }

    /// One pass over the bytes: only a target with a query, a colon (scheme, userinfo, bot token) or a
    /// path segment that a rule below looks at can change; most API paths are returned as they are.
    static func mayHoldSecret(_ raw: String) -> Bool {
        raw.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b == UInt8(ascii: "?") || b == UInt8(ascii: ":") || b == UInt8(ascii: "%") { return true }
            if contains(bytes, "services") || contains(bytes, "webhooks") { return true }
            for prefix in keyPrefixes where contains(bytes, prefix) { return true }
            return false
        } ?? true
    }

    /// Prefixes of well-known credential formats (OpenAI/Anthropic, Stripe, GitHub, GitLab, Slack, AWS,
    /// Google, Hugging Face, JWTs); a path segment starting with one and 16+ characters long is a secret.
    static let keyPrefixes: [StaticString] = [
        "sk-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
        "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxs-", "AKIA", "ASIA", "AIza", "hf_", "eyJ",
    ]

    static func looksLikeKey(_ segment: String) -> Bool {
        guard segment.utf8.count >= 16 else { return false }
        return keyPrefixes.contains { prefix in
            segment.utf8.starts(with: UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
        }
    }

    private static func contains(_ bytes: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        let w = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard bytes.count >= w.count else { return false }
        for start in 0...(bytes.count - w.count) where bytes[start] == w[0] {
            var k = 1
            while k < w.count && bytes[start + k] == w[k] { k += 1 }
            if k == w.count { return true }
        }
        return false
    }

    /// Secrets carried in the path itself.
    static func redactPath(_ path: String) -> String {
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // Slack incoming webhooks: /services/T…/B…/<secret>
        if let s = segments.firstIndex(of: "services"), s + 3 < segments.count,
           segments[s + 1].hasPrefix("T"), segments[s + 2].hasPrefix("B"), !segments[s + 3].isEmpty {
            segments[s + 3] = placeholder
        }
        // Keys put straight into the path (also percent-encoded): /v1/keys/sk-…, /webhook/xoxb-…
        for i in segments.indices {
            let decoded = percentDecoded(segments[i])
            if looksLikeKey(decoded) || isAWSKeyID(decoded) { segments[i] = placeholder }
        }
        // Telegram bot API: /bot<token>/method
        for i in segments.indices where segments[i].hasPrefix("bot") && segments[i].contains(":") {
            segments[i] = "bot" + placeholder
        }
        // Discord webhooks: /api/webhooks/<id>/<token>
        if let w = segments.firstIndex(of: "webhooks"), w + 2 < segments.count, w > 0, segments[w - 1] == "api" {
            segments[w + 2] = placeholder
        }
        return segments.joined(separator: "/")
    }

    /// A short, redacted summary of a body prefix: text only, secret-looking JSON/form values masked.
    public static func summary(contentType: String?, bytes: [UInt8], totalBytes: Int) -> String? {
        guard totalBytes > 0 else { return nil }
        let type = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let textual = type.hasPrefix("text/") || type.contains("json") || type.contains("xml")
            || type.contains("x-www-form-urlencoded") || type.contains("javascript")
        guard textual, !bytes.isEmpty else { return "\(type), \(totalBytes) bytes" }
        var text = String(decoding: bytes, as: UTF8.self)
        text = maskJSONSecrets(text)
        if type.contains("x-www-form-urlencoded") { text = redactQuery(text) }
        text = maskText(text)
        text = text.replacingOccurrences(of: "\n", with: " ")
        return "\(type), \(totalBytes) bytes: \(text)"
    }

    /// Masks the value after any JSON key that names a secret — a string, a number, or a whole array or
    /// object — with any whitespace around the colon.
    static func maskJSONSecrets(_ text: String) -> String {
        let chars = Array(text)
        var out = ""
        var i = 0
        func isSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
        /// The end (exclusive) of the JSON string starting at `start` (a quote).
        func stringEnd(_ start: Int) -> Int {
            var j = start + 1
            while j < chars.count && chars[j] != "\"" { if chars[j] == "\\" { j += 1 }; j += 1 }
            return min(j + 1, chars.count)
        }
        /// The end (exclusive) of the JSON value starting at `start`.
        func valueEnd(_ start: Int) -> Int {
            guard start < chars.count else { return start }
            if chars[start] == "\"" { return stringEnd(start) }
            if chars[start] == "[" || chars[start] == "{" {
                var depth = 0, j = start
                while j < chars.count {
                    if chars[j] == "\"" { j = stringEnd(j); continue }
                    if chars[j] == "[" || chars[j] == "{" { depth += 1 }
                    if chars[j] == "]" || chars[j] == "}" { depth -= 1; if depth == 0 { return j + 1 } }
                    j += 1
                }
                return chars.count
            }
            var j = start
            while j < chars.count && !",}]".contains(chars[j]) && !isSpace(chars[j]) { j += 1 }
            return j
        }
        while i < chars.count {
            guard chars[i] == "\"" else { out.append(chars[i]); i += 1; continue }
            let end = stringEnd(i)
            let key = String(chars[(i + 1)..<max(i + 1, end - 1)])
            out += String(chars[i..<end])
            i = end
            var k = i
            while k < chars.count && isSpace(chars[k]) { k += 1 }
            guard k < chars.count, chars[k] == ":", isSecretName(unescapedJSON(key)) else { continue }
            k += 1
            while k < chars.count && isSpace(chars[k]) { k += 1 }
            out += ":\"" + placeholder + "\""
            i = valueEnd(k)
        }
        return out
    }

    /// JSON `\uXXXX` escapes (and `\/`) written out, so a secret spelled with escapes is seen.
    static func unescapedJSON(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var chars = s.makeIterator()
        while let c = chars.next() {
            guard c == "\\" else { out.append(c); continue }
            guard let e = chars.next() else { out.append(c); break }
            if e == "u" {
                var hex = ""
                for _ in 0..<4 { if let h = chars.next() { hex.append(h) } }
                if let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) { out.unicodeScalars.append(scalar) } else { out += "\\u" + hex }
            } else if e == "/" {
                out.append("/")
            } else {
                out.append(c)
                out.append(e)
            }
        }
        return out
    }

    /// Any text: secrets by shape wherever they stand (in a prompt, in `text/plain`), the credential
    /// after an authorization scheme (`Bearer x`), and the value after a secret name and `=` or `:`.
    static func maskText(_ raw: String) -> String {
        let text = unescapedJSON(raw)
        func isTokenChar(_ c: Character) -> Bool {
            c.isASCII && (c.isLetter || c.isNumber || "-_+/.~%".contains(c))
        }
        let chars = Array(text)
        var out = ""
        var i = 0
        var maskNext = false
        while i < chars.count {
            guard isTokenChar(chars[i]) else {
                out.append(chars[i])
                i += 1
                continue
            }
            var j = i
            while j < chars.count && isTokenChar(chars[j]) { j += 1 }
            let token = String(chars[i..<j])
            let decoded = percentDecoded(token)
            if maskNext || looksLikeSecretValue(decoded) {
                out += placeholder
                // `Authorization: Bearer x`: the scheme, then its credential.
                maskNext = maskNext && ["bearer", "basic"].contains(decoded.lowercased())
            } else {
                out += token
                let lower = decoded.lowercased()
                if ["bearer", "basic"].contains(lower) {
                    maskNext = true
                } else if isSecretName(decoded) {
                    // `password=x`, `password: x`, `"token" : "x"`
                    var k = j
                    while k < chars.count && (chars[k] == " " || chars[k] == "\"" || chars[k] == "'") { k += 1 }
                    if k < chars.count && (chars[k] == "=" || chars[k] == ":") { maskNext = true }
                }
            }
            i = j
        }
        return out
    }
}
