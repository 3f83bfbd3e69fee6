@testable import Attribution
import Core
import Foundation
import Testing

/// Who may register what through the verified socket: the caller itself, or its descendant running as
/// the same user — never another user's process, PID 1, or a process outside its family.
@Suite struct RegistrationSocketTests {
    /// A made-up process tree: 1 (root) → 100 (uid 1000, the caller) → 200 (uid 1000) → 300 (uid 1000);
    /// 100 → 250 (uid 0, a setuid child); 1 → 400 (uid 1000, a stranger of the same user).
    static let tree: [Int: RegistrationSocket.Facts] = [
        1: .init(ppid: 0, uid: 0, startTime: 1),
        100: .init(ppid: 1, uid: 1000, startTime: 10),
        200: .init(ppid: 100, uid: 1000, startTime: 20),
        300: .init(ppid: 200, uid: 1000, startTime: 30),
        250: .init(ppid: 100, uid: 0, startTime: 25),
        400: .init(ppid: 1, uid: 1000, startTime: 40),
    ]

    static func ask(_ json: String, peer: Int = 100, uid: Int = 1000) -> Result<RegistryEntry, RegistrationSocket.Failure> {
        RegistrationSocket.request(Array(json.utf8), peerPID: peer, peerUID: uid, now: 1_700_000_000, facts: { tree[$0] })
    }

    struct Row: Sendable, CustomStringConvertible {
        var description: String
        var json: String
        var allowed: Bool
    }

    static let rows: [Row] = [
        Row(description: "itself", json: #"{"pid": 100, "session_id": "s-1"}"#, allowed: true),
        Row(description: "its child", json: #"{"pid": 200, "session_id": "s-1"}"#, allowed: true),
        Row(description: "its grandchild", json: #"{"pid": 300, "session_id": "s-1"}"#, allowed: true),
        Row(description: "PID 1", json: #"{"pid": 1, "session_id": "s-1"}"#, allowed: false),
        Row(description: "a child of another user (setuid)", json: #"{"pid": 250, "session_id": "s-1"}"#, allowed: false),
        Row(description: "a process of the same user outside its family", json: #"{"pid": 400, "session_id": "s-1"}"#, allowed: false),
        Row(description: "no such process", json: #"{"pid": 999, "session_id": "s-1"}"#, allowed: false),
        Row(description: "a session id outside the policy", json: #"{"pid": 100, "session_id": "s 1\u001b[2J"}"#, allowed: false),
        Row(description: "a session id too long", json: "{\"pid\": 100, \"session_id\": \"\(String(repeating: "a", count: 257))\"}", allowed: false),
        Row(description: "not JSON", json: "pid=100", allowed: false),
        Row(description: "no pid", json: #"{"session_id": "s-1"}"#, allowed: false),
    ]

    @Test(arguments: rows) func rule(_ row: Row) {
        let r = Self.ask(row.json)
        if case .success = r { #expect(row.allowed) } else { #expect(!row.allowed) }
    }

    @Test func theEntryCarriesTheStartTimeAndAnEnd() throws {
        let start = try Self.ask(#"{"pid": 200, "session_id": "s-2", "agent": "a"}"#).get()
        #expect(start.pid == 200 && start.sessionId == "s-2" && start.agent == "a")
        #expect(start.pidStartTime == 20 && start.startedAt == 1_700_000_000_000_000_000 && start.endedAt == nil)
        let end = try Self.ask(#"{"pid": 200, "session_id": "s-2", "ended": true}"#).get()
        #expect(end.endedAt == 1_700_000_000_000_000_000 && end.startedAt == nil)
        // Root asking for another user's process is refused as well: the uid must match.
        if case .success = Self.ask(#"{"pid": 200, "session_id": "s-2"}"#, peer: 1, uid: 0) { Issue.record("root claimed uid 1000's process") }
    }

    /// Through a real socket: this process registers itself; the registry then names its session, and
    /// the file starting over does not drop it.
    @Test func aRealSocketRegistersTheCaller() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-reg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let registry = SessionRegistry(path: nil)
        let socket = RegistrationSocket(path: dir + "/register.sock", registry: registry)
        try socket.open()
        let stop = ConnectEventsTests.Running.Box()
        let t = Thread { socket.run(shouldStop: { stop.stopped }) }
        t.start()
        defer { stop.set() }
        let answer = try Self.send(#"{"pid": \#(getpid()), "session_id": "s-real"}"# + "\n", to: dir + "/register.sock")
        #expect(answer == "ok")
        let me = try #require(ProcessTable.facts(Int(getpid())))
        #expect(registry.entry(pid: Int(getpid()), startTime: me.startTime, at: Int64(Date().timeIntervalSince1970 * 1e9))?.sessionId == "s-real")
        let refused = try Self.send(#"{"pid": 1, "session_id": "s-real"}"# + "\n", to: dir + "/register.sock")
        #expect(refused.hasPrefix("refused:"))
        #expect(socket.counters.accepted == 1 && socket.counters.refused == 1)
    }

    static func send(_ text: String, to path: String) throws -> String {
        let s = try UnixSocket.connect(to: path)
        defer { close(s) }
        return UnixSocket.exchange(s, Array(text.utf8))
    }
}
