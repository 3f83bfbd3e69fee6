@testable import Analysers
import Core
import Testing

/// Feeds a conversation to an HTTP/1 analyser, whole or in small pieces.
func run(_ steps: [(Direction, String)], chunk: Int = .max, gap: (Direction, Int)? = nil,
         eof: Direction? = nil) -> (HTTP1Analyser, [HTTPExchange]) {
    let a = HTTP1Analyser()
    var t: Nanos = 0
    var out: [HTTPExchange] = []
    for (side, text) in steps {
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let n = min(chunk, bytes.count - i)
            t += 1000
            bytes[i..<(i + n)].withUnsafeBytes { _ = a.deliver(side, $0, at: t) }
            i += n
        }
        out += a.takeCompleted()
    }
    if let gap { a.gap(gap.0, length: gap.1, at: t) }
    if let eof { a.endOfStream(eof, at: t + 1) }
    a.finish()
    out += a.takeCompleted()
    return (a, out)
}

struct Summary: Equatable {
    var method: String?
    var target: String?
    var status: Int?
    var requestBody: Int
    var responseBody: Int
    var complete: Bool
}

func summarize(_ xs: [HTTPExchange]) -> [Summary] {
    xs.map { Summary(method: $0.request?.method, target: $0.request?.target, status: $0.response?.status,
                     requestBody: $0.requestBodyBytes, responseBody: $0.responseBodyBytes, complete: $0.responseComplete) }
}

