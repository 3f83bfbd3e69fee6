@testable import Attribution
import Testing

/// The guess made when a connection's socket was gone before it was seen: the youngest process alive
/// then, unless a process of another session started in the 100 ms before it.
@Suite struct ProcessInferenceTests {
    static let ms: Int64 = 1_000_000

    static func process(_ pid: Int, _ session: String?, started: Int64, exited: Int64? = nil, lastSeen: Int64? = nil)
        -> ProcessTracker.Record {
        ProcessTracker.Record(facts: ProcessFacts(pid: pid, ppid: 1, comm: "curl", exe: "/usr/bin/curl", cgroup: nil, startTime: 0),
                              firstSeen: started * ms, lastSeen: (lastSeen ?? exited ?? started) * ms, exited: exited.map { $0 * ms },
                              sessionId: session, attribution: session == nil ? "none" : "inherited", agent: nil)
    }

    @Test func theYoungestAliveWhenOneSessionIsBusy() throws {
        let records = [Self.process(10, "red", started: 0, lastSeen: 1_000), Self.process(11, "red", started: 900, exited: 920),
                       Self.process(12, "red", started: 960, exited: 1_010)]
        let (youngest, ambiguous) = try #require(ProcessTracker.guess(records, at: 1_000 * Self.ms))
        #expect(youngest.facts.pid == 12 && !ambiguous)
    }

    /// Two sessions each starting a one-shot process every 20 ms: the maker of a connection (red) was not
    /// seen at all, a blue one is the youngest alive, and red's previous one has already exited. The
    /// exited red process still started within 100 ms, so the guess is ambiguous rather than blue.
    @Test func anotherSessionsExitedProcessStillMakesItAmbiguous() throws {
        let records = [Self.process(20, "red", started: 960, exited: 985), Self.process(21, "blue", started: 990, lastSeen: 1_005)]
        let (youngest, ambiguous) = try #require(ProcessTracker.guess(records, at: 1_000 * Self.ms))
        #expect(youngest.facts.pid == 21)
        #expect(ambiguous)
    }

    @Test func anotherSessionLongAgoIsNoRival() throws {
        let records = [Self.process(30, "blue", started: 0, lastSeen: 2_000), Self.process(31, "red", started: 950, lastSeen: 1_002)]
        let (youngest, ambiguous) = try #require(ProcessTracker.guess(records, at: 1_000 * Self.ms))
        #expect(youngest.facts.pid == 31 && !ambiguous)
        #expect(ProcessTracker.guess([Self.process(40, "red", started: 0, exited: 500)], at: 1_000 * Self.ms) == nil)
    }
}
