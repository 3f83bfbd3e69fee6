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
