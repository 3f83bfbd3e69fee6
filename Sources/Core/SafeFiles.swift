import Foundation

/// Files calltap creates or appends to, as a root daemon may: never through a symbolic link, new files
/// created exclusively, modes and groups set on the descriptor rather than the path, and directories
/// that others could use to swap a file refused with one clear line.
public enum SafeFiles {
    public struct Refused: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    private static func reason() -> String { String(cString: strerror(errno)) }

    /// Linux's O_PATH (Glibc hides it from Swift without _GNU_SOURCE).
    private static let oPath: Int32 = 0o10000000

    /// The directory that holds (or will hold) `path`.
    public static func directory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// A directory calltap may create files in: a real directory (not a symbolic link) that others cannot
    /// write to, unless it is sticky and root's (like /tmp, where names cannot be taken over).
    public static func checkDirectory(_ dir: String) throws {
        var st = stat()
        guard lstat(dir, &st) == 0 else { throw Refused("cannot use directory \(dir): \(reason())") }
        if (st.st_mode & S_IFMT) == S_IFLNK { throw Refused("\(dir) is a symbolic link; give the real directory") }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw Refused("\(dir) is not a directory") }
        let writableByOthers = st.st_mode & S_IWOTH != 0
        let stickyAndRoots = st.st_mode & S_ISVTX != 0 && st.st_uid == 0
        if writableByOthers && !stickyAndRoots {
            throw Refused("\(dir) is writable by every user; use a directory only its owner can write to")
        }
    }

    /// `path` is not a symbolic link, and if it exists it is a regular file.
    public static func checkNotLink(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw Refused("cannot use \(path): \(reason())")
        }
        if (st.st_mode & S_IFMT) == S_IFLNK { throw Refused("\(path) is a symbolic link; calltap does not write through links") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Refused("\(path) is not a regular file") }
    }

    /// Opens `path` for appending, creating it with `mode` when it does not exist, without following a
    /// symbolic link; an existing file must be a regular file with one name (no hard link to another file).
    public static func openAppend(_ path: String, mode: mode_t) throws -> Int32 {
        try checkDirectory(directory(of: path))
        var fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 && errno == EEXIST {
            fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        }
        guard fd >= 0 else {
            throw Refused(errno == ELOOP ? "\(path) is a symbolic link; calltap does not write through links"
                                         : "cannot open \(path): \(reason())")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1 else {
            close(fd)
            throw Refused("\(path) is not a regular file with a single name")
        }
        return fd
    }

    /// Creates `path` anew (nothing may be there, not even a link) with `mode`.
    public static func createNew(_ path: String, mode: mode_t) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Refused("cannot create \(path): \(reason())") }
        return fd
    }

    /// Sets the mode, and the group when given, on an open file: never through its path.
    public static func share(fd: Int32, mode: mode_t, group: gid_t?) {
        fchmod(fd, mode)
        if let group { _ = fchown(fd, uid_t.max, group) }
    }

    /// Sets mode and group on `path` when it is a regular file, never through a link. The file is held by an
    /// `O_PATH` descriptor and changed through /proc/self/fd: a real descriptor's close would drop the
    /// POSIX locks SQLite holds on its database, an `O_PATH` one does not.
    public static func share(path: String, mode: mode_t, group: gid_t?) {
        let fd = open(path, oPath | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
        let handle = "/proc/self/fd/\(fd)"
        chmod(handle, mode)
        if let group { _ = chown(handle, uid_t.max, group) }
    }
}

/// The one policy for session ids wherever one enters (registry, `--session`, request headers, API
/// parameters): 1 to 256 bytes of `A–Z a–z 0–9 . _ : @ / + = -`. Anything else is refused (counted where
/// it comes from the wire), so an id can neither bloat every row nor carry control characters.
public enum SessionID {
    public static let maxBytes = 256

    public static func isValid<S: StringProtocol>(_ id: S) -> Bool {
        let bytes = id.utf8
        guard !bytes.isEmpty, bytes.count <= maxBytes else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2E || b == 0x5F || b == 0x3A || b == 0x40 || b == 0x2F || b == 0x2B || b == 0x3D || b == 0x2D
        }
    }

    /// An id fit to be part of a file name: valid, and without `/` or a leading dot.
    public static func isFileNameSafe(_ id: String) -> Bool {
        isValid(id) && !id.contains("/") && !id.hasPrefix(".")
    }
}

/// Unix stream sockets by path (the registration socket and its clients).
public enum UnixSocket {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A new stream socket (close-on-exec) and the address of `path`.
    static func make(_ path: String) throws -> (Int32, sockaddr_un) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw Failure(description: "\(path) is too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        return (fd, address)
    }

    /// A socket listening at `path` (which must not exist).
    public static func listen(at path: String, backlog: Int32 = 64) throws -> Int32 {
        var (fd, address) = try make(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot listen on \(path): \(e)")
        }
        return fd
    }

    /// A socket connected to `path`; sends, receives and the connect itself wait at most `timeout`
    /// seconds (for a Unix socket the send timeout also bounds connect).
    public static func connect(to path: String, timeout: Int = 2) throws -> Int32 {
        var (fd, address) = try make(path)
        var t = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot connect to \(path): \(e)")
        }
        return fd
    }

    /// Sends one line and returns the one-line answer, trimmed ("" when none came).
    public static func exchange(_ fd: Int32, _ line: [UInt8]) -> String {
        _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var answer = [UInt8](repeating: 0, count: 512)
        let n = answer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: answer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }
}
