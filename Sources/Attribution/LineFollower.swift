import Foundation

/// Follows a file that other processes append to — the session registry, TLS key logs — handing out the
/// complete lines appended since the last read, and starting over when the file is truncated or replaced
/// (by rename). The file is someone else's, so every read is bounded: it is opened without following a
/// symlink, only if it is a regular file (a FIFO would block), at most `maxBytesPerRead` per call, and a
/// line longer than `maxLineBytes` is skipped and counted rather than held.
public final class LineFollower: @unchecked Sendable {
    public let path: String
    public let maxBytesPerRead: Int
    public let maxLineBytes: Int
    private var offset: UInt64 = 0
    private var identity: (dev: UInt64, ino: UInt64) = (0, 0)
    private var partial: [UInt8] = []
    private var skippingLine = false
    /// Lines skipped because they were longer than `maxLineBytes`.
    public private(set) var overlongLines = 0
    /// Bytes read so far (every read, lines kept or skipped).
    public private(set) var bytesRead: UInt64 = 0

    public init(path: String, maxBytesPerRead: Int = 4 << 20, maxLineBytes: Int = 64 << 10) {
        self.path = path
        self.maxBytesPerRead = maxBytesPerRead
        self.maxLineBytes = maxLineBytes
    }

    public struct Update {
        /// Complete lines, newline-terminated, as text (invalid UTF-8 replaced).
        public var text: String
        /// The file was truncated or replaced since the last read: earlier lines no longer stand.
        public var restarted: Bool
    }

    /// What was appended since the last call; nil when the file is missing, unreadable or unchanged.
    public func readNew() -> Update? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        var restarted = false
        let id = (UInt64(st.st_dev), UInt64(st.st_ino))
        let size = UInt64(st.st_size)
        if id != identity || size < offset {
            restarted = identity != (0, 0) || offset > 0
            identity = id
            offset = 0
            partial = []
            skippingLine = false
        }
        guard size > offset else { return restarted ? Update(text: "", restarted: true) : nil }
        let want = Int(min(UInt64(maxBytesPerRead), size - offset))
        var chunk = [UInt8](repeating: 0, count: want)
        let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
        guard got > 0 else { return nil }
        offset += UInt64(got)
        bytesRead += UInt64(got)
        var text: [UInt8] = []
        var lineStart = 0
        for i in 0..<got where chunk[i] == 0x0A {
            if skippingLine {
                skippingLine = false
            } else if partial.count + (i + 1 - lineStart) > maxLineBytes + 1 {
                // A whole line inside one read, longer than the cap: skipped like one that spans reads.
                overlongLines += 1
            } else {
                text += partial
                text += chunk[lineStart...i]
            }
            partial = []
            lineStart = i + 1
        }
        if lineStart < got && !skippingLine {
            partial += chunk[lineStart..<got]
            if partial.count > maxLineBytes {
                overlongLines += 1
                partial = []
                skippingLine = true
            }
        }
        return Update(text: String(decoding: text, as: UTF8.self), restarted: restarted)
    }
}
