/// Where finished calls go: the database, JSON Lines, the ClawMetry file (and, for fleets, OTLP). One
/// writer hands every sink the same calls, in the order they finished, from one task at a time, so a
/// sink needs no locking of its own.
public protocol CallSink: AnyObject {
    /// A short name for messages ("database", "clawmetry file").
    var sinkName: String { get }
    /// Takes calls. A sink that cannot write now keeps them (bounded, counting what it drops) rather
    /// than losing them silently.
    func write(_ calls: [CallRecord]) throws
    /// Pushes out what is buffered; at shutdown, the last chance to.
    func flush() throws
}

extension CallRecord {
    /// Fills in who made the call, by one rule for every input:
    /// 1. a session named for the whole input (`read --session`) wins;
    /// 2. else a session the request named itself (`baggage: session.id=…`, `x-session-id`), which the
    ///    pipeline already put on the record as `exact`;
    /// 3. else the session of the owning process from the registry, with its attribution;
    /// 4. else none.
    /// The process facts (pid, process, exe, cgroup, agent) come from the owner whenever there is one.
    public mutating func attribute(owner: ConnectionOwner?, inputSession: String?, lookedUp: Bool) {
        let namedByRequest = sessionId != nil && attribution == .exact
        if let o = owner {
            pid = o.pid
            process = o.process
            exe = o.exe
            cgroup = o.cgroup
            agent = o.agent
            if !namedByRequest {
                sessionId = o.sessionId
                attribution = Attribution(rawValue: o.attribution)
            }
        } else if lookedUp && !namedByRequest {
            attribution = Attribution.none
        }
        if let inputSession { sessionId = inputSession }
    }
}
