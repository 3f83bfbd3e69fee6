import Analysers
import CallModel
import Foundation
import Pipeline
import Testing

/// What reaches the protocol inside decrypted TLS: the end of the TCP stream and capture gaps must reach
/// the inner HTTP/1 parser as they reach a plaintext one. Captures by Scripts/make-tls-close-sample:
/// curl against a Python TLS server answering HTTP/1.0 without Content-Length, the body ended by closing.
@Suite struct StreamWiringTests {
    static let samples = Corpus.packageRoot.appendingPathComponent("Samples")

    static func calls(_ file: String) throws -> [CallRecord] {
        let keyLog = KeyLog()
        keyLog.add(text: try String(contentsOf: samples.appendingPathComponent("tls-close-delimited.keylog"), encoding: .utf8))
        var options = AnalysisOptions()
        options.keyLog = keyLog
        options.includeLocal = true
        return try Analyzer.analyzeFile(samples.appendingPathComponent(file).path, options: options).calls
            .filter { $0.kind == .http }
    }

    /// A close-delimited response inside TLS (1.3 and 1.2) ends with the connection's FIN: ok, with its end
    /// time and whole body, not "capture ended during the response".
    @Test func closeDelimitedResponseInsideTLSEndsAtTheFIN() throws {
        let http = try Self.calls("tls-close-delimited.pcap")
        #expect(http.map(\.path) == ["/close13", "/close12", "/gap"])
        for c in http {
            #expect(c.visibility == .decrypted)
            #expect(c.outcome == .ok, "\(c.path ?? ""): \(c.error ?? "")")
            #expect(c.statusCode == 200 && c.responseBodyBytes == 4600)
            #expect(c.endedAt != nil && c.latencyMicros != nil)
        }
        #expect(Set(http.compactMap(\.tlsVersion)) == ["1.2", "1.3"])
    }

    /// A server segment left out of a decrypted response: the inner exchange learns of the gap and says
    /// so (`content_gap`, bytes missing), the others stay ok.
    @Test func gapInsideTLSReachesTheInnerHTTPParser() throws {
        let http = try Self.calls("tls-gap.pcap")
        #expect(http.map(\.path) == ["/close13", "/close12", "/gap"])
        #expect(http.prefix(2).allSatisfy { $0.outcome == .ok })
        let gap = try #require(http.last)
        #expect(gap.outcome == .incomplete)
        #expect(gap.weirds.contains(Weird.contentGap.rawValue))
        #expect(gap.missedBytes > 0 && gap.error?.contains("missing from the capture") == true)
    }
}
