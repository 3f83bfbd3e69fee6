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
    static func isSecretName(_ name: String, inQuery: Bool = true) -> Bool {
        let original = trimmedSpaces(percentDecoded(name, plusAsSpace: true))
        // A bracket or other delimiter joined to another character hides where the name's parts end.
        if hasAmbiguousDelimiter(original) { return true }
        let originalParts = original.split(whereSeparator: { $0 == "[" || $0 == "]" })
        for originalPart in originalParts.isEmpty ? [original[...]] : originalParts {
            let part = originalPart.lowercased()
            // `code` is an OAuth code in a query, an error code in a body.
            if secretParameterNames.contains(part) && (inQuery || part != "code") { return true }
            for suffix in secretNameSuffixes where part.hasSuffix(suffix) { return true }
            // camelCase: apiKey, accessToken, data[accessKey].
            if originalPart.hasSuffix("Key") && originalPart.count > 3 { return true }
        }
        return false
    }

    /// Name endings that make a name secret (`x_api_key`, `refresh_token`, `authkey`, `jsessionid`).
    static let secretNameSuffixes = [
        "_key", "-key", "apikey", "authkey", "accesskey", "secretkey", "privatekey", "token", "secret", "password",
        "passwd", "signature", "_pass", "-pass", "_auth", "-auth", "credential", "credentials", "sessionid", "sessid",
    ]

    /// A value that is a secret by its shape, whatever it is called: an authorization scheme with its
    /// credential (`Bearer …`), a provider key prefix, a JWT, an AWS access key id, or a long
    /// high-entropy token (upper and lower case letters and digits, 32+ characters) — never a UUID or a
    /// hex digest, which are all hex.
    static func looksLikeSecretValue(_ raw: String) -> Bool {
        let v = trimmedSpaces(raw)
        if startsWithAuthScheme(v) { return true }
        return looksLikeKey(v) || isAWSKeyID(v) || isHighEntropy(v)
    }

    /// Words that put a credential after them (`Authorization: Bearer x`, `Token x`, `Bot x`).
    static let authSchemes: Set<String> = ["bearer", "basic", "token", "bot", "digest"]

    /// `Bearer x…` and the like, in any case, with at least 8 characters of credential after the space.
    static func startsWithAuthScheme(_ v: String) -> Bool {
        // Only the first seven characters (the longest scheme and its space) are lowercased: a small
        // string, where lowercasing the whole value copied all of it.
        let head = String(v.prefix(7)).lowercased()
        return authSchemes.contains { head.hasPrefix($0 + " ") && v.utf8.count >= $0.utf8.count + 9 }
    }

    /// The string without the white space (tab and the Unicode space separators) at either end; returned
    /// as it is, without a copy, when there is none.
    static func trimmedSpaces(_ s: String) -> String {
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == "\t" || c.properties.generalCategory == .spaceSeparator }
        let scalars = s.unicodeScalars
        guard let first = scalars.first, let last = scalars.last, isSpace(first) || isSpace(last) else { return s }
        var a = scalars.startIndex, b = scalars.endIndex
        while a < b, isSpace(scalars[a]) { a = scalars.index(after: a) }
        while b > a, isSpace(scalars[scalars.index(before: b)]) { b = scalars.index(before: b) }
        return String(scalars[a..<b])
    }

    /// Whether the bytes of `word` occur in `s`.
    static func has(_ s: String, _ word: StaticString) -> Bool {
        var s = s
        return s.withUTF8 { contains($0, word) }
    }

    /// Identifiers of well-known APIs that look random but name no secret (completion, message, file,
    /// run and tool-call ids).
    static let idPrefixes = ["chatcmpl-", "msg_", "file-", "resp_", "run_", "asst_", "thread_", "call_", "toolu_",
                             "req_", "batch_", "cmpl-", "step_", "vs_"]

    static func isAWSKeyID(_ v: String) -> Bool {
        let u = v.utf8
        guard u.count == 20, v.hasPrefix("AKIA") || v.hasPrefix("ASIA") else { return false }
        return u.allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) }
    }

    static func isHighEntropy(_ v: String) -> Bool {
        let u = v.utf8
        guard u.count >= 32, u.count <= 8192 else { return false }
        if idPrefixes.contains(where: { v.hasPrefix($0) }) { return false }
        var upper = false, lower = false, digit = false, hexOnly = true
        // Names, paths and model ids are words joined by separators; random tokens seldom are.
        var separators = 0
        for b in u {
            switch b {
            case 65...90: upper = true; if b > 70 { hexOnly = false }
            case 97...122: lower = true; if b > 102 { hexOnly = false }
            case 48...57: digit = true
            case UInt8(ascii: "-"): separators += 1
            case UInt8(ascii: "/"), UInt8(ascii: "."): separators += 1; hexOnly = false
            case UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "="): hexOnly = false
            default: return false
            }
        }
        return !hexOnly && upper && lower && digit && separators * 10 <= u.count
    }

    /// `%XX` decoded (and `+` as a space, as forms write names, when asked: a `+` in a value may be
    /// base64); malformed escapes are kept as they are.
    static func percentDecoded(_ s: String, plusAsSpace: Bool = false) -> String {
        guard s.utf8.contains(UInt8(ascii: "%")) || (plusAsSpace && s.utf8.contains(UInt8(ascii: "+"))) else { return s }
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
                out.append(plusAsSpace && u[i] == UInt8(ascii: "+") ? UInt8(ascii: " ") : u[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Redacts a request target (origin-form path?query, or absolute-form URL).
    public static func target(_ raw: String) -> String { target(raw, depth: 0, levels: 0) }

    /// How deep values inside values are read (`a=b%3Dc%2526d…`): past it, the value is taken as a secret.
    static let maxNesting = 8

    static func target(_ raw: String, depth: Int, levels: Int) -> String {
        guard mayHoldSecret(raw) else { return raw }
        // A delimiter that is not a character of its own fails closed: the whole target goes.
        if hasAmbiguousDelimiter(raw) { return "/" + placeholder }
        var t = raw
        // Absolute-form: drop userinfo from scheme://user:pass@host/... (and from a scheme-relative //user:pass@host/...)
        let schemeEnd = t.hasPrefix("//") ? t.utf8.index(t.startIndex, offsetBy: 2)
            : t.hasPrefix("/") ? nil : t.range(of: "://")?.upperBound
        if let schemeEnd {
            let afterScheme = t[schemeEnd...]
            let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
            if let at = afterScheme[..<authorityEnd].lastIndex(of: "@") {
                t = String(t[..<schemeEnd]) + String(afterScheme[afterScheme.index(after: at)...])
            }
        }
        var path = t
        var query: String?
        // `?`, `=`, `&` and `;` are found as bytes, here and in the query, even where a combining mark
        // follows one (`=\u{33B}`): every split then makes the text checked again strictly shorter, so
        // the checks of nested values end.
        if let q = t.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(t[..<q])
            query = String(t[t.utf8.index(after: q)...])
        }
        path = redactPath(path)
        guard let query else { return path }
        return path + "?" + redactQuery(query, depth: depth, levels: levels)
    }

    /// Whether one of the bytes the rules split on (`? & ; = / : @ # [ ]`) is part of a larger character — a
    /// combining mark after it, a prepended mark before it — or the Greek question mark U+037E, which
    /// is canonically a `;`. Such text reads one way by bytes and another by characters; no client
    /// writes it, so the rules treat it as hiding a secret rather than guess.
    static func hasAmbiguousDelimiter(_ s: String) -> Bool {
        let u = s.utf8
        // Plain ASCII, the usual case, has a character per byte.
        guard u.contains(where: { $0 >= 0x80 }) else { return false }
        var i = u.startIndex
        while i < u.endIndex {
            let b = u[i]
            switch b {
            case UInt8(ascii: "?"), UInt8(ascii: "&"), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: "/"),
                 UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "#"), UInt8(ascii: "["), UInt8(ascii: "]"):
                let next = u.index(after: i)
                if String.Index(i, within: s) == nil || (next < u.endIndex && String.Index(next, within: s) == nil) { return true }
            case 0xCD:
                let next = u.index(after: i)
                if next < u.endIndex && u[next] == 0xBE { return true }
            default: break
            }
            i = u.index(after: i)
        }
        return false
    }

    /// Each `name=value` (separated by `&` or `;`) whose name, or whose decoded value, is a secret.
    /// Decoded until no escape is left (a value encoded twice hides `sk%252D…`), at most three times.
    static func fullyDecoded(_ s: String) -> String {
        var v = s
        for _ in 0..<3 {
            let next = percentDecoded(v)
            if next == v { break }
            v = next
        }
        return v
    }

    /// A query value that is a secret: by shape (also one token of it, also with `+` read as a space), or
    /// because it is itself a URL or query that holds one (`redirect=https%3A…%3Fcode%3D…`,
    /// `next=app%3A%2Fcb%3Fcode%3D…`, `proxy=http%3A%2F%2Fuser%3Apass%40…`). `depth` counts the levels
    /// that decoded something or read a URL, `levels` every level (a plain `a=b=c` chain, as in a SQL or
    /// PromQL query, spends only `levels`); past either cap the value is taken as a secret.
    static func valueHoldsSecret(_ value: String, depth: Int = 0, levels: Int = 0) -> Bool {
        let decoded = fullyDecoded(value)
        if hasAmbiguousDelimiter(decoded) || depth >= maxNesting || levels >= maxLevels { return true }
        if looksLikeSecretValue(decoded) || holdsSecretToken(decoded) { return true }
        if has(decoded, "+") {
            let spaced = percentDecoded(decoded, plusAsSpace: true)
            if looksLikeSecretValue(spaced) || holdsSecretToken(spaced) { return true }
        }
        let scheme = has(decoded, "://")
        let question = has(decoded, "?")
        guard scheme || question || has(decoded, "=") || has(decoded, "@") else { return false }
        // A URL (or anything with a query): its own path and query rules; then the part before its query,
        // read as a query too. The two readings do not overlap, so each level reads each byte once.
        var rest = decoded
        if scheme || question || decoded.hasPrefix("/") {
            if target(decoded, depth: depth + 1, levels: levels + 1) != decoded { return true }
            if let q = decoded.utf8.firstIndex(of: UInt8(ascii: "?")) { rest = String(decoded[..<q]) }
        }
        // Read as a query only when that splits it: a value with neither `=` nor a separator is one pair
        // without a name, whose check would be this one again, without end (`?a@b`). Such a value is a
        // secret when it is credentials without a scheme, `user:password@host`.
        guard has(rest, "=") || has(rest, "&") || has(rest, ";") else {
            guard let at = rest.lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") else { return false }
            return rest.index(after: colon) < at
        }
        return redactQuery(rest, depth: decoded != value ? depth + 1 : depth, levels: levels + 1) != rest
    }

    /// How many levels of values inside values are read in all, plain `=` chains included.
    static let maxLevels = 32

    /// Whether one word of free text (split at white space, quotes, commas, colons, brackets) is a secret
    /// by shape, or follows an authorization scheme: `why does sk-proj-… fail`, `Authorization: Bearer …`.
    static func holdsSecretToken(_ text: String) -> Bool {
        let u = text.utf8
        func separator(_ b: UInt8) -> Bool {
            switch b {
            case 0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: ","), UInt8(ascii: ":"),
                 UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "{"), UInt8(ascii: "}"):
                return true
            default: return false
            }
        }
        guard u.contains(where: separator) else { return false } // one word: the whole value's checks saw it
        var afterScheme = false
        var start = u.startIndex
        var i = u.startIndex
        while true {
            let end = i == u.endIndex || separator(u[i])
            if end && start < i {
                // Only words long enough for a shape, or short enough for a scheme, are made into strings.
                let n = u.distance(from: start, to: i)
                if afterScheme && n >= 8 { return true }
                if n >= 16 {
                    let word = String(text[start..<i])
                    if looksLikeKey(word) || isAWSKeyID(word) || isHighEntropy(word) { return true }
                }
                afterScheme = n >= 3 && n <= 6 && authSchemes.contains(String(text[start..<i]).lowercased())
            }
            if i == u.endIndex { return false }
            if end { start = u.index(after: i) }
            i = u.index(after: i)
        }
    }

    static func redactQuery(_ query: String, depth: Int = 0, levels: Int = 0) -> String {
        if hasAmbiguousDelimiter(query) { return placeholder }
        // Pairs are split at the bytes `&` and `;`; a pair is copied into the output only once one before
        // it has changed, so a query with nothing to redact is returned as it is.
        var out: String?
        var pairStart = query.startIndex
        func check(_ end: String.Index) {
            let pair = query[pairStart..<end]
            let redacted: String?
            if let eq = pair.utf8.firstIndex(of: UInt8(ascii: "=")) {
                let name = String(pair[..<eq])
                let value = String(pair[pair.utf8.index(after: eq)...])
                redacted = isSecretName(name) || valueHoldsSecret(value, depth: depth, levels: levels) ? name + "=" + placeholder : nil
            } else {
                redacted = valueHoldsSecret(String(pair), depth: depth, levels: levels) ? placeholder : nil
            }
            if let redacted {
                if out == nil { out = String(query[..<pairStart]) }
                out! += redacted
            } else if out != nil {
                out! += pair
            }
        }
        let utf8 = query.utf8
        var i = utf8.startIndex
        while i < utf8.endIndex {
            let b = utf8[i]
            if b == UInt8(ascii: "&") || b == UInt8(ascii: ";") {
                check(i)
                let next = utf8.index(after: i)
                if out != nil { out! += query[i..<next] }
                pairStart = next
            }
            i = utf8.index(after: i)
        }
        check(query.endIndex)
        return out ?? query
    }

    /// One pass over the bytes: only a target with a query, a colon (scheme, userinfo, bot token), a
    /// semicolon (matrix parameters) or a path segment that a rule below looks at can change; most API
    /// paths are returned as they are.
    static func mayHoldSecret(_ raw: String) -> Bool {
        raw.utf8.withContiguousStorageIfAvailable { bytes in
            for i in bytes.indices {
                let b = bytes[i]
                if b == UInt8(ascii: "?") || b == UInt8(ascii: ":") || b == UInt8(ascii: "%") || b == UInt8(ascii: ";") { return true }
                guard let words = wordsByFirstByte[Int(b)] else { continue }
                let rest = UnsafeBufferPointer(rebasing: bytes[i...])
                for w in words where w.utf8CodeUnitCount <= rest.count
                    && memcmp(rest.baseAddress!, w.utf8Start, w.utf8CodeUnitCount) == 0 { return true }
            }
            return false
        } ?? true
    }

    /// The words `mayHoldSecret` looks for (the path rules' `services` and `webhooks`, and the key
    /// prefixes), by their first byte.
    static let wordsByFirstByte: [[StaticString]?] = {
        var table = [[StaticString]?](repeating: nil, count: 256)
        let words: [StaticString] = ["services", "webhooks"] + keyPrefixes
        for w in words {
            let first = Int(w.utf8Start.pointee)
            table[first] = (table[first] ?? []) + [w]
        }
        return table
    }()

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
        // Keys put straight into the path (also percent-encoded): /v1/keys/sk-…, /webhook/xoxb-…; and the
        // Telegram bot API's /bot<token>/method (its colon also encoded).
        for i in segments.indices {
            let decoded = percentDecoded(segments[i])
            if looksLikeKey(decoded) || isAWSKeyID(decoded) {
                segments[i] = placeholder
            } else if decoded.hasPrefix("bot") && decoded.contains(":") {
                segments[i] = "bot" + placeholder
            }
        }
        // Discord webhooks: /api/webhooks/<id>/<token>
        if let w = segments.firstIndex(of: "webhooks"), w + 2 < segments.count, w > 0,
           segments[w - 1] == "api" || (w > 1 && segments[w - 2] == "api" && segments[w - 1].hasPrefix("v")) {
            segments[w + 2] = placeholder
        }
        // Matrix parameters: /cart;jsessionid=…, read as a query.
        for i in segments.indices {
            guard let semicolon = segments[i].utf8.firstIndex(of: UInt8(ascii: ";")) else { continue }
            let params = String(segments[i][segments[i].utf8.index(after: semicolon)...])
            segments[i] = String(segments[i][...semicolon]) + redactQuery(params)
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
        if bytes.count < totalBytes { text = maskCutToken(text) }
        text = text.replacingOccurrences(of: "\n", with: " ")
        return "\(type), \(totalBytes) bytes: \(text)"
    }

    /// Masks the value after any JSON key that names a secret — a string, a number, or a whole array or
    /// object — with any whitespace around the colon. Works on Unicode scalars, so a combining mark
    /// cannot merge with a quote.
    static func maskJSONSecrets(_ text: String) -> String {
        let chars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
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
            while j < chars.count && chars[j] != "," && chars[j] != "}" && chars[j] != "]" && !isSpace(chars[j]) { j += 1 }
            return j
        }
        while i < chars.count {
            guard chars[i] == "\"" else { out.append(chars[i]); i += 1; continue }
            let end = stringEnd(i)
            var key = String.UnicodeScalarView()
            if end - 1 > i + 1 { key.append(contentsOf: chars[(i + 1)..<(end - 1)]) }
            out.append(contentsOf: chars[i..<end])
            i = end
            var k = i
            while k < chars.count && isSpace(chars[k]) { k += 1 }
            guard k < chars.count, chars[k] == ":", isSecretName(unescapedJSON(String(key)), inQuery: false) else { continue }
            k += 1
            while k < chars.count && isSpace(chars[k]) { k += 1 }
            out.append(contentsOf: (":\"" + placeholder + "\"").unicodeScalars)
            i = valueEnd(k)
        }
        return String(out)
    }

    /// JSON `\uXXXX` escapes (and `\/`) written out, so a secret spelled with escapes is seen; control
    /// and format characters stay escaped (they would reach a terminal or a page as they are).
    static func unescapedJSON(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var chars = s.unicodeScalars.makeIterator()
        while let c = chars.next() {
            guard c == "\\" else { out.unicodeScalars.append(c); continue }
            guard let e = chars.next() else { out.unicodeScalars.append(c); break }
            if e == "u" {
                var hex = ""
                for _ in 0..<4 { if let h = chars.next() { hex.unicodeScalars.append(h) } }
                if let v = UInt32(hex, radix: 16), hex.count == 4, let scalar = Unicode.Scalar(v), Self.isPrintable(scalar) {
                    out.unicodeScalars.append(scalar)
                } else {
                    out += "\\u" + hex
                }
            } else if e == "/" {
                out.append("/")
            } else {
                out.unicodeScalars.append(c)
                out.unicodeScalars.append(e)
            }
        }
        return out
    }

    static func isPrintable(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return false
        default: return true
        }
    }

    /// Any text: secrets by shape wherever they stand (in a prompt, in `text/plain`), credentials in
    /// URLs (`scheme://user:pass@`), the credential after an authorization scheme (`Bearer x`,
    /// `Token x`), and the value after a secret name and `=` or `:` (up to its closing quote when
    /// quoted).
    static func maskText(_ raw: String) -> String {
        let chars = Array(unescapedJSON(raw).unicodeScalars)
        func isTokenChar(_ c: Unicode.Scalar) -> Bool {
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "-_+/.~%".unicodeScalars.contains(c))
        }
        var out = String.UnicodeScalarView()
        let mask = placeholder.unicodeScalars
        var i = 0
        var maskNext = false
        while i < chars.count {
            // scheme://user:pass@host: the password goes.
            if chars[i] == ":", i + 2 < chars.count, chars[i + 1] == "/", chars[i + 2] == "/" {
                var j = i + 3, colon: Int?
                while j < chars.count, isTokenChar(chars[j]) || chars[j] == ":" {
                    if chars[j] == ":" && colon == nil { colon = j }
                    j += 1
                }
                if let colon, j < chars.count, chars[j] == "@" {
                    out.append(contentsOf: chars[i...colon])
                    out.append(contentsOf: mask)
                    i = j
                    continue
                }
            }
            if maskNext && (chars[i] == "\"" || chars[i] == "'") {
                // A quoted value: all of it, to the closing quote.
                let quote = chars[i]
                var j = i + 1
                while j < chars.count && chars[j] != quote { j += 1 }
                out.append(quote)
                out.append(contentsOf: mask)
                if j < chars.count { out.append(quote) }
                i = min(j + 1, chars.count)
                maskNext = false
                continue
            }
            guard isTokenChar(chars[i]) else {
                out.append(chars[i])
                i += 1
                continue
            }
            var j = i
            while j < chars.count && isTokenChar(chars[j]) { j += 1 }
            var tokenView = String.UnicodeScalarView()
            tokenView.append(contentsOf: chars[i..<j])
            let token = String(tokenView)
            let decoded = fullyDecoded(token)
            let lower = decoded.lowercased()
            if maskNext || looksLikeSecretValue(decoded) {
                out.append(contentsOf: mask)
                // `Authorization: Bearer x`: the scheme, then its credential.
                maskNext = maskNext && authSchemes.contains(lower)
            } else {
                out.append(contentsOf: tokenView)
                if lower == "bearer" || lower == "basic" {
                    var k = j
                    while k < chars.count && chars[k] == " " { k += 1 }
                    maskNext = k > j && k < chars.count && isTokenChar(chars[k])
                } else if isSecretName(decoded, inQuery: false) {
                    // `password=x`, `password: x`, `"token" : "x"`
                    var k = j
                    while k < chars.count && (chars[k] == " " || chars[k] == "\"" || chars[k] == "'") { k += 1 }
                    if k < chars.count && (chars[k] == "=" || chars[k] == ":") {
                        maskNext = true
                        out.append(contentsOf: chars[j...k])
                        j = k + 1
                        while j < chars.count && chars[j] == " " { out.append(chars[j]); j += 1 }
                    }
                }
            }
            i = j
        }
        return String(out)
    }

    /// A body cut at the summary's length may end inside a secret too short to be known by its shape:
    /// a last token of 8 or more characters goes.
    static func maskCutToken(_ text: String) -> String {
        var scalars = Array(text.unicodeScalars)
        var n = 0
        while let last = scalars.last, last.isASCII,
              last.properties.isAlphabetic || ("0"..."9").contains(last) || "-_+/=~%".unicodeScalars.contains(last) {
            scalars.removeLast()
            n += 1
        }
        guard n >= 8 else { return text }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out) + placeholder
    }
}
