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
/// none may survive, and UUIDs, hex digests and ordinary values must.
@Suite struct PlantedSecretTests {
    static let secret = "PLANTEDz9Q2mX7vK4pL8wR3tY6uI1oA5"   // 32 characters, mixed case and digits

    @Test(arguments: [
        "/x?api_key[]=PLANTED-one",
        "/x?bearer=PLANTED-two",
        "/x?pass=PLANTED-three",
        "/x?auth_header=PLANTED-four",
        "/x?a=1;token=PLANTED-five",
        "/x?q=sk-proj-PLANTEDabcdefghijkl",
        "/x?x=Bearer%20PLANTEDabcdefgh",
        "/x?api%5Fkey=PLANTED-six",
        "/v1/sk%2Dproj-PLANTEDabcdefghijkl/x",
        "/x?X-Amz-Signature=PLANTED-seven&X-Amz-Credential=PLANTED-eight",
        "/x?AWSAccessKeyId=PLANTED-nine",
        "/x?X-Goog-Signature=PLANTED-ten",
        "/x?sig=PLANTED-eleven",
        "/x?id=AKIAPLANTEDEXAMPLE01",
        "/x?t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJQTEFOVEVEIn0.PLANTEDsig",
        "/x?opaque=PLANTEDz9Q2mX7vK4pL8wR3tY6uI1oA5",
        "/x?x=wJalrXUtnFEMI+K7MDENG/bPxRfiCYPLANTEDKEY",
        "/x?url=https%3A%2F%2Fs3.test%2Fo%3FX-Amz-Signature%3DPLANTED-twelve",
        "/x?redirect=https%3A%2F%2Fa.test%2Fcb%3Fcode%3DPLANTED-thirteen",
        "/x?proxy=http%3A%2F%2Fbob%3APLANTED-fourteen%40proxy.test",
        "/x?next=%2Fv1%3Fapi_key%3DPLANTED-fifteen",
        "/x?x=sk%252Dproj-PLANTEDabcdefghijkl",
        "/x?x=Bearer%2520PLANTEDabcdefgh",
        "/api/v10/webhooks/123/PLANTED-sixteen",
        "/x?apiKey=PLANTED-seventeen",
    ])
    func targets(_ target: String) {
        let out = Redaction.target(target)
        #expect(!out.contains("PLANTED"), "\(target) → \(out)")
    }

    @Test(arguments: [
        ("application/json", #"{"api_key" : "PLANTED-a"}"#),
        ("application/json", "{\"token\"\n: \"PLANTED-b\"}"),
        ("application/json", #"{"secrets": ["x"], "password": ["PLANTED-c"]}"#),
        ("application/json", #"{"credentials": {"id": "PLANTED-d"}}"#),
        ("application/json", #"{"prompt": "use sk-ant-api03-PLANTEDabcdefghijkl please"}"#),
        ("application/json", #"{"note": "AKIAPLANTEDEXAMPLE01"}"#),
        ("application/json", #"{"prompt": "key sk\u002dant\u002dapi03-PLANTEDabcdefghijkl"}"#),
        ("application/x-www-form-urlencoded", "user=a&pass=PLANTED-e"),
        ("application/x-www-form-urlencoded", "user=a&pass%77ord=PLANTED-f"),
        ("text/plain", "login with password=PLANTED-g today"),
        ("text/plain", "Authorization: Bearer PLANTED-h"),
        ("text/plain", "token: PLANTED-i"),
        ("application/json", #"{"access_token":"PLANTED-j","expires_in":3600}"#),
        ("application/json", #"{"note":"wJalrXUtnFEMI+K7MDENG/bPxRfiCYPLANTEDKEY"}"#),
        ("text/plain", "db at postgres://app:PLANTED-k@db:5432/prod"),
        ("application/json", "{\"content\":\"\u{301}x\",\"password\":\"PLANTED horse battery\"}"),
        ("text/plain", "{'api_key': 'PLANTED second'}"),
        ("text/plain", "Authorization: Token PLANTED-l"),
    ])
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
    @Test(arguments: [
        "/v1/models?model=meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
        "/v1/chat/completions?after=chatcmpl-AbCdEf0123456789AbCdEf0123456789",
        "/v1/users?name=User-3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b",
        "/zoo?monkey=1&sort=name",
        "/v1/runs/3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b?page=2",
        "/blobs/sha256/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "/search?q=cats+and+dogs&limit=20&model=gpt-4o",
        "/v1/chat/completions",
        "/w/index.php?title=Main_Page&oldid=123456",
    ])
    func ordinaryTargetsStay(_ target: String) {
        #expect(Redaction.target(target) == target)
    }

    @Test func ordinaryBodiesStay() {
        let body = #"{"model":"gpt-4o","max_tokens":100,"id":"3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b","error":{"code":"invalid_api_key"},"file":"/Users/Alice/Projects/App2/main.swift"}"#
        let out = Redaction.summary(contentType: "application/json", bytes: Array(body.utf8), totalBytes: body.utf8.count)
        #expect(out == "application/json, \(body.utf8.count) bytes: \(body)")
    }
}
