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
        "x-amz-security-token", "x-goog-signature", "private_token", "jwt", "credential", "credentials",
    ]

    static func isSecretName(_ name: String) -> Bool {
        let n = name.lowercased()
        if secretParameterNames.contains(n) { return true }
        for suffix in ["key", "token", "secret", "password", "signature"] where n.hasSuffix(suffix) { return true }
        return false
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
        let redacted = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
            let name = String(pair[..<eq])
            return isSecretName(name) ? name + "=" + placeholder : String(pair)
        }.joined(separator: "&")
        return path + "?" + redacted
    }

    /// One pass over the bytes: only a target with a query, a colon (scheme, userinfo, bot token) or a
    /// path segment that a rule below looks at can change; most API paths are returned as they are.
    static func mayHoldSecret(_ raw: String) -> Bool {
        raw.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b == UInt8(ascii: "?") || b == UInt8(ascii: ":") { return true }
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
        // Keys put straight into the path: /v1/keys/sk-…, /webhook/xoxb-…
        for i in segments.indices where looksLikeKey(segments[i]) { segments[i] = placeholder }
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
        if type.contains("x-www-form-urlencoded") { text = String(Redaction.target("?" + text).dropFirst()) }
        text = text.replacingOccurrences(of: "\n", with: " ")
        return "\(type), \(totalBytes) bytes: \(text)"
    }

    /// Masks the string value after any JSON key that names a secret.
    static func maskJSONSecrets(_ text: String) -> String {
        var out = ""
        var chars = Array(text)
        var i = 0
        while i < chars.count {
            if chars[i] == "\"" {
                // Read a JSON string.
                var j = i + 1
                while j < chars.count && chars[j] != "\"" { if chars[j] == "\\" { j += 1 }; j += 1 }
                let key = j < chars.count ? String(chars[(i + 1)..<j]) : ""
                out += String(chars[i..<min(j + 1, chars.count)])
                i = j + 1
                // Is it a key followed by a string value?
                var k = i
                while k < chars.count && chars[k] == " " { k += 1 }
                if k < chars.count && chars[k] == ":" && isSecretName(key) {
                    k += 1
                    while k < chars.count && chars[k] == " " { k += 1 }
                    if k < chars.count && chars[k] == "\"" {
                        var e = k + 1
                        while e < chars.count && chars[e] != "\"" { if chars[e] == "\\" { e += 1 }; e += 1 }
                        out += ":\"" + placeholder + "\""
                        i = e + 1
                    }
                }
                continue
            }
            out.append(chars[i])
            i += 1
        }
        chars = []
        return out
    }
}
