import CallModel
import Foundation
import Pipeline
import Testing

/// Resolver noise folded across resolvers and address families, on a capture of glibc's resolver with
/// one nameserver per family (Scripts/make-dns-capture): the search-list expansions (NXDOMAIN) went to
/// both resolvers, each asked from the client's address of that family, and none is left as a call.
@Suite struct DNSFoldingTests {
    @Test func searchListAcrossResolversAndFamilies() throws {
        let path = Corpus.packageRoot.appendingPathComponent("Tests/Fixtures/captures/dns-two-resolvers.pcap").path
        let result = try Analyzer.analyzeFile(path, options: AnalysisOptions())
        let dns = result.calls.filter { $0.kind == .dns }
        let rows = dns.map { "\($0.host ?? "-") \($0.dnsQtype ?? "-") \($0.outcome.rawValue) \($0.clientIp ?? "-")" }.sorted()
        // The expansions came from both of the client's addresses: the capture does split them.
        #expect(Set(dns.compactMap(\.clientIp)).count == 2)
        #expect(!dns.contains { $0.host?.hasSuffix("cluster.local") == true }, "\(rows)")
        #expect(result.stats.dnsFolded == 8, "\(result.stats.dnsFolded) folded: \(rows)")
        let byName = Dictionary(grouping: dns, by: { "\($0.host ?? "") \($0.dnsQtype ?? "")" })
        #expect(byName["api.fold.test A"]?.map(\.outcome) == [.ok])
        // No AAAA record, beside an A answer asked of the other resolver: fine.
        #expect(byName["api.fold.test AAAA"]?.map(\.outcome) == [.ok])
        #expect(byName["nowhere.fold.test A"]?.map(\.outcome) == [.dnsFailed])
        #expect(byName["nowhere.fold.test AAAA"]?.map(\.outcome) == [.dnsFailed])
        #expect(dns.count == 4)
    }
}
