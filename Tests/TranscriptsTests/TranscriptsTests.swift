import CZstd
import CallModel
import Foundation
import GRDBSQLite
import Testing
@testable import Transcripts

/// Writes pi-format transcript lines (the shapes of pi's SessionManager, version 3).
enum PiLines {
    static func header(_ id: String) -> String {
        #"{"type":"session","version":3,"id":"\#(id)","timestamp":"2026-11-29T10:00:00.000Z","cwd":"/srv"}"#
    }
    static func assistant(_ entry: String, tool: String?, model: String = "claude-sonnet-4-5", input: Int = 10, output: Int = 5,
                          at ms: Int64) -> String {
        let content = tool.map { #"[{"type":"toolCall","id":"\#($0)","name":"web_fetch","arguments":{"url":"https://x.test/"}}]"# }
            ?? #"[{"type":"text","text":"done"}]"#
        return #"{"type":"message","id":"\#(entry)","parentId":null,"timestamp":"2026-11-29T10:00:01.000Z","message":{"role":"assistant","content":\#(content),"api":"anthropic-messages","provider":"anthropic","model":"\#(model)","usage":{"input":\#(input),"output":\#(output),"cacheRead":0,"cacheWrite":0,"totalTokens":\#(input + output)},"stopReason":"toolUse","timestamp":\#(ms)}}"#
    }
    static func fetchResult(_ entry: String, tool: String, url: String, finalUrl: String? = nil, fetchedAt: String, tookMs: Int,
                            cached: Bool = false) -> String {
        let cachedText = cached ? #","cached":true"# : ""
        return #"{"type":"message","id":"\#(entry)","parentId":"p","timestamp":"\#(fetchedAt)","message":{"role":"toolResult","toolCallId":"\#(tool)","toolName":"web_fetch","content":[{"type":"text","text":"{}"}],"details":{"url":"\#(url)","finalUrl":"\#(finalUrl ?? url)","status":200,"contentType":"text/html","extractMode":"markdown","extractor":"readability","truncated":false,"length":10,"fetchedAt":"\#(fetchedAt)","tookMs":\#(tookMs),"text":"hello"\#(cachedText)},"isError":false,"timestamp":1}}"#
    }
}

final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "calltap-transcripts-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func write(_ rel: String, _ text: String) {
        let p = path + "/" + rel
        try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
    }
    func append(_ rel: String, _ text: String) {
        let h = FileHandle(forWritingAtPath: path + "/" + rel)!
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
        try? h.close()
    }
}

let sessionA = "5f0c1a2e-1111-4a4a-9c9c-000000000001"
let sessionB = "5f0c1a2e-2222-4b4b-9d9d-000000000002"
let t0 = TranscriptIndex.parseISO8601("2026-11-29T10:00:00.000Z")!

@Suite struct TranscriptIndexTests {
    @Test func iso8601() {
        #expect(TranscriptIndex.parseISO8601("1970-01-01T00:00:00Z") == 0)
        #expect(TranscriptIndex.parseISO8601("2026-11-29T10:00:00.123Z") == t0 + 123_000_000)
        #expect(TranscriptIndex.parseISO8601("2026-11-29T11:00:00.000+01:00") == t0)
        #expect(TranscriptIndex.parseISO8601("2000-02-29T00:00:00Z") == 951_782_400_000_000_000)
        for bad in ["", "2026-11-29", "2026-13-01T00:00:00Z", "2026-11-29T10:00:00", "2026-11-29T10:00:00.Z", "x026-11-29T10:00:00Z",
                    "2026-11-29T10:00:00Zjunk", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"] {
            #expect(TranscriptIndex.parseISO8601(bad) == nil, "\(bad)")
        }
    }

    @Test func urls() {
        #expect(TranscriptIndex.normalised("HTTPS://Docs.Example.TEST:443/a?b=1#frag") == "https://docs.example.test/a?b=1")
        #expect(TranscriptIndex.normalised("http://x.test") == "http://x.test/")
        #expect(TranscriptIndex.normalised("http://x.test:8080/p") == "http://x.test:8080/p")
        #expect(TranscriptIndex.normalised("http://[fd00::1]:80/p") == "http://[fd00::1]/p")
        #expect(TranscriptIndex.normalised("ftp://x.test/") == nil)
        #expect(TranscriptIndex.normalised("not a url") == nil)
    }

