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

    /// Sets 0640 and the `calltap` group on those of `paths` that exist.
    static func share(_ paths: [String]) {
        let gid = getgrnam(group)?.pointee.gr_gid
        for path in paths where FileManager.default.fileExists(atPath: path) {
            chmod(path, 0o640)
            if let gid { _ = chown(path, uid_t.max, gid) }
        }
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
