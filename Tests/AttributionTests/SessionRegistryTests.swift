@testable import Attribution
import Core
import Foundation
import Testing

@Suite struct SessionRegistryTests {
    func tempFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("calltap-registry-\(UUID().uuidString).jsonl").path
    }

    func append(_ path: String, _ text: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(text.utf8))
        try h.close()
    }

    @Test func followsGrowthPartialLinesTruncationAndRename() throws {
        let path = tempFile()
        let r = SessionRegistry(path: path)
        r.poll() // missing file: nothing, no error
        try append(path, #"{"pid": 10, "session_id": "a", "started_at": 1700000000}"# + "\n" + #"{"pid": 11, "sess"#)
        r.poll()
        #expect(r.entry(pid: 10, startTime: nil, at: 1_700_000_100_000_000_000)?.sessionId == "a")
        #expect(r.entry(pid: 11, startTime: nil, at: 0) == nil) // half a line waits for the rest
        try append(path, #"ion_id": "b", "started_at": "2023-11-14T22:13:20Z"}"# + "\n")
        r.poll()
        #expect(r.entry(pid: 11, startTime: nil, at: 1_700_000_100_000_000_000)?.sessionId == "b")
        // Truncated and rewritten: the old entries go.
        try Data((#"{"pid": 12, "session_id": "c"}"# + "\n").utf8).write(to: URL(fileURLWithPath: path))
        r.poll()
        #expect(r.entry(pid: 10, startTime: nil, at: 1_700_000_100_000_000_000) == nil)
        #expect(r.entry(pid: 12, startTime: nil, at: 0)?.sessionId == "c")
        // Replaced by rename.
        let other = tempFile()
        try Data((#"{"pid": 13, "session_id": "d"}"# + "\n").utf8).write(to: URL(fileURLWithPath: other))
        _ = rename(other, path)
        r.poll()
        #expect(r.entry(pid: 13, startTime: nil, at: 0)?.sessionId == "d")
        #expect(r.entry(pid: 12, startTime: nil, at: 0) == nil)
    }

    /// Found by fuzzing (FuzzTesting/FailCases/registry): times that do not fit Int64 nanoseconds trapped.
    @Test(arguments: [
        #"{"pid":4242,"session_id":"s-1","started_at":"1013-11-25T10:00:00Z"}"#,
        #"{"pid":4242,"session_id":"s-1","started_at":1e300}"#,
        #"{"pid":4242,"session_id":"s-1","started_at":1764064800,"ended_at":-1e19}"#,
    ])
    func timesOutOfRangeMakeAMalformedLine(line: String) {
        #expect(SessionRegistry.parse(Substring(line)) == nil)
    }

    @Test func garbageIsCountedAndReportedOnce() throws {
        let path = tempFile()
        try append(path, "nonsense\n{\"pid\": \"x\", \"session_id\": \"s\"}\n{\"pid\": 5}\n{\"pid\": 7, \"session_id\": \"ok\"}\n[]\n")
        let r = SessionRegistry(path: path)
        final class Reports: @unchecked Sendable { var lines: [String] = [] }
        let reports = Reports()
        r.onFirstProblem = { reports.lines.append($0) }
        r.poll()
        #expect(r.malformedLines == 4)
        #expect(reports.lines.count == 1)
        #expect(r.entry(pid: 7, startTime: nil, at: 0)?.sessionId == "ok")
    }

    @Test func timeWindowsStartTimesAndEndedAtUpdates() throws {
        let path = tempFile()
        let s: Int64 = 1_000_000_000
        try append(path, """
            {"pid": 20, "session_id": "old", "started_at": 100, "pid_start_time": 555}
            {"pid": 20, "session_id": "old", "ended_at": 200, "pid_start_time": 555}
            {"pid": 20, "session_id": "new", "started_at": 300, "pid_start_time": 777}

            """)
        let r = SessionRegistry(path: path)
        r.poll()
        #expect(r.entry(pid: 20, startTime: 555, at: 150 * s)?.sessionId == "old")
        #expect(r.entry(pid: 20, startTime: 555, at: 250 * s) == nil) // ended
        #expect(r.entry(pid: 20, startTime: 777, at: 350 * s)?.sessionId == "new")
        #expect(r.entry(pid: 20, startTime: 999, at: 350 * s) == nil) // a reused PID with another start time
    }
}

@Suite struct PIDNamespaceTests {
    /// A line may number its PID in another PID namespace (`pid_ns`, the inode of /proc/PID/ns/pid):
    /// it is translated through NSpid. Here: this process, in its own namespace.
    @Test func namespacedPIDsAreTranslated() throws {
        let link = ProcessTracker.link("/proc/self/ns/pid") ?? ""
        let inode = try #require(UInt64(link.dropFirst(5).dropLast()))
        let status = try #require(ProcFile.read("/proc/self/status"))
        let nspid = try #require(status.split(separator: "\n").first { $0.hasPrefix("NSpid:") })
        let inner = try #require(Int(nspid.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? ""))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-ns-\(UUID().uuidString).jsonl").path
        try Data(("{\"pid\": \(inner), \"pid_ns\": \(inode), \"session_id\": \"in-container\"}\n"
                  + "{\"pid\": 999999, \"pid_ns\": \(inode), \"session_id\": \"gone\"}\n").utf8).write(to: URL(fileURLWithPath: path))
        let r = SessionRegistry(path: path)
        r.poll()
        #expect(r.entry(pid: Int(getpid()), startTime: nil, at: 0)?.sessionId == "in-container")
        #expect(r.untranslatedPIDs == 1)
    }
}

@Suite struct OneProcessManySessionsTests {
    /// A gateway process serving several sessions: the entry whose window holds the call wins;
    /// overlapping windows make the call ambiguous; children inherit.
    @Test func windowsDecideOverlapsAreAmbiguous() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-gw-\(UUID().uuidString).jsonl").path
        try Data("""
            {"pid": 500, "session_id": "morning", "started_at": 1000, "ended_at": 2000}
            {"pid": 500, "session_id": "noon", "started_at": 3000, "ended_at": 4000}
            {"pid": 500, "session_id": "overlap", "started_at": 3500, "ended_at": 4500}

            """.utf8).write(to: URL(fileURLWithPath: path))
        let r = SessionRegistry(path: path)
        r.poll()
        let gateway = ProcessFacts(pid: 500, ppid: 1, comm: "gateway", exe: nil, cgroup: nil, startTime: 1)
        let child = ProcessFacts(pid: 501, ppid: 500, comm: "curl", exe: nil, cgroup: nil, startTime: 2)
        let parent: (Int) -> ProcessFacts? = { $0 == 500 ? gateway : nil }
        let s: Int64 = 1_000_000_000
        #expect(r.resolve(gateway, at: 1500 * s, parent: parent).sessionId == "morning")
        #expect(r.resolve(gateway, at: 3200 * s, parent: parent).sessionId == "noon")
        let both = r.resolve(gateway, at: 3700 * s, parent: parent)
        #expect(both.sessionId == nil && both.attribution == "ambiguous")
        let inherited = r.resolve(child, at: 1500 * s, parent: parent)
        #expect(inherited.sessionId == "morning" && inherited.attribution == "inherited")
        #expect(r.resolve(gateway, at: 2500 * s, parent: parent).attribution == "none")
    }
}

@Suite struct SocketTableTests {
    @Test func parsesKernelAddressFormat() {
        let v4 = SocketTable.endpoint("0209D50A:0050")
        #expect(v4?.0 == IPAddress(v4: 0x0AD5_0902) && v4?.1 == 80)
        let v6 = SocketTable.endpoint("B80D0120000000000000000001000000:01BB")
        #expect(v6?.0.description == "2001:db8::1" && v6?.1 == 443)
        #expect(SocketTable.endpoint("zz:1") == nil)
    }

    @Test func readsThisNamespacesSockets() throws {
        // A listening socket of our own shows up with its inode, and /proc/self/fd holds that inode.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 1)
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: bound.sin_port)
        let table = SocketTable.read()
        let mine = table.first { $0.key.localPort == port }
        #expect(mine != nil)
        if let inode = mine?.value.inode {
            #expect(ProcessTable.socketInodes(Int(getpid())).contains(inode))
        }
        #expect(ProcessTable.facts(Int(getpid()))?.pid == Int(getpid()))
    }

    @Test func cgroupPaths() {
        #expect(CgroupTargets.relativePath("/sys/fs/cgroup/agents/a1/", mount: "/sys/fs/cgroup") == "/agents/a1")
        #expect(CgroupTargets.relativePath("agents", mount: "/sys/fs/cgroup") == "/agents")
        #expect(CgroupTargets.contains("/agents", member: "/agents/a1"))
        #expect(!CgroupTargets.contains("/agents", member: "/agents-other"))
        #expect(!CgroupTargets.contains("/agents", member: nil))
    }

    /// A registry that grows without end stays within its cap: ended sessions are forgotten first.
    @Test func entriesAreBounded() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-registry-\(UUID().uuidString).jsonl").path
        var lines = ""
        for pid in 1...100 { lines += #"{"pid": \#(pid), "session_id": "s\#(pid)", "started_at": 1700000000, "ended_at": 1700000001}"# + "\n" }
        for pid in 101...120 { lines += #"{"pid": \#(pid), "session_id": "live\#(pid)", "started_at": 1700000000}"# + "\n" }
        _ = FileManager.default.createFile(atPath: path, contents: Data(lines.utf8))
        let r = SessionRegistry(path: path, maxEntries: 64)
        r.poll()
        #expect(r.registeredPIDs.count <= 64)
        #expect(r.forgottenEntries > 0)
        // The sessions still running are kept.
        let live = r.entry(pid: 120, startTime: nil, at: 1_700_000_100_000_000_000)
        #expect(live?.sessionId == "live120")
    }

    /// A registry every user can write is said once: anyone could claim any PID through it.
    @Test func aRegistryOthersCanWriteIsReportedOnce() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-registry-\(UUID().uuidString).jsonl").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(#"{"pid": 1, "session_id": "s"}"#.utf8 + [0x0A]))
        chmod(path, 0o666)
        let r = SessionRegistry(path: path)
        let said = SaidLines()
        r.onFirstProblem = { said.add($0) }
        r.poll()
        r.poll()
        #expect(said.lines.count == 1 && said.lines.first?.contains("writable by every user") == true)
    }
}

final class SaidLines: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    func add(_ s: String) { lock.withLock { _lines.append(s) } }
    var lines: [String] { lock.withLock { _lines } }
}