    @Test func jsonLinesFollowedLive() throws {
        let d = TempDir()
        let file = "agents/main/sessions/\(sessionA).jsonl"
        d.write(file, PiLines.header(sessionA) + "\n" + PiLines.assistant("e1", tool: "toolu_01", at: 1) + "\n")
        let index = TranscriptIndex()
        let source = TranscriptSource(directory: d.path, index: index)
        source.poll()
        #expect(index.session(toolCallId: "toolu_01") == sessionA)
        #expect(index.session(toolCallId: "toolu_02") == nil)
        // Appended later, with an OpenAI id kept as "call_id|item_id", and a partial line not yet ended.
        d.append(file, PiLines.assistant("e2", tool: "call_9|fc_9", at: 2) + "\n"
            + PiLines.fetchResult("e3", tool: "call_9|fc_9", url: "https://docs.test/a", fetchedAt: "2026-11-29T10:00:02.000Z", tookMs: 500)
            + "\n{\"type\":\"mess")
        source.poll()
        #expect(index.session(toolCallId: "call_9") == sessionA)
        #expect(index.session(toolCallId: "fc_9") == sessionA)
        #expect(index.session(toolCallId: "call_9|fc_9") == sessionA)
        let f = try #require(index.fetches(url: "https://docs.test/a").first)
        #expect(f.start == t0 + 1_500_000_000 && f.end == t0 + 2_000_000_000 && !f.cached && f.sessionId == sessionA)
        #expect(index.fetches(host: "docs.test").count == 1)
        #expect(source.counters.entries == 4 && source.counters.skipped == 0)
        // The session store maps a session key to its current transcript.
        d.write("agents/main/sessions/sessions.json", #"{"agent:main:main":{"sessionId":"\#(sessionA)","updatedAt":1}}"#)
        source.poll()
        #expect(index.session(forKey: "agent:main:main") == sessionA)
        #expect(index.session(forKey: sessionA) == sessionA)
        #expect(index.session(forKey: "agent:main:other") == nil)
    }

    @Test func linksAndJunkRefused() throws {
        let d = TempDir()
        let outside = TempDir()
        outside.write("agents/x/sessions/\(sessionB).jsonl", PiLines.header(sessionB) + "\n" + PiLines.assistant("e", tool: "toolu_b", at: 1) + "\n")
        // A linked transcript, a linked agent directory: neither is read.
        try FileManager.default.createDirectory(atPath: d.path + "/agents/main/sessions", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: d.path + "/agents/main/sessions/\(sessionB).jsonl",
                                                   withDestinationPath: outside.path + "/agents/x/sessions/\(sessionB).jsonl")
        try FileManager.default.createSymbolicLink(atPath: d.path + "/agents/linked", withDestinationPath: outside.path + "/agents/x")
        d.write("agents/main/sessions/\(sessionA).jsonl", "not json\n[1,2]\n" + String(repeating: "x", count: 3 << 20) + "\n"
            + PiLines.assistant("e", tool: "toolu_a", at: 1) + "\n")
        let index = TranscriptIndex()
        let source = TranscriptSource(directory: d.path, index: index)
        source.poll()
        #expect(index.session(toolCallId: "toolu_b") == nil)
        // The file name stands in for a missing header.
        #expect(index.session(toolCallId: "toolu_a") == sessionA)
        #expect(source.counters.refused == 1)
        #expect(source.counters.skipped == 3)
        #expect(TranscriptSource.check(directory: d.path + "/agents/linked") == "it is a symbolic link")
    }

    @Test func indexCapsDropOldest() {
        let index = TranscriptIndex(limits: .init(toolCallIds: 10, fetches: 4, turns: 4))
        for i in 0..<30 {
            _ = index.add(entry: Data(PiLines.assistant("e\(i)", tool: "toolu_\(i)", at: Int64(i)).utf8), session: sessionA)
            _ = index.add(entry: Data(PiLines.fetchResult("f\(i)", tool: "toolu_\(i)", url: "https://h.test/\(i)",
                                                         fetchedAt: "2026-11-29T10:00:\(String(format: "%02d", i)).000Z", tookMs: 10).utf8),
                          session: sessionA)
        }
        #expect(index.session(toolCallId: "toolu_29") == sessionA)
        #expect(index.session(toolCallId: "toolu_0") == nil)
        #expect(index.fetches(url: "https://h.test/29").count == 1)
        #expect(index.fetches(url: "https://h.test/0").isEmpty)
        #expect(index.droppedEntries > 0)
    }
}

/// The per-agent SQLite store, as OpenClaw writes it (schema 23 and later): text and Zstandard rows.
@Suite struct TranscriptDatabaseTests {
    static func compress(_ s: String) -> [UInt8] {
        let src = Array(s.utf8)
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(src.count))
        let ctx = ZSTD_createCCtx()
        defer { ZSTD_freeCCtx(ctx) }
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, 1)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
        let n = ZSTD_compress2(ctx, &out, out.count, src, src.count)
        return Array(out.prefix(n))
    }

    static func makeStore(_ path: String, rows: [(String, Int, String?, [UInt8]?, Int?)]) throws {
        var db: OpaquePointer?
        #expect(sqlite3_open(path, &db) == SQLITE_OK)
        defer { sqlite3_close(db) }
        sqlite3_exec(db, """
            CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT, created_at INTEGER,
              event_zstd BLOB, event_utf8_bytes INTEGER, navigation_json TEXT, PRIMARY KEY (session_id, seq),
              CHECK ((event_json IS NULL) <> (event_zstd IS NULL))) STRICT
            """, nil, nil, nil)
        for r in rows { try insert(db!, r) }
    }

    static func insert(_ db: OpaquePointer, _ r: (String, Int, String?, [UInt8]?, Int?)) throws {
        var s: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO transcript_events (session_id, seq, event_json, created_at, event_zstd, event_utf8_bytes) VALUES (?,?,?,0,?,?)", -1, &s, nil)
        defer { sqlite3_finalize(s) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        sqlite3_bind_text(s, 1, r.0, -1, transient)
        sqlite3_bind_int64(s, 2, Int64(r.1))
        if let j = r.2 { sqlite3_bind_text(s, 3, j, -1, transient) } else { sqlite3_bind_null(s, 3) }
        if let z = r.3 { sqlite3_bind_blob(s, 4, z, Int32(z.count), transient) } else { sqlite3_bind_null(s, 4) }
        if let n = r.4 { sqlite3_bind_int64(s, 5, Int64(n)) } else { sqlite3_bind_null(s, 5) }
        #expect(sqlite3_step(s) == SQLITE_DONE)
    }

    @Test func textAndCompressedRows() throws {
        let d = TempDir()
        try FileManager.default.createDirectory(atPath: d.path + "/agents/main/agent", withIntermediateDirectories: true)
        let db = d.path + "/agents/main/agent/openclaw-agent.sqlite"
        // A large tool result, compressed as OpenClaw does (level 1, checksum), with its byte count.
        let big = PiLines.fetchResult("e2", tool: "toolu_z", url: "https://docs.test/big", fetchedAt: "2026-11-29T10:00:03.000Z", tookMs: 200)
            .replacingOccurrences(of: "\"text\":\"hello\"", with: "\"text\":\"\(String(repeating: "lorem ipsum ", count: 400))\"")
        let bomb = Self.compress(String(repeating: "a", count: 6 << 20))
        try Self.makeStore(db, rows: [
            (sessionA, 0, PiLines.header(sessionA), nil, nil),
            (sessionA, 1, PiLines.assistant("e1", tool: "toolu_z", at: 1), nil, nil),
            (sessionA, 2, nil, Self.compress(big), big.utf8.count),
            // A length that does not match, and a frame that would decompress past the cap: both skipped.
            (sessionB, 0, nil, Self.compress(PiLines.assistant("e3", tool: "toolu_wrong", at: 1)), 5),
            (sessionB, 1, nil, bomb, nil),
            (sessionB, 2, PiLines.assistant("e4", tool: "toolu_b", at: 1), nil, nil),
        ])
        let before = try FileManager.default.contentsOfDirectory(atPath: d.path + "/agents/main/agent").sorted()
        let index = TranscriptIndex()
        let source = TranscriptSource(directory: d.path, index: index)
        source.poll()
        #expect(index.session(toolCallId: "toolu_z") == sessionA)
        #expect(index.fetches(url: "https://docs.test/big").first?.sessionId == sessionA)
        #expect(index.session(toolCallId: "toolu_b") == sessionB)
        #expect(index.session(toolCallId: "toolu_wrong") == nil)
        #expect(source.counters.skipped == 2)
        #expect(source.counters.databases == 1)
        // Rows added later are read on the next poll, and nothing was created next to the agent's database.
        var h: OpaquePointer?
        sqlite3_open(db, &h)
        try Self.insert(h!, (sessionA, 3, PiLines.assistant("e5", tool: "toolu_late", at: 1), nil, nil))
        sqlite3_close(h)
        source.poll()
        #expect(index.session(toolCallId: "toolu_late") == sessionA)
        #expect(try FileManager.default.contentsOfDirectory(atPath: d.path + "/agents/main/agent").sorted() == before)
    }

    /// A store whose `transcript_events` is a view over an endless recursive query, or a table whose rows
    /// are huge: the poll returns at once and reads nothing from the view, and skips what is too long.
    @Test func hostileStoresAreBounded() throws {
        let d = TempDir()
        try FileManager.default.createDirectory(atPath: d.path + "/agents/v/agent", withIntermediateDirectories: true)
        var db: OpaquePointer?
        #expect(sqlite3_open(d.path + "/agents/v/agent/openclaw-agent.sqlite", &db) == SQLITE_OK)
        sqlite3_exec(db, """
            CREATE VIEW transcript_events AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
              SELECT 's' AS session_id, i AS seq, printf('%.*c', 100000000, 'x') AS event_json, NULL AS event_zstd, NULL AS event_utf8_bytes FROM n
            """, nil, nil, nil)
        sqlite3_close(db)
        try FileManager.default.createDirectory(atPath: d.path + "/agents/t/agent", withIntermediateDirectories: true)
        try TranscriptDatabaseTests.makeStore(d.path + "/agents/t/agent/openclaw-agent.sqlite", rows: [
            (sessionA, 0, String(repeating: "y", count: 5 << 20), nil, nil),
            (sessionA, 1, PiLines.assistant("e", tool: "toolu_after_big", at: 1), nil, nil),
        ])
        let index = TranscriptIndex()
        let source = TranscriptSource(directory: d.path, index: index)
        let start = Date()
        source.poll()
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(index.session(toolCallId: "toolu_after_big") == sessionA)
        #expect(source.counters.skipped == 1)
    }

    @Test func zstdBounds() {
        let frame = Self.compress("hello world")
        frame.withUnsafeBytes { b in
            #expect(Zstd.decompress(b, expected: 11, limit: 100).map { String(decoding: $0, as: UTF8.self) } == "hello world")
            #expect(Zstd.decompress(b, expected: nil, limit: 100)?.count == 11)
            #expect(Zstd.decompress(b, expected: 12, limit: 100) == nil)
            #expect(Zstd.decompress(b, expected: nil, limit: 10) == nil)
            #expect(Zstd.decompress(UnsafeRawBufferPointer(rebasing: b.prefix(frame.count - 3)), expected: nil, limit: 100) == nil)
        }
        [UInt8]([1, 2, 3]).withUnsafeBytes { #expect(Zstd.decompress($0, expected: nil, limit: 100) == nil) }
    }
}

/// The join, table by table: each key alone, the precedence between them, and the hold.
@Suite struct TranscriptJoinTests {
    static func call(_ kind: CallKind = .http, url: String? = nil, host: String? = nil, at ms: Int64, durationMs: Int64 = 100) -> CallRecord {
        var r = CallRecord(kind: kind, ts: t0 + ms * 1_000_000)
        r.endedAt = r.ts + durationMs * 1_000_000
        r.url = url
        r.host = host
        r.statusCode = kind == .http ? 200 : nil
        r.pid = 4242
        r.attribution = Attribution.none
        return r
    }

    /// A call through the join, as it comes out once nothing more can be learnt for it.
    static func settled(_ join: TranscriptJoin, _ r: CallRecord) -> CallRecord? {
        (join.add(r, now: r.ts) + join.due(now: r.ts + 10_000_000_000)).first
    }

    static func index(_ lines: [(String, String)]) -> TranscriptIndex {
        let i = TranscriptIndex()
        for (session, line) in lines { _ = i.add(entry: Data(line.utf8), session: session) }
        return i
    }

    @Test func toolCallIdsDecideLLMCalls() {
        let i = Self.index([(sessionA, PiLines.assistant("e", tool: "toolu_A1", at: 0)), (sessionB, PiLines.assistant("e", tool: "call_B|fc_B", at: 0))])
        let join = TranscriptJoin(index: i)
        var asked = Self.call(at: 0)
        asked.llmProvider = "anthropic"
        asked.llmToolCalls = ["web_fetch toolu_A1"]
        var answered = Self.call(at: 900)
        answered.llmProvider = "openai"
        answered.llmToolResultIds = ["call_B"]
        let out = join.add(asked, now: asked.ts) + join.add(answered, now: answered.ts)
        #expect(out.map(\.sessionId) == [sessionA, sessionB])
        #expect(out.allSatisfy { $0.attribution == .exact && $0.attributionKey == .toolCallId })
        #expect(join.heldCount == 0)
    }

    @Test func overlappingFetchesOfOneURL() {
        // Both sessions fetched the same page at overlapping times; a third fetch was a cache hit.
        let i = Self.index([
            (sessionA, PiLines.fetchResult("a", tool: "toolu_a", url: "https://docs.test/p", fetchedAt: "2026-11-29T10:00:01.000Z", tookMs: 1000)),
            (sessionB, PiLines.fetchResult("b", tool: "toolu_b", url: "https://docs.test/p", fetchedAt: "2026-11-29T10:00:01.400Z", tookMs: 1000)),
            (sessionB, PiLines.fetchResult("c", tool: "toolu_c", url: "https://docs.test/p", fetchedAt: "2026-11-29T10:00:01.000Z", tookMs: 1000, cached: true)),
        ])
        let join = TranscriptJoin(index: i)
        // B's call finishes first and fits both windows (it is inside A's too): the closest fit decides, once
        // the calls settled and every window around them is known.
        let b = Self.call(url: "https://docs.test/p", at: 405, durationMs: 800)
        let a = Self.call(url: "https://docs.test:443/p", at: 3, durationMs: 992)
        #expect((join.add(b, now: b.endedAt!) + join.add(a, now: a.endedAt!)).isEmpty)
        #expect(join.due(now: a.endedAt! + 500_000_000).isEmpty)
        let out = join.due(now: b.endedAt! + 1_000_000_000)
        #expect(out.map(\.sessionId) == [sessionB, sessionA])
        #expect(out.allSatisfy { $0.attributionKey == .webFetch })
        // A third request to that URL has no fetch left to be: held, then released undecided.
        let extra = Self.call(url: "https://docs.test/p", at: 10, durationMs: 900)
        #expect(join.add(extra, now: extra.endedAt!).isEmpty)
        let released = join.due(now: extra.endedAt! + 4_000_000_000)
        #expect(released.count == 1 && released[0].sessionId == nil && released[0].attribution == Attribution.none)
        #expect(join.counters.undecided == 1)
    }

    @Test func fetchOutsideItsWindowOrFromARegisteredProcess() {
        let i = Self.index([(sessionA, PiLines.fetchResult("a", tool: "t", url: "http://w.test/", fetchedAt: "2026-11-29T10:00:01.000Z", tookMs: 500))])
        let join = TranscriptJoin(index: i, hold: 0)
        let late = Self.call(url: "http://w.test/", at: 1400)
        #expect(Self.settled(join, late)?.sessionId == nil)
        var registered = Self.call(url: "http://w.test/", at: 510, durationMs: 480)
        registered.sessionId = "tool-session"
        registered.attribution = .exact
        registered.attributionKey = .registry
        #expect(Self.settled(join, registered)?.sessionId == "tool-session")
        // Undecrypted HTTPS, matched by its host.
        let i2 = Self.index([(sessionB, PiLines.fetchResult("a", tool: "t", url: "https://s.test/x", fetchedAt: "2026-11-29T10:00:01.000Z", tookMs: 500))])
        let tls = Self.call(.tls, host: "s.test", at: 505, durationMs: 490)
        #expect(Self.settled(TranscriptJoin(index: i2), tls)?.sessionId == sessionB)
    }

    @Test func wireKeysWinAndMapSessionKeys() {
        let i = Self.index([(sessionA, PiLines.assistant("e", tool: "toolu_A", at: 0))])
        i.addSessionKey("agent:main:main", session: sessionB)
        let join = TranscriptJoin(index: i)
        var r = Self.call(at: 0)
        r.llmProvider = "openai"
        r.llmToolCalls = ["web_fetch toolu_A"]
        r.sessionId = "agent:main:main"
        r.attribution = .exact
        r.attributionKey = .promptCacheKey
        let out = join.add(r, now: r.ts)
        #expect(out.first?.sessionId == sessionB && out.first?.attributionKey == .promptCacheKey)
    }

    @Test func traceSharesTheDecidedSession() {
        let i = Self.index([])
        let join = TranscriptJoin(index: i)
        var first = Self.call(url: "https://api.test/x", at: 0)
        first.traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
        // Undecided: held until a call of the same trace is decided.
        #expect(join.add(first, now: first.ts).isEmpty)
        var llm = Self.call(at: 50)
        llm.llmProvider = "anthropic"
        llm.traceId = first.traceId
        llm.llmToolResultIds = ["toolu_T"]
        _ = i.add(entry: Data(PiLines.assistant("e", tool: "toolu_T", at: 0).utf8), session: sessionA)
        let out = join.add(llm, now: llm.ts)
        #expect(out.map(\.attributionKey) == [.toolCallId])
        // The trace is the weakest key: taken when the call's wait is over, so a stronger one could still land.
        #expect(join.due(now: first.ts + 1_000_000_000).isEmpty)
        let late = join.due(now: first.ts + 3_000_000_000)
        #expect(late.map(\.sessionId) == [sessionA] && late.map(\.attributionKey) == [.traceId])
        #expect(join.heldCount == 0 && join.counters.undecided == 0)
    }

    @Test func turnsDecideCallsWithoutIds() {
        let ms = (t0 / 1_000_000) + 1000
        let i = Self.index([
            (sessionA, PiLines.assistant("a", tool: nil, model: "gemini-2.5-flash", input: 120, output: 33, at: ms)),
            (sessionB, PiLines.assistant("b", tool: nil, model: "gemini-2.5-flash", input: 80, output: 33, at: ms)),
        ])
        let join = TranscriptJoin(index: i, hold: 0)
        var r = Self.call(at: 1010)
        r.llmProvider = "gemini"
        r.llmModel = "gemini-2.5-flash"
        r.llmInputTokens = 80
        r.llmOutputTokens = 33
        #expect(Self.settled(join, r).map { ($0.sessionId, $0.attributionKey) } ?? (nil, nil) == (sessionB, .transcriptTurn))
        // Equal counts in both sessions: no decision.
        r.llmInputTokens = nil
        #expect(Self.settled(join, r)?.attributionKey == nil)
    }

    @Test func lateEntriesDecideHeldCalls() {
        let i = Self.index([])
        let join = TranscriptJoin(index: i)
        var r = Self.call(at: 0)
        r.llmProvider = "anthropic"
        r.llmToolCalls = ["web_fetch toolu_L"]
        #expect(join.add(r, now: r.ts).isEmpty)
        #expect(join.due(now: r.ts + 1_000_000_000).isEmpty)
        _ = i.add(entry: Data(PiLines.assistant("e", tool: "toolu_L", at: 0).utf8), session: sessionB)
        #expect(join.due(now: r.ts + 1_500_000_000).first?.sessionId == sessionB)
        // A DNS lookup is never held.
        #expect(join.add(Self.call(.dns, at: 0), now: 0).count == 1)
    }
}