@Suite struct HTTP1AnalyserTests {
    static let pipelined: [(Direction, String)] = [
        (.toServer, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nHEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"),
        (.toClient, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "4\r\nwxyz\r\n2;ext=1\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"),
    ]

    @Test func pipelinedRequestsPairInOrderWithEveryFraming() {
        let (_, xs) = run(Self.pipelined)
        #expect(summarize(xs) == [
            Summary(method: "GET", target: "/a", status: 200, requestBody: 0, responseBody: 3, complete: true),
            Summary(method: "GET", target: "/b", status: 404, requestBody: 0, responseBody: 6, complete: true),
            Summary(method: "HEAD", target: "/c", status: 200, requestBody: 0, responseBody: 0, complete: true),
        ])
    }

    /// The same conversation one byte at a time must give the same exchanges.
    @Test(arguments: [1, 2, 3, 7, 64])
    func chunkingDoesNotChangeResults(chunk: Int) {
        #expect(summarize(run(Self.pipelined, chunk: chunk).1) == summarize(run(Self.pipelined).1))
    }

    @Test func requestBodyAnd100Continue() {
        let (_, xs) = run([
            (.toServer, "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
            (.toClient, "HTTP/1.1 100 Continue\r\n\r\n"),
            (.toServer, "hello"),
            (.toClient, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        ])
        #expect(xs.count == 1)
        #expect(xs[0].interimStatuses == [100])
        #expect(xs[0].response?.status == 201 && xs[0].requestBodyBytes == 5 && xs[0].request?.expectContinue == true)
    }

    @Test func noBodyFor204And304() {
        let (_, xs) = run([
            (.toServer, "DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n"),
            (.toClient, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
        ])
        #expect(xs.map(\.response?.status) == [204, 304])
        #expect(xs.allSatisfy { $0.responseComplete && $0.responseBodyBytes == 0 })
    }

    @Test func closeDelimitedBodyEndsAtEndOfStream() {
        let (_, xs) = run([(.toServer, "GET / HTTP/1.0\r\n\r\n"), (.toClient, "HTTP/1.0 200 OK\r\n\r\nsome body")], eof: .toClient)
        #expect(xs.first?.responseComplete == true && xs.first?.responseBodyBytes == 9)
        let (_, open) = run([(.toServer, "GET / HTTP/1.0\r\n\r\n"), (.toClient, "HTTP/1.0 200 OK\r\n\r\nsome")])
        #expect(open.first?.responseComplete == false)
    }

    @Test func requestWithoutResponseIsHandedOutAtFinish() {
        let (_, xs) = run([(.toServer, "PUT /1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")])
        #expect(xs.count == 1 && xs[0].response == nil && xs[0].requestComplete)
    }

    @Test func connectSwitchesAndReturnsTheRest() {
        let a = HTTP1Analyser()
        let req = Array("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n".utf8)
        let early: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x05] // a ClientHello sent before the proxy answered
        (req + early).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 1) }
        let resp = Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8) + [0x16, 0x03, 0x03]
        let used = resp.withUnsafeBytes { a.deliver(.toClient, $0, at: 2) }
        #expect(a.switched)
        #expect(used == resp.count - 3)
        #expect(a.heldClientBytes == early)
        let xs = a.takeCompleted()
        #expect(xs.count == 1 && xs[0].switchedProtocols && xs[0].response?.status == 200)
    }

    @Test func refusedUpgradeKeepsParsingHTTP() {
        let (_, xs) = run([
            (.toServer, "GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\n\r\n"),
            (.toClient, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ])
        #expect(xs.map(\.request?.target) == ["/chat", "/next"])
        #expect(xs.map(\.response?.status) == [400, 200])
    }

    @Test func gapInsideAKnownLengthBodyIsSurvivable() {
        let a = HTTP1Analyser()
        Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 1) }
        Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8).withUnsafeBytes { _ = a.deliver(.toClient, $0, at: 2) }
        a.gap(.toClient, length: 4, at: 3)
        Array("xyzHTTP/1.1".utf8).withUnsafeBytes { _ = a.deliver(.toClient, $0, at: 4) }
        let xs = a.takeCompleted()
        #expect(xs.count == 1 && xs[0].responseComplete && xs[0].missedBytes == 4)
        #expect(xs[0].weirds.contains(.contentGap))
    }

    @Test func gapInHeadersLosesSyncThenRecoversAtAMessageStart() {
        let a = HTTP1Analyser()
        Array("GET /1 HTTP/1.1\r\nHo".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 1) }
        a.gap(.toServer, length: 20, at: 2)
        Array("garbage\r\n\r\n".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 3) }
        Array("GET /2 HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 4) }
        a.finish()
        let xs = a.takeCompleted()
        #expect(xs.count == 2)
        #expect(xs[0].weirds.contains(.gapInHeaders) && xs[0].missedBytes == 20)
        #expect(xs[1].request?.target == "/2")
    }

    @Test func malformedChunkSizeIsNamedAndCounted() {
        let (a, xs) = run([
            (.toServer, "GET / HTTP/1.1\r\n\r\n"),
            (.toClient, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ])
        #expect(xs.first?.weirds.contains(.badChunkSize) == true)
        #expect(a.malformedMessages == 1)
    }

    @Test func damagedRequestLinesFollowZeek() {
        // A damaged version keeps method and target; no version is HTTP/0.9; no space is not a request line.
        let (_, a) = run([(.toServer, "GET / HTTP/1.\nHost: h\n\n"), (.toClient, "HTTP/1.0 400 Bad\r\n\r\n")], eof: .toClient)
        #expect(a.first?.request?.method == "GET" && a.first?.request?.target == "/" && a.first?.response?.status == 400)
        let (_, b) = run([(.toServer, "OPTIONS HTTP/1.1\nHost: h\n\n")])
        #expect(b.first?.request?.method == "OPTIONS" && b.first?.request?.target == "")
        let (_, c) = run([(.toServer, "GET/HTTP/1.1\nHost: h\n\n"), (.toClient, "HTTP/1.0 400 Bad\r\nContent-Length: 0\r\n\r\n")])
        #expect(c.first?.request?.method == "" && c.first?.response?.status == 400)
    }

    @Test func endlessHeaderIsCappedAndCounted() {
        var limits = HTTPLimits()
        limits.maxHeadBytes = 1024
        let a = HTTP1Analyser(limits: limits)
        let line = Array("X-Long: \(String(repeating: "a", count: 300))\r\n".utf8)
        Array("GET /endless HTTP/1.1\r\n".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 1) }
        for t in 0..<20 { line.withUnsafeBytes { _ = a.deliver(.toServer, $0, at: Nanos(t)) } }
        a.finish()
        let xs = a.takeCompleted()
        #expect(xs.first?.weirds.contains(.headerTooLong) == true)
        // The request line is kept, so the record still says what was asked.
        #expect(xs.first?.request?.method == "GET" && xs.first?.request?.target == "/endless")
        #expect(a.malformedMessages == 1)
    }

    /// Many connections' unfinished heads share one budget: the head that grows past it is given up,
    /// keeps its request line, and gives its memory back; finished analysers return what they held.
    @Test func headBuffersShareOneBudget() {
        let budget = ParserBudget(limit: 6000)
        let line = Array("X-Long: \(String(repeating: "a", count: 500))\r\n".utf8)
        var analysers: [HTTP1Analyser] = []
        for k in 0..<4 {
            let a = HTTP1Analyser(budget: budget)
            Array("GET /slow/\(k) HTTP/1.1\r\n".utf8).withUnsafeBytes { _ = a.deliver(.toServer, $0, at: 1) }
            for t in 0..<5 { line.withUnsafeBytes { _ = a.deliver(.toServer, $0, at: Nanos(t)) } }
            analysers.append(a)
        }
        #expect(budget.refusals >= 1)
        // Head buffers stay within the budget; the four requests waiting for responses are counted in it too
        // (the oldest waiting one is handed out when a new request finds it spent, but each has only one).
        #expect(budget.used <= budget.limit + 4 * HTTP1Analyser.pendingCost)
        #expect(budget.used >= 4 * HTTP1Analyser.pendingCost)
        var refused = 0
        for (k, a) in analysers.enumerated() {
            a.finish()
            let x = a.takeCompleted().first
            #expect(x?.request?.target == "/slow/\(k)")
            if x?.weirds.contains(.parserMemoryCap) == true { refused += 1 }
        }
        #expect(refused == budget.refusals)
        analysers.removeAll()
        #expect(budget.used == 0)
    }

    @Test func pendingRequestsAreCapped() {
        var limits = HTTPLimits()
        limits.maxPendingRequests = 10
        let a = HTTP1Analyser(limits: limits)
        let req = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        for t in 0..<50 { req.withUnsafeBytes { _ = a.deliver(.toServer, $0, at: Nanos(t)) } }
        #expect(a.droppedPendingRequests == 40)
        #expect(a.takeCompleted().filter { $0.weirds.contains(.pendingRequestsCap) }.count == 40)
    }

    @Test func headersOfInterestAreParsedCaseInsensitively() {
        let (_, xs) = run([
            (.toServer, "post /v1 HTTP/1.1\r\nhost: API.Example.com\r\ncontent-type: application/json\r\n"
                + "Authorization: Bearer sk-secret\r\nbaggage: session.id=abc\r\ncontent-length: 2\r\n\r\n{}"),
        ])
        let head = xs.first?.request
        #expect(head?.host == "API.Example.com" && head?.contentType == "application/json")
        #expect(head?.sessionHints["baggage"] == "session.id=abc")
        #expect(xs.first?.requestBodyBytes == 2)
    }
}
