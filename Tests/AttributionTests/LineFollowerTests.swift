import Attribution
import Foundation
import Testing

/// The follower of files others write (registry, key logs): complete lines only, a fresh start after
/// truncation or replacement, and bounded reads whatever the file is.
@Suite struct LineFollowerTests {
    static func tempPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-follow-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    static func append(_ path: String, _ text: String) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(text.utf8))
        try h.close()
    }

    @Test func completeLinesThenRestartAfterTruncationAndReplacement() throws {
        let path = Self.tempPath("registry.jsonl")
        _ = FileManager.default.createFile(atPath: path, contents: Data("a\nb".utf8))
        let f = LineFollower(path: path)
        #expect(f.readNew()?.text == "a\n")
        try Self.append(path, "c\nd\n")
        let u = try #require(f.readNew())
        #expect(u.text == "bc\nd\n" && !u.restarted)
        #expect(f.readNew() == nil)
        // Truncated: starts over.
        _ = FileManager.default.createFile(atPath: path, contents: Data("e\n".utf8))
        let t = try #require(f.readNew())
        #expect(t.text == "e\n" && t.restarted)
        // Replaced by rename (a new inode) with more than before: starts over too.
        let other = path + ".new"
        _ = FileManager.default.createFile(atPath: other, contents: Data("f\ng\nh\n".utf8))
        _ = rename(other, path)
        let r = try #require(f.readNew())
        #expect(r.text == "f\ng\nh\n" && r.restarted)
    }

    @Test func readsAreBounded() throws {
        let path = Self.tempPath("keys.log")
        // A line longer than the cap is skipped (counted), the next one is kept.
        _ = FileManager.default.createFile(atPath: path, contents: Data((String(repeating: "x", count: 300) + "\nok\n").utf8))
        let f = LineFollower(path: path, maxBytesPerRead: 100, maxLineBytes: 64)
        var text = ""
        for _ in 0..<10 { text += f.readNew()?.text ?? "" }
        #expect(text == "ok\n")
        #expect(f.overlongLines == 1)
        // A long line that ends inside one read is skipped too; a line of exactly the cap is kept.
        let path2 = Self.tempPath("whole.log")
        _ = FileManager.default.createFile(atPath: path2, contents: Data((String(repeating: "y", count: 80) + "\n" + String(repeating: "z", count: 64) + "\nok\n").utf8))
        let g = LineFollower(path: path2, maxBytesPerRead: 1000, maxLineBytes: 64)
        #expect(g.readNew()?.text == String(repeating: "z", count: 64) + "\nok\n")
        #expect(g.overlongLines == 1 && g.bytesRead == 149)
    }

    @Test func symlinksAndFIFOsAreNotFollowed() throws {
        let target = Self.tempPath("secret")
        _ = FileManager.default.createFile(atPath: target, contents: Data("secret\n".utf8))
        let link = Self.tempPath("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        #expect(LineFollower(path: link).readNew() == nil)
        let fifo = Self.tempPath("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(LineFollower(path: fifo).readNew() == nil) // returns at once instead of blocking
    }

    /// A registry replaced by a 64 GB sparse file with no newline, or 1.5 GB appended without one: every read
    /// takes at most its bound, the half line is dropped once it passes the line cap, and nothing grows.
    @Test func sparseAndNewlineLessFilesStayBounded() throws {
        let path = Self.tempPath("registry.jsonl")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, 64 << 30) == 0) // 64 GiB of holes: no newline anywhere
        close(fd)
        let f = LineFollower(path: path)
        var delivered = 0
        for _ in 0..<50 { delivered += f.readNew()?.text.utf8.count ?? 0 }
        #expect(delivered == 0)
        #expect(f.overlongLines == 1) // one endless line, skipped once, never held
        // The same bound on a file that keeps growing without a newline (1.5 GB appended in the report).
        let grown = Self.tempPath("keys.log")
        _ = FileManager.default.createFile(atPath: grown, contents: Data(repeating: 0x41, count: 32 << 20))
        let k = LineFollower(path: grown)
        for _ in 0..<16 { #expect(k.readNew()?.text.isEmpty ?? true) }
        #expect(k.overlongLines == 1)
    }
}
