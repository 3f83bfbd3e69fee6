import Core
import CallModel
import Hummingbird
import Storage

/// The JSON API over the store. Every bad parameter is a 400 with {"error": "..."}; a store failure
/// is a 503, never a crash.
struct CallsAPI: Sendable {
    let store: CallStore

    static let outcomes = Set(Outcome.allCases.map(\.rawValue) + ["failed"])
    static let knownCallParameters: Set<String> = ["session", "session_id", "host", "since", "until", "outcome",
                                                   "method", "limit", "before"]

    static let knownSummaryParameters: Set<String> = ["session", "session_id", "since", "until"]

    static let knownTimelineParameters: Set<String> = ["session", "session_id", "host", "since", "until", "buckets"]

    struct BadRequest: Error { var message: String }

    /// A 400 for a route that takes no parameters when it was given some, nil otherwise: a typo such as
    /// `/api/stats?session=x` must not look like a filtered answer.
    static func refuseParameters(_ q: QueryParameters) -> Response? {
        do {
            try checkKnown(q, [])
            return nil
        } catch let e as BadRequest {
            return JSONResponse.error(.badRequest, e.message)
        } catch {
            return JSONResponse.error(.badRequest, "\(error)")
        }
    }

    static func checkKnown(_ q: QueryParameters, _ known: Set<String>) throws {
        for (name, _) in q.pairs where !known.contains(name) {
            throw BadRequest(message: known.isEmpty ? "this route takes no parameters ('\(name)' given)"
                                                    : "unknown parameter '\(name)'")
        }
    }

