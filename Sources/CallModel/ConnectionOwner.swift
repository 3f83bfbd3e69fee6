/// The process and session behind a connection, as the attribution stage found them.
public struct ConnectionOwner: Sendable {
    public var pid: Int?
    public var process: String?
    public var exe: String?
    public var cgroup: String?
    public var sessionId: String?
    public var attribution: String
    public var agent: String?

    public init(pid: Int?, process: String?, exe: String?, cgroup: String?, sessionId: String?, attribution: String, agent: String?) {
        self.pid = pid
        self.process = process
        self.exe = exe
        self.cgroup = cgroup
        self.sessionId = sessionId
        self.attribution = attribution
        self.agent = agent
    }
}
