import Core
import ArgumentParser
import Foundation
import Storage

/// What calltap writes for others to read (the database and its WAL files, the ClawMetry JSON Lines) is
/// 0640 and, when a `calltap` group exists, in that group: the dashboard and ClawMetry read it without
/// root. Raw captures (-w) and key logs stay 0600: they hold secrets.
enum SharedFiles {
    static let group = "calltap"

    /// New files start 0640 and directories 0750 (umask 027), whoever runs calltap.
    static func restrictDefaults() { umask(0o027) }

    static var groupID: gid_t? { getgrnam(group)?.pointee.gr_gid }

    /// Sets 0640 and the `calltap` group on those of `paths` that are regular files, on the descriptor
    /// (never through a link).
    static func share(_ paths: [String]) {
        let gid = groupID
        for path in paths { SafeFiles.share(path: path, mode: 0o640, group: gid) }
    }

    /// The database file and the WAL and shared-memory files SQLite keeps beside it.
    static func shareDatabase(_ path: String) {
        share([path, path + "-wal", path + "-shm"])
    }
}

extension CallStore {
    /// Opens (creating and migrating) the database for a command, shares it with the `calltap` group, and
    /// turns a failure into one line naming the reason and the database exit status.
    static func openForCommand(_ path: String) throws -> CallStore {
        // SQLite creates the database and its -wal, -shm and -journal files by path: the directory must be
        // one no one else can plant links in, and none of them may be a link.
        do {
            try SafeFiles.checkDirectory(SafeFiles.directory(of: path))
            for p in [path, path + "-wal", path + "-shm", path + "-journal"] { try SafeFiles.checkNotLink(p) }
        } catch {
            Log.error("cannot open database \(path): \(error)")
            throw ExitCode(ExitStatus.database)
        }
        do {
            let store = try CallStore(path: path)
            SharedFiles.shareDatabase(path)
            return store
        } catch {
            Log.error("cannot open database \(path): \(fileProblem(path: path) ?? "\(error)")")
            throw ExitCode(ExitStatus.database)
        }
    }
}