    func calls(_ q: QueryParameters) -> Response {
        do {
            let f = try Self.pageFilter(q)
            let page = try store.page(f)
            var out = "{\"session\":" + (f.session.map(JSONObjectWriter.quoted) ?? "null") + ",\"calls\":["
            for (i, c) in page.calls.enumerated() {
                if i > 0 { out += "," }
                out += CallJSON.line(c)
            }
            out += "],\"count\":\(page.calls.count),\"next_cursor\":" + (page.next.map { JSONObjectWriter.quoted($0.text) } ?? "null") + "}"
            return JSONResponse.ok(out)
        } catch let e as BadRequest {
            return JSONResponse.error(.badRequest, e.message)
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }

    func summary(_ q: QueryParameters) -> Response {
        do {
            try Self.checkKnown(q, Self.knownSummaryParameters)
            let session = try Self.session(q)
            let since = try Self.time(q, "since"), until = try Self.time(q, "until")
            let hosts = try store.hostSummaries(session: session, since: since, until: until)
            var out = "{\"session\":" + (session.map(JSONObjectWriter.quoted) ?? "null") + ",\"hosts\":["
            for (i, h) in hosts.enumerated() {
                if i > 0 { out += "," }
                var w = JSONObjectWriter()
                w.string("host", h.host)
                w.int("calls", h.calls)
                w.int("failures", h.failures)
                w.int("dns_calls", h.dnsCalls)
                w.double("failure_rate", h.calls > 0 ? (Double(h.failures) / Double(h.calls) * 10_000).rounded() / 10_000 : 0)
                w.millis("p50_ms", h.p50Micros)
                w.millis("p95_ms", h.p95Micros)
                w.millis("max_ms", h.maxMicros)
                w.int("bytes", h.bytes)
                if let f = h.lastFailure {
                    var lf = JSONObjectWriter()
                    lf.string("ts", Timestamps.iso8601(f.ts))
                    lf.string("kind", f.kind.rawValue)
                    lf.string("outcome", f.outcome.rawValue)
                    lf.string("error", f.error)
                    lf.string("method", f.method)
                    lf.string("path", f.path)
                    lf.int("status_code", f.statusCode)
                    w.raw("last_failure", lf.finish())
                } else {
                    w.raw("last_failure", "null")
                }
                out += w.finish()
            }
            return JSONResponse.ok(out + "]}")
        } catch let e as BadRequest {
            return JSONResponse.error(.badRequest, e.message)
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }

    func timeline(_ q: QueryParameters) -> Response {
        do {
            let f = try Self.timelineFilter(q)
            let t = try store.timeline(f)
            var w = JSONObjectWriter()
            w.string("session", f.session)
            w.string("host", f.host?.lowercased())
            w.string("since", t.start.map { Timestamps.iso8601($0 * 1000) })
            w.string("until", t.end.map { Timestamps.iso8601($0 * 1000) })
            w.millis("bucket_ms", t.bucketMicros)
            w.int("buckets", t.bucketCount)
            w.strings("classes", CallStore.StatusClass.allCases.map(\.name))
            w.int("count", t.count)
            w.raw("totals", Self.classCounts(t.hosts.reduce(into: [0, 0, 0, 0]) { sum, h in
                for i in sum.indices { sum[i] += h.totals[i] }
            }))
            var hosts = "["
            for (i, h) in t.hosts.enumerated() {
                if i > 0 { hosts += "," }
                var hw = JSONObjectWriter()
                hw.string("host", h.host)
                hw.int("count", h.count)
                hw.raw("totals", Self.classCounts(h.totals))
                hw.raw("buckets", "[" + h.buckets.map { b in
                    "[" + ([b.index] + b.counts).map(String.init).joined(separator: ",") + "]"
                }.joined(separator: ",") + "]")
                hosts += hw.finish()
            }
            w.raw("hosts", hosts + "]")
            return JSONResponse.ok(w.finish())
        } catch let e as BadRequest {
            return JSONResponse.error(.badRequest, e.message)
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }

    /// {"ok": n, "4xx": n, "5xx": n, "network": n}
    static func classCounts(_ counts: [Int]) -> String {
        var w = JSONObjectWriter()
        for c in CallStore.StatusClass.allCases { w.int(c.name, counts[c.rawValue]) }
        return w.finish()
    }

    func sessions() -> Response {
        do {
            var out = "{\"sessions\":["
            for (i, s) in try store.sessions().enumerated() {
                if i > 0 { out += "," }
                var w = JSONObjectWriter()
                w.string("session_id", s.sessionId)
                w.int("calls", s.calls)
                w.int("failures", s.failures)
                w.string("first_ts", Timestamps.iso8601(s.firstTs))
                w.string("last_ts", Timestamps.iso8601(s.lastTs))
                out += w.finish()
            }
            return JSONResponse.ok(out + "]}")
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }

    func stats() -> Response {
        do {
            let totals = try store.statsTotals()
            var w = JSONObjectWriter()
            for (name, _) in CaptureStats().fields { w.int(name, totals[name] ?? 0) }
            w.int("stored_calls", try store.callCount())
            return JSONResponse.ok(w.finish())
        } catch {
            return JSONResponse.error(.serviceUnavailable, "database unavailable: \(error)")
        }
    }

    // MARK: Parameters

    static func pageFilter(_ q: QueryParameters) throws -> CallStore.PageFilter {
        try checkKnown(q, knownCallParameters)
        var f = CallStore.PageFilter()
        f.session = try session(q)
        f.host = try text(q, "host")
        if let o = try text(q, "outcome") {
            guard outcomes.contains(o) else {
                throw BadRequest(message: "outcome must be one of: \(outcomes.sorted().joined(separator: ", "))")
            }
            f.outcome = o
        }
        if let m = try text(q, "method") {
            guard m.count <= 32, m.allSatisfy({ $0.isLetter || $0 == "-" || $0 == "_" }) else {
                throw BadRequest(message: "method must be an HTTP method name")
            }
            f.method = m
        }
        f.since = try time(q, "since")
        f.until = try time(q, "until")
        if let l = try text(q, "limit") {
            guard let n = Int(l), (1...1000).contains(n) else { throw BadRequest(message: "limit must be an integer from 1 to 1000") }
            f.limit = n
        }
        if let b = try text(q, "before") {
            guard let c = CallStore.Cursor(text: b) else { throw BadRequest(message: "before must be a next_cursor value") }
            f.before = c
        }
        return f
    }

    static func timelineFilter(_ q: QueryParameters) throws -> CallStore.TimelineFilter {
        try checkKnown(q, knownTimelineParameters)
        var f = CallStore.TimelineFilter()
        f.session = try session(q)
        f.host = try text(q, "host")
        f.since = try time(q, "since")
        f.until = try time(q, "until")
        if let b = try text(q, "buckets") {
            guard let n = Int(b), (1...1000).contains(n) else { throw BadRequest(message: "buckets must be an integer from 1 to 1000") }
            f.buckets = n
        }
        return f
    }

    static func session(_ q: QueryParameters) throws -> String? {
        guard let s = try text(q, "session") ?? text(q, "session_id") else { return nil }
        guard SessionID.isValid(s) else {
            throw BadRequest(message: "session must be 1 to \(SessionID.maxBytes) bytes of A-Z a-z 0-9 . _ : @ / + = -")
        }
        return s
    }

    static func text(_ q: QueryParameters, _ name: String) throws -> String? {
        let values = q.pairs.filter { $0.0 == name }.map(\.1)
        guard let v = values.first else { return nil }
        guard values.count == 1 else { throw BadRequest(message: "\(name) given more than once") }
        guard !v.isEmpty else { throw BadRequest(message: "\(name) is empty") }
        guard v.count <= 512 else { throw BadRequest(message: "\(name) is too long") }
        return String(v)
    }

    static func time(_ q: QueryParameters, _ name: String) throws -> Int64? {
        guard let t = try text(q, name) else { return nil }
        guard let v = Timestamps.parse(t) else { throw BadRequest(message: "\(name) must be ISO-8601 or epoch seconds") }
        return v
    }
}

/// Query parameters as name/value pairs, values percent-decoded.
struct QueryParameters: Sendable {
    var pairs: [(String, String)]
}
