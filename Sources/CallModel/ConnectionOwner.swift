/// How the process behind a connection was found (`owner_source`).
public enum OwnerSource: String, Sendable, Codable, CaseIterable {
    /// Recorded by the kernel in the connecting process's context (the BPF program).
    case connect
    /// The namespace's socket table, while the socket was open.
    case socketTable = "socket_table"
    /// Inferred from the processes alive when the connection started (process connector and /proc scans).
    case processEvents = "process_events"
}

/// The process and session behind a connection, as the attribution stage found them.
public struct ConnectionOwner: Sendable {
    public var pid: Int?
    public var process: String?
    public var exe: String?
    public var cgroup: String?
    public var sessionId: String?
    public var attribution: String
    public var agent: String?
    public var source: OwnerSource?

    public init(pid: Int?, process: String?, exe: String?, cgroup: String?, sessionId: String?, attribution: String, agent: String?,
                source: OwnerSource? = nil) {
        self.pid = pid
        self.process = process
        self.exe = exe
        self.cgroup = cgroup
        self.sessionId = sessionId
        self.attribution = attribution
        self.agent = agent
        self.source = source
    }
}
