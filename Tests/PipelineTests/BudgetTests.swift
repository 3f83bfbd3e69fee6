import Pipeline
import Testing

/// Every cap that grows with the input derives from `--memory-mb`: doubling the budget doubles each one,
/// so a budget that is ignored (or a cap left out of the formula) shows up here.
@Suite struct BudgetTests {
    static func caps(_ mb: Int) -> [String: Int] {
        var o = AnalysisOptions()
        o.scaleCaps(toMemoryMB: mb)
        return ["connections": o.reassembly.maxConnections, "out-of-order bytes": o.reassembly.maxPendingBytesTotal,
                "held calls": o.maxHeldCalls, "parser bytes": o.maxParserBufferBytes, "DNS names": o.maxDNSNames]
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
                                   "parser bytes": 32 << 20, "DNS names": 65_536])
        #expect(AnalysisOptions().maxHeldCalls == 20_000)
    }
}
