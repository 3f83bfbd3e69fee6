import Analysers
import Foundation
import Pipeline
import Testing

/// Every cap that grows with the input derives from `--memory-mb`: doubling the budget doubles each one,
/// so a budget that is ignored (or a cap left out of the formula) shows up here.
@Suite struct BudgetTests {
    static func caps(_ mb: Int) -> [String: Int] {
        var o = AnalysisOptions()
        o.scaleCaps(toMemoryMB: mb)
        return ["connections": o.reassembly.maxConnections, "out-of-order bytes": o.reassembly.maxPendingBytesTotal,
                "held calls": o.maxHeldCalls, "parser bytes": o.maxParserBufferBytes, "DNS names": o.maxDNSNames,
                "key log entries": o.maxKeyLogEntries, "socket owners": o.maxSocketOwners, "registry entries": o.maxRegistryEntries,
                "transcript tool-call ids": o.maxTranscriptToolCallIds, "transcript fetches": o.maxTranscriptFetches,
                "transcript turns": o.maxTranscriptTurns, "QUIC flows": o.maxQUICFlows,
                "IP datagrams in reassembly": o.fragments.maxDatagrams, "IP fragment bytes": o.fragments.maxBytes]
    }

    @Test(arguments: [64, 128, 512])
    func capsScaleWithTheBudget(megabytes: Int) {
        let base = Self.caps(256), scaled = Self.caps(megabytes)
        for (name, value) in base {
            #expect(scaled[name]! * 256 == value * megabytes, "\(name): \(scaled[name]!) at \(megabytes) MB, \(value) at 256 MB")
        }
    }

    @Test func defaultIsTheDocumentedBudget() {
        #expect(AnalysisOptions.defaultMemoryMB == 256)
        #expect(Self.caps(256) == ["connections": 40_960, "out-of-order bytes": 32 << 20, "held calls": 20_000,
                                   "parser bytes": 32 << 20, "DNS names": 65_536, "key log entries": 262_144,
                                   "socket owners": 65_536, "registry entries": 65_536,
                                   "transcript tool-call ids": 65_536, "transcript fetches": 16_384, "transcript turns": 32_768,
                                   "QUIC flows": 16_384, "IP datagrams in reassembly": 4_096, "IP fragment bytes": 16 << 20])
        #expect(AnalysisOptions().maxHeldCalls == 20_000)
    }

    /// A key log followed for weeks stays within its cap: the oldest half is forgotten (counted), the newest
    /// secrets still answer.
    @Test func keyLogIsBounded() {
        let log = KeyLog()
        log.maxEntries = 100
        func random(_ i: Int) -> String { String(format: "%064x", i) }
        for i in 0..<1_000 { log.add(line: Substring("CLIENT_RANDOM \(random(i)) \(String(repeating: "ab", count: 48))")) }
        #expect(log.entries <= 100)
        #expect(log.forgotten + log.entries == 1_000)
        let newest = (0..<32).map { UInt8(truncatingIfNeeded: 999 >> (8 * (31 - $0))) }
        #expect(log.secret(.clientRandom, clientRandom: newest) != nil)
        #expect(log.secret(.clientRandom, clientRandom: [UInt8](repeating: 0, count: 32)) == nil)
    }
}
