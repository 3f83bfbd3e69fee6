import Analysers
import CallModel
import Foundation
import Pipeline
import Testing

/// dns-tcp.pcap (Scripts/make-proxy-captures): `dig +tcp +keepopen` asking four questions on one TCP
/// connection (an A, an AAAA, a name that does not exist, a CNAME chain), then one lookup over UDP.
@Suite struct DNSOverTCPTests {
    @Test func lookupsOverTCPAreDNSCallsLikeUDPOnes() throws {
        let calls = try WireCaptureTests.calls("dns-tcp.pcap")
        let dns = calls.filter { $0.kind == .dns }
        #expect(calls.count == dns.count, "\(calls.map(\.kind))")
        #expect(dns.count == 5)
        let tcp = dns.filter { $0.clientPort == dns.first?.clientPort }
        #expect(tcp.count == 4)
        #expect(tcp.map(\.host) == ["api.weather.test", "api.weather.test", "missing.weather.test", "www.weather.test"])
        #expect(tcp.map(\.dnsQtype) == ["A", "AAAA", "A", "A"])
        #expect(tcp.map(\.dnsRcode) == ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"])
        #expect(tcp[0].dnsAnswers == ["A 10.214.0.11"])
        #expect(tcp[1].dnsAnswers == ["AAAA fd00:214::11"])
        #expect(tcp[2].dnsAnswers == nil && tcp[2].outcome == .dnsFailed && tcp[2].error == "NXDOMAIN")
        #expect(tcp[3].dnsAnswers == ["CNAME edge.weather.test", "A 10.214.0.12"])
        for c in tcp {
            #expect(c.serverIp == "10.214.0.11" && c.serverPort == 53 && c.clientIp == "10.214.0.10")
            #expect(c.latencyMicros != nil && c.endedAt != nil && c.visibility == .plaintext)
        }
        #expect([0, 1, 3].allSatisfy { tcp[$0].outcome == .ok })
        // One TCP flow (its Community ID), apart from the UDP lookup's.
        #expect(Set(tcp.map(\.connectionId)).count == 1)
        let udp = try #require(dns.first { $0.clientPort != tcp[0].clientPort })
        #expect(udp.connectionId != tcp[0].connectionId && udp.dnsAnswers == ["A 10.214.0.11"] && udp.outcome == .ok)
    }

    /// Messages cut anywhere (inside the length prefix, inside the body) come out whole and in order;
    /// only a cut message is held, and what it held is given back to the budget.
    @Test func theFramerJoinsMessagesCutAnywhereWithinTheBudget() {
        let messages: [[UInt8]] = [Array(repeating: 1, count: 3), [], Array(repeating: 2, count: 300), [7]]
        var stream: [UInt8] = []
        for m in messages { stream += [UInt8(m.count >> 8), UInt8(m.count & 0xff)] + m }
        for size in [1, 2, 3, 7, 100, stream.count] {
            let budget = ParserBudget(limit: 1_000)
            var seen: [[UInt8]] = []
            do {
                let f = DNSStreamFramer(budget: budget)
                var i = 0
                while i < stream.count {
                    let end = min(stream.count, i + size)
                    stream[i..<end].withUnsafeBytes { f.deliver(0, $0) { seen.append(Array($0)) } }
                    #expect(budget.used == f.bufferedBytes && f.bufferedBytes <= 302)
                    i = end
                }
                #expect(f.messages == messages.count)
            }
            #expect(seen == messages, "segments of \(size)")
            #expect(budget.used == 0)
        }
        // A budget too small for a cut message gives the direction up.
        let small = ParserBudget(limit: 10)
        let f = DNSStreamFramer(budget: small)
        var got = 0
        stream.withUnsafeBytes { s in
            f.deliver(1, UnsafeRawBufferPointer(rebasing: s[0..<50])) { _ in got += 1 }
            f.deliver(1, UnsafeRawBufferPointer(rebasing: s[50...])) { _ in got += 1 }
        }
        #expect(got == 2 && f.gaveUp[1] && small.used == 0 && small.refusals == 1)
    }
}
