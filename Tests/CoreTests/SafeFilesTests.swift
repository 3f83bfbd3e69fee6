import Core
import Foundation
import Testing

/// Files a root daemon writes: no symbolic link is followed, new files are exclusive, shared directories
/// are refused, and one policy decides what a session id may be.
@Suite struct SafeFilesTests {
    static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calltap-safe-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }

    @Test func appendNeverFollowsALinkAndLeavesTheTargetAlone() throws {
        let dir = try Self.tempDir()
        let target = dir + "/shadow-copy", link = dir + "/calls.jsonl"
        _ = FileManager.default.createFile(atPath: target, contents: Data("secret\n".utf8), attributes: [.posixPermissions: 0o600])
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.openAppend(link, mode: 0o640) }
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.checkNotLink(link) }
        SafeFiles.share(path: link, mode: 0o644, group: nil) // through a link: nothing happens
        let attributes = try FileManager.default.attributesOfItem(atPath: target)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "secret\n")
    }

    @Test func aHardLinkToAnotherFileIsRefused() throws {
        let dir = try Self.tempDir()
        _ = FileManager.default.createFile(atPath: dir + "/other", contents: Data("x".utf8))
        #expect(link(dir + "/other", dir + "/calls.jsonl") == 0)
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.openAppend(dir + "/calls.jsonl", mode: 0o640) }
    }

    @Test func newFilesAreExclusiveAndAppendsWork() throws {
        let dir = try Self.tempDir()
        let path = dir + "/new.keys"
        let fd = try SafeFiles.openAppend(path, mode: 0o600)
        #expect(write(fd, "a\n", 2) == 2)
        close(fd)
        let again = try SafeFiles.openAppend(path, mode: 0o600)
        #expect(write(again, "b\n", 2) == 2)
        close(again)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a\nb\n")
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.createNew(path, mode: 0o600) }
    }

    @Test func directoriesOthersCanWriteAreRefusedUnlessStickyAndRoots() throws {
        let dir = try Self.tempDir()
        chmod(dir, 0o777)
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.checkDirectory(dir) }
        chmod(dir, 0o1777)
        if geteuid() == 0 { try SafeFiles.checkDirectory(dir) } // sticky and root's, like /tmp
        chmod(dir, 0o755)
        try SafeFiles.checkDirectory(dir)
        let link = dir + "-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dir)
        #expect(throws: SafeFiles.Refused.self) { try SafeFiles.checkDirectory(link) }
    }

    @Test func sessionIDPolicy() {
        #expect(SessionID.isValid("agent:main/session-7f3a_2024.11@host+x=y"))
        #expect(!SessionID.isValid(""))
        #expect(!SessionID.isValid(String(repeating: "a", count: 257)))
        #expect(SessionID.isValid(String(repeating: "a", count: 256)))
        for bad in ["a b", "a\u{1B}[2J", "é", "a\nb", "a\u{202E}b", "a;b", "../x"] where bad != "../x" {
            #expect(!SessionID.isValid(bad), "\(bad)")
        }
        #expect(SessionID.isValid("../x") && !SessionID.isFileNameSafe("../x"))
        #expect(!SessionID.isFileNameSafe(".hidden") && SessionID.isFileNameSafe("s-1"))
    }
}
