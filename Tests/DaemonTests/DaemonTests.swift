import CallModel
import Daemon
import Foundation
import Logging
import Pipeline
import ServiceLifecycle
import Storage
import Testing

/// The live service group, built as `calltap capture` builds it but over a capture file and an in-memory
/// database: no root, no namespace. What it stores must be exactly what the pipeline finds in the file.
@Suite struct DaemonTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let sample = root.appendingPathComponent("Samples/agent-demo.pcap").path
    static let generated = root.appendingPathComponent("Samples/https-demo.pcap").path

    /// A sink that keeps what it is given, as JSON Lines would write it.
    final class Lines: CallSink, @unchecked Sendable {
        let sinkName = "lines"
        var lines: [String] = []
        func write(_ calls: [CallRecord]) throws { lines += calls.map(CallJSON.line) }
        func flush() throws {}
    }

    static func configuration(_ files: [String], session: String? = nil) -> Daemon.Configuration {
        var c = Daemon.Configuration()
        c.targets = files.enumerated().map { Daemon.Target(name: "file-\($0.offset)", source: .file(path: $0.element)) }
        c.attributeProcesses = false
        c.analysis.orderedOutput = false
        c.session = session
        return c
    }

    /// Reading to the end shuts the group down by itself; every call reaches the database and the other
    /// sink, tagged with its target and the session, and the statistics rows are written.
    @Test func serviceGroupOverACaptureFileStoresEveryCall() async throws {
        let store = try CallStore.inMemory()
        let lines = Lines()
        let daemon = Daemon(configuration: Self.configuration([Self.sample], session: "s-daemon"), store: store,
                            sinks: [lines], logger: Logger(label: "test"))
        try await daemon.group.run()
        var options = AnalysisOptions()
        options.target = "file-0"
        options.sessionId = "s-daemon"
        let expected = try Analyzer.analyzeFile(Self.sample, options: options).calls
        let stored = try store.calls(CallStore.Filter())
        #expect(expected.count >= 15)
        #expect(stored.count == expected.count)
        // Same calls (the daemon releases calls as they finish, not in start order).
        #expect(Set(stored.map(CallJSON.line)) == Set(expected.map(CallJSON.line)))
        #expect(Set(lines.lines) == Set(expected.map(CallJSON.line)))
        #expect(stored.allSatisfy { $0.target == "file-0" && $0.sessionId == "s-daemon" })
        #expect(daemon.writer.written == expected.count)
        #expect(try store.statsTotals()["packets"] ?? 0 > 0)
    }

    /// Two targets at once, and a graceful shutdown asked for while they run: whatever the captures had
    /// finished is stored, nothing is lost between the stages, and the group returns.
    @Test func gracefulShutdownLosesNoFinishedCall() async throws {
        let store = try CallStore.inMemory()
        let daemon = Daemon(configuration: Self.configuration([Self.sample, Self.generated]), store: store, sinks: [],
                            logger: Logger(label: "test"))
        let group = daemon.group, first = daemon.captures[0]
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // Once one input has finished calls in flight, ask the group to stop (the other may still run).
            await first.waitUntilEnded()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let emitted = daemon.captures.map { $0.statistics().calls }.reduce(0, +)
        #expect(emitted >= 15) // the first capture's calls at least: the check below has something to lose
        let stored = try store.callCount()
        #expect(stored == emitted)
        #expect(daemon.writer.written == emitted)
        #expect(daemon.callWriter?.notStored == 0 && daemon.callWriter?.held == 0)
    }

    /// A database that refuses writes holds the calls (bounded) instead of losing them, and stores them
    /// when it recovers.
    @Test func callWriterHoldsCallsWhileTheDatabaseRefuses() throws {
        let store = try CallStore.inMemory()
        let writer = CallWriter(store: store, maxHeld: 3)
        var failures = 0, recovered = 0
        writer.onFailure = { _ in failures += 1 }
        writer.onRecovery = { recovered = $0 }
        try store.writer.write { db in try db.execute(sql: "ALTER TABLE calls RENAME TO calls_away") }
        let calls = (0..<5).map { CallRecord(kind: .connect, ts: Int64($0) * 1_000_000_000) }
        writer.write(Array(calls[0..<2]))
        writer.write(Array(calls[2..<5]))
        #expect(failures == 1)
        #expect(writer.held == 3 && writer.notStored == 2)
        #expect(throws: CallWriter.NotStored.self) { try writer.flush() }
        try store.writer.write { db in try db.execute(sql: "ALTER TABLE calls_away RENAME TO calls") }
        try writer.flush()
        #expect(recovered == 3 && writer.held == 0 && writer.stored == 3)
        #expect(try store.calls(CallStore.Filter()).map(\.ts) == calls[2..<5].map(\.ts))
    }
}
