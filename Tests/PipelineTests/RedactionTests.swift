import Foundation
import Pipeline
import Testing

@Suite struct RedactionTests {
    @Test(arguments: [
        ("/v1/search?q=cats&api_key=sk-123&limit=5", "/v1/search?q=cats&api_key=REDACTED&limit=5"),
        ("/x?token=abc&sig=def&Password=p&access_token=t", "/x?token=REDACTED&sig=REDACTED&Password=REDACTED&access_token=REDACTED"),
        ("/x?x_goog_api_key=1&page=2", "/x?x_goog_api_key=REDACTED&page=2"),
        ("/services/T000/B000/XXXXSECRET", "/services/T000/B000/REDACTED"),
        ("/bot123456:ABC-DEF/sendMessage", "/botREDACTED/sendMessage"),
        ("http://user:pass@example.com/path?key=1", "http://example.com/path?key=REDACTED"),
        ("/plain/path", "/plain/path"),
        ("/v1/keys/sk-ant-api03-PLANTEDsecret0000/usage", "/v1/keys/REDACTED/usage"),
        ("/hooks/xoxb-1234567890-abcdefghij", "/hooks/REDACTED"),
        ("/auth/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "/auth/REDACTED"),
        ("/users/AKIAIOSFODNN7EXAMPLE/keys", "/users/REDACTED/keys"),
        ("/sk-short/ghp_", "/sk-short/ghp_"),
        ("/q?flag&empty=", "/q?flag&empty="),
        // A pair without `=` holding an `@`, plain or encoded, once recursed without end.
        ("/x?a@b", "/x?a@b"),
        ("/x?user%40example.com&api_key=sk-1", "/x?user%40example.com&api_key=REDACTED"),
        ("/x?next=/y%3Fa@b", "/x?next=/y%3Fa@b"),
        // Credentials without a scheme in a value, plain or encoded; an address alone is no secret.
        ("/x?proxy=alice:hunter2@proxy.example:3128", "/x?proxy=REDACTED"),
        ("/x?proxy=alice%3Ahunter2%40proxy.example", "/x?proxy=REDACTED"),
        ("/x?contact=alice@example.com&at=10:30", "/x?contact=alice@example.com&at=10:30"),
        // Pairs split at `&` and `;`, empty ones kept; a query with nothing to redact comes back as it was.
        ("/x?a=1;token=t&&b=2;", "/x?a=1;token=REDACTED&&b=2;"),
        ("/x?a=1&b=2;c=3&&d", "/x?a=1&b=2;c=3&&d"),
        ("/x?café=crème&naïve", "/x?café=crème&naïve"),
        // Authorization schemes in any case, with the white space around them (tab, no-break space) trimmed;
        // a letter that lowercases into ASCII (the Kelvin sign) is read as its lower case.
        ("/x?q=BEARER%20abcdefgh12", "/x?q=REDACTED"),
        ("/x?q=%09Bearer%20abcdefgh12", "/x?q=REDACTED"),
        ("/x?q=%C2%A0Token%20abcdefghij%C2%A0", "/x?q=REDACTED"),
        ("/x?q=to%E2%84%AAen%20abcdefghij", "/x?q=REDACTED"),
        ("/x?q=Bearer%20short", "/x?q=Bearer%20short"),
        ("/x?%20api_key%C2%A0=v", "/x?%20api_key%C2%A0=REDACTED"),
        // A delimiter joined to a combining mark (or a prepended one), or the Greek question mark that is
        // canonically `;`, reads one way by bytes and another by characters: the target goes whole. The
        // first once recursed without end.
        ("/x?api_key[]=\u{33B}x", "/REDACTED"),
        ("/x?\u{33B}token=t&a=1", "/REDACTED"),
        ("/x?data[token]&\u{301}=hunter2", "/REDACTED"),
        ("/cb?\u{37E}code=abc123", "/REDACTED"),
        ("/x?\u{301}/sk-abcdefghijklmnopqrstu", "/REDACTED"),
        ("/x?a=1&b=x\u{600}=hunter2", "/REDACTED"),
        // The same, percent-encoded inside a value: that value goes.
        ("/x?r=a%3A%2F%2F%CC%81%26token%3Dhunter2&page=2", "/x?r=REDACTED&page=2"),
        ("/x?p=u%3Ahunter2%40h%3D%CC%81", "/x?p=REDACTED"),
        ("/x?next=%CD%BEcode%3Dabc123", "/x?next=REDACTED"),
        ("/r?u=https%3A%2F%2Fh%2Fx%3F%CC%81%2Fsk-abcdefghijklmnopqrstu", "/r?u=REDACTED"),
        // A URL value's query is read as a query even when the URL's own rules change nothing.
        ("/x?r=a%3A%2F%2Fb%26token%3Dhunter2", "/x?r=REDACTED"),
        // Values inside values are read eight deep, then taken as secrets; ordinary text in other scripts stays.
        ("/x?a=b%3Dc", "/x?a=b%3Dc"),
        ("/x?a=" + String(repeating: "a=", count: 20_000) + "a", "/x?a=REDACTED"),
        ("/search?q=caf\u{E9}&lang=fr-\u{1F1EB}\u{1F1F7}", "/search?q=caf\u{E9}&lang=fr-\u{1F1EB}\u{1F1F7}"),
        // A plain `=` chain (a SQL or PromQL query) is read without spending the nesting depth.
        ("/?query=SELECT%20count()%20FROM%20hits%20WHERE%20a%3D1%20AND%20b%3D2%20AND%20c%3D3%20AND%20d%3D4%20AND%20e%3D5%20AND%20f%3D6%20AND%20g%3D7%20AND%20h%3D8",
         "/?query=SELECT%20count()%20FROM%20hits%20WHERE%20a%3D1%20AND%20b%3D2%20AND%20c%3D3%20AND%20d%3D4%20AND%20e%3D5%20AND%20f%3D6%20AND%20g%3D7%20AND%20h%3D8"),
        // Tokens encoded as clients encode them, shapes inside free text, names by their last part.
        ("/bot123456789%3APLANTEDabcdefghij/sendMessage", "/botREDACTED/sendMessage"),
        ("/x?x=Bearer+PLANTEDabcdefgh&page=1", "/x?x=REDACTED&page=1"),
        ("/search?q=Authorization%3A%20Bearer%20PLANTEDabcdefgh", "/search?q=REDACTED"),
        ("/search?q=why%20does%20sk-proj-PLANTEDabcdefghijkl%20fail", "/search?q=REDACTED"),
        ("/x?data[accessKey]=PLANTED-x&accessKey[]=PLANTED-y", "/x?data[accessKey]=REDACTED&accessKey[]=REDACTED"),
        ("/api/sendhttp.php?authkey=PLANTED123456AbCd&mobiles=1", "/api/sendhttp.php?authkey=REDACTED&mobiles=1"),
        ("/x?jsessionid=PLANTED0123&PHPSESSID=PLANTED4567", "/x?jsessionid=REDACTED&PHPSESSID=REDACTED"),
        ("/continue?next=com.example.app%3A%2Foauth2redirect%3Fcode%3DPLANTEDauthcode", "/continue?next=REDACTED"),
        ("/x?next=%3Fcode%3DPLANTED", "/x?next=REDACTED"),
        ("/x?token%5B%CC%81%5D=PLANTED-x", "/x?token%5B%CC%81%5D=REDACTED"),
        ("//user:PLANTED@host/x", "//host/x"),
        ("/cart;jsessionid=PLANTED0123456789ABCDEF/items;page=2", "/cart;jsessionid=REDACTED/items;page=2"),
        // Ordinary text and URLs stay.
        ("/search?q=how%20to%20use%20curl%20with%20a%20proxy&page=2", "/search?q=how%20to%20use%20curl%20with%20a%20proxy&page=2"),
        ("/r?u=https%3A%2F%2Fexample.com%2Fdocs%3Fpage%3D2", "/r?u=https%3A%2F%2Fexample.com%2Fdocs%3Fpage%3D2"),
        ("/wiki/Cafe\u{301}?q=na\u{EF}ve", "/wiki/Cafe\u{301}?q=na\u{EF}ve"),
    ])
    func secretsInTargetsAreReplaced(input: String, expected: String) {
        #expect(Redaction.target(input) == expected)
    }

    @Test func summariesMaskSecretValuesAndSkipBinary() {
        let json = Array(#"{"model":"gpt","api_key":"sk-live-123","nested":{"token": "t"}}"#.utf8)
        let s = Redaction.summary(contentType: "application/json", bytes: json, totalBytes: 500)
        #expect(s == #"application/json, 500 bytes: {"model":"gpt","api_key":"REDACTED","nested":{"token":"REDACTED"}}"#)
        #expect(Redaction.summary(contentType: "image/png", bytes: [0x89, 0x50], totalBytes: 2) == "image/png, 2 bytes")
        #expect(Redaction.summary(contentType: nil, bytes: [], totalBytes: 0) == nil)
    }
}

/// Secrets planted the ways a hostile review found them leaking (names, shapes, encodings, bodies):
/// none may survive, and UUIDs, hex digests and ordinary values must. The list is committed in
/// `Tests/Fixtures/planted-secrets.json`, which `Scripts/lib/secrets-matrix.sh` also sends through real
/// traffic (HTTP/1.1 and HTTP/2, plaintext and decrypted) and looks for in every output.
@Suite struct PlantedSecretTests {
    struct Fixture: Decodable {
        struct Body: Decodable, Sendable { var type: String; var body: String }
        var targets: [String]
        var bodies: [Body]
        var ordinary_targets: [String]
    }

    static let fixture: Fixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/planted-secrets.json").standardized
        // A missing or broken list fails every test below (they expect entries).
        guard let data = try? Data(contentsOf: url), let f = try? JSONDecoder().decode(Fixture.self, from: data) else {
            return Fixture(targets: [], bodies: [], ordinary_targets: [])
        }
        return f
    }()

    @Test func theListIsThere() {
        #expect(Self.fixture.targets.count >= 25 && Self.fixture.bodies.count >= 18 && Self.fixture.ordinary_targets.count >= 9)
        #expect(Self.fixture.targets.allSatisfy { $0.contains("PLANTED") } && Self.fixture.bodies.allSatisfy { $0.body.contains("PLANTED") })
    }

    @Test(arguments: PlantedSecretTests.fixture.targets)
    func targets(_ target: String) {
        let out = Redaction.target(target)
        #expect(!out.contains("PLANTED"), "\(target) → \(out)")
    }

    @Test(arguments: PlantedSecretTests.fixture.bodies.map { ($0.type, $0.body) })
    func bodies(_ type: String, _ body: String) {
        let out = Redaction.summary(contentType: type, bytes: Array(body.utf8), totalBytes: body.utf8.count) ?? ""
        #expect(!out.contains("PLANTED"), "\(body) → \(out)")
    }

    /// A body cut at the summary's length: a secret begun at the end is not left half-shown.
    @Test func aSecretCutAtTheEndGoes() {
        let body = #"{"note": "x", "k": "PLANTEDabcdefghijklmnopqrstuvw"#
        let out = Redaction.summary(contentType: "application/json", bytes: Array(body.utf8), totalBytes: 10_000) ?? ""
        #expect(!out.contains("PLANTED"), "\(out)")
    }

    /// What must stay: ids that are not secrets.
    @Test(arguments: PlantedSecretTests.fixture.ordinary_targets)
    func ordinaryTargetsStay(_ target: String) {
        #expect(Redaction.target(target) == target)
    }

    @Test func ordinaryBodiesStay() {
        let body = #"{"model":"gpt-4o","max_tokens":100,"id":"3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b","error":{"code":"invalid_api_key"},"file":"/Users/Alice/Projects/App2/main.swift"}"#
        let out = Redaction.summary(contentType: "application/json", bytes: Array(body.utf8), totalBytes: body.utf8.count)
        #expect(out == "application/json, \(body.utf8.count) bytes: \(body)")
    }
}
