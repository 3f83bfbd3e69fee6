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

/// The one place that decides a call's session. Rules, first match wins (`attribution_key` names which):
/// 1. a session the request named itself: `baggage: session.id=…`, `x-session-id`, the Codex transport's
///    `session_id` header, an OpenAI-style body's `prompt_cache_key`: `exact` (decided in the pipeline);
/// 2. the owning process's registry entry (`registry`), or its nearest registered ancestor's
///    (`ancestor`), whose time window holds the call (`exact` / `inherited`, found by attribution);
/// 3. the session named for the whole input (`read --session`: `cli`);
/// 4. no session.
/// Without rule 1 or 2, `attribution` says what the registry found: `ambiguous` when it named several
/// sessions for the owner at that time, `none` when an owner was looked for and no session found, null
/// when nothing was looked up (`read`).
public enum SessionResolver {
    public struct Decision: Equatable, Sendable {
        public var sessionId: String?
        public var attribution: Attribution?
        public var key: AttributionKey?
        public init(sessionId: String?, attribution: Attribution?, key: AttributionKey? = nil) {
            self.sessionId = sessionId
            self.attribution = attribution
            self.key = key
        }
    }

    /// `requestSession`: what the request named (already checked against the session-id policy);
    /// `owner`: the owning process and its registry answer; `lookedUp`: an owner was looked for.
    public static func decide(requestSession: String?, requestKey: AttributionKey? = nil, owner: ConnectionOwner?,
                              inputSession: String?, lookedUp: Bool) -> Decision {
        if let s = requestSession { return Decision(sessionId: s, attribution: .exact, key: requestKey) }
        let registry = owner.flatMap { Attribution(rawValue: $0.attribution) }
        if let o = owner, let s = o.sessionId, registry == .exact || registry == .inherited {
            return Decision(sessionId: s, attribution: registry, key: registry == .exact ? .registry : .ancestor)
        }
        // What the registry said (`none` when an owner was looked for and nothing came of it).
        let found: Attribution? = registry == .ambiguous ? .ambiguous : (owner != nil || lookedUp ? Attribution.none : nil)
        return Decision(sessionId: inputSession, attribution: found, key: inputSession != nil ? .cli : nil)
    }
}

extension CallRecord {
    /// Fills in who made the call: the process facts (pid, process, exe, cgroup, agent, owner_source)
    /// from the owner whenever there is one, the session by `SessionResolver`'s rules.
    public mutating func attribute(owner: ConnectionOwner?, inputSession: String?, lookedUp: Bool) {
        let requestSession = attribution == .exact && attributionKey != .registry ? sessionId : nil
        if let o = owner {
            pid = o.pid
            process = o.process
            exe = o.exe
            cgroup = o.cgroup
            agent = o.agent
            ownerSource = o.source
        }
        let d = SessionResolver.decide(requestSession: requestSession, requestKey: attributionKey, owner: owner,
                                       inputSession: inputSession, lookedUp: lookedUp)
        sessionId = d.sessionId
        attribution = d.attribution
        attributionKey = d.key
    }
}
