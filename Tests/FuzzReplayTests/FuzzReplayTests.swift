import Foundation
import FuzzTargets
import Testing

/// Every seed (FuzzTesting/Corpus) and every input that once crashed, hung or leaked
/// (FuzzTesting/FailCases) goes once through its fuzz target, as `libFuzzer -runs=0` would. This debug
/// build keeps Swift's bounds, overflow and unsafe-pointer checks, so a regression traps here.
@Suite struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../FuzzTesting").standardized

    static func inputs(_ kind: String, _ target: String) -> [URL] {
        let dir = root.appendingPathComponent("\(kind)/\(target)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }

    @Test(arguments: fuzzTargets.map(\.name))
    func replaysSeedsAndFailCases(target name: String) throws {
        let target = try #require(fuzzTargets.first { $0.name == name })
        let seeds = Self.inputs("Corpus", name)
        let failCases = Self.inputs("FailCases", name)
        #expect(!seeds.isEmpty, "no seeds for \(name): run Scripts/fuzz --seeds")
        if Self.targetsWithKnownCrashers.contains(name) {
            #expect(!failCases.isEmpty, "the inputs that once crashed \(name) are gone from FailCases")
        }
        // What fails here is a trap (bounds, overflow, force unwrap) in the target: it ends the test run.
        for url in seeds + failCases {
            let data = try Data(contentsOf: url)
            data.withUnsafeBytes { target.run($0) }
        }
    }

    /// Targets for which fuzzing found a crash; their crashers must keep being replayed.
    static let targetsWithKnownCrashers: Set<String> = ["pcapfile", "registry", "pcapng-times", "fragments", "redaction"]
}
