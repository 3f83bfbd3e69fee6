import Foundation
@testable import Analysers
import Core
import NIOCore
import NIOHPACK
import Testing

/// LLM API bodies as the providers send them (JSON and SSE), read for model, tokens, stop reason and
/// tool calls.
@Suite struct LLMParsingTests {
    static func sse(_ events: [String]) -> [UInt8] {
        Array(events.map { "data: \($0)\n\n" }.joined().utf8)
    }

    static func feed(_ api: LLMAPI, streaming body: [UInt8], chunk: Int) -> LLMFacts {
        var c = LLMCapture(api: api, cap: 1 << 20)
        c.responseHead(contentType: "text/event-stream; charset=utf-8", contentEncoding: nil)
        var i = 0, t: Nanos = 100
        while i < body.count {
            let n = min(chunk, body.count - i)
            body[i..<(i + n)].withUnsafeBytes { c.response($0, at: t) }
            i += n
            t += 1
        }
        return c.facts
    }

    @Test(arguments: [1, 7, 4096])
    func openAIChatStream(chunk: Int) {
        let body = Self.sse([
            #"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            #"{"id":"c1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            #"{"id":"c1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\"}"}}]}}]}"#,
            #"{"id":"c1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            #"{"id":"c1","model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":17,"prompt_tokens_details":{"cached_tokens":64}}}"#,
            "[DONE]",
        ])
        let f = Self.feed(.openAIChat, streaming: body, chunk: chunk)
        #expect(f.model == "gpt-4o-2024-08-06" && f.inputTokens == 120 && f.outputTokens == 17 && f.cacheReadTokens == 64)
        #expect(f.stopReason == "tool_calls" && f.toolCalls == ["get_weather call_abc"])
        #expect(f.firstTokenAt != nil)
    }

    @Test func openAIResponsesStream() {
        let body = Self.sse([
            #"{"type":"response.created","response":{"id":"resp_1","status":"in_progress","model":"gpt-5","output":[]}}"#,
            #"{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_9","name":"web_fetch","arguments":""}}"#,
            #"{"type":"response.completed","response":{"id":"resp_1","status":"completed","model":"gpt-5","output":[{"type":"function_call","id":"fc_1","call_id":"call_9","name":"web_fetch"}],"usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":512},"output_tokens":33}}}"#,
        ])
        let f = Self.feed(.openAIResponses, streaming: body, chunk: 13)
        #expect(f.model == "gpt-5" && f.inputTokens == 900 && f.cacheReadTokens == 512 && f.outputTokens == 33)
        #expect(f.stopReason == "completed" && f.toolCalls == ["web_fetch call_9"])
    }

    @Test func anthropicStreamWithCRLF() {
        let events = [
            #"{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-5","usage":{"input_tokens":25,"cache_read_input_tokens":1000,"output_tokens":1}}}"#,
            #"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"exec","input":{}}}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}"#,
            #"{"type":"message_stop"}"#,
        ]
        let body = Array(events.map { "event: x\r\ndata: \($0)\r\n\r\n" }.joined().utf8)
        let f = Self.feed(.anthropicMessages, streaming: body, chunk: 5)
        #expect(f.model == "claude-sonnet-4-5" && f.inputTokens == 25 && f.cacheReadTokens == 1000 && f.outputTokens == 42)
        #expect(f.stopReason == "tool_use" && f.toolCalls == ["exec toolu_01"])
    }

    @Test func geminiStreamAndJSON() {
        let chunk1 = #"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}],"modelVersion":"gemini-2.5-flash"}"#
        let chunk2 = #"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"lookup","args":{}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":5,"cachedContentTokenCount":3},"modelVersion":"gemini-2.5-flash"}"#
        let f = Self.feed(.gemini, streaming: Self.sse([chunk1, chunk2]), chunk: 64)
        #expect(f.model == "gemini-2.5-flash" && f.inputTokens == 11 && f.outputTokens == 5 && f.cacheReadTokens == 3)
        #expect(f.stopReason == "STOP" && f.toolCalls == ["lookup"])
        var j = LLMFacts()
        LLMParsing.request(.gemini, [], target: "/v1beta/models/gemini-2.5-pro:generateContent?key=REDACTED", into: &j)
        LLMParsing.response(.gemini, Array(chunk2.utf8), into: &j)
        #expect(j.model == "gemini-2.5-flash" && j.outputTokens == 5)
        var k = LLMFacts()
        LLMParsing.request(.gemini, [], target: "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", into: &k)
        #expect(k.model == "gemini-2.5-pro")
    }

    /// The ids of tool results a request sends back, per API (the newest last, four at most); ids with
    /// escapes or over 256 bytes are not taken.
    @Test func toolResultIdsInRequests() {
        func ids(_ api: LLMAPI, _ body: String) -> [String] {
            var f = LLMFacts()
            LLMParsing.request(api, Array(body.utf8), target: "/v1beta/models/m:generateContent", into: &f)
            return f.toolResultIds
        }
        #expect(ids(.anthropicMessages, #"{"model":"c","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id": "toolu_1","content":"x"}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_2"}]}]}"#)
            == ["toolu_1", "toolu_2"])
        #expect(ids(.openAIChat, #"{"messages":[{"role":"tool","tool_call_id":"call_a","content":"{\"tool_call_id\":\"fake\"}"}]}"#) == ["call_a"])
        #expect(ids(.openAIResponses, #"{"input":[{"type":"function_call","id":"fc_1","call_id":"call_1"},{"type":"function_call_output","call_id":"call_1"},{"call_id":"c2"},{"call_id":"c3"},{"call_id":"c4"},{"call_id":"c5"}]}"#)
            == ["c2", "c3", "c4", "c5"])
        #expect(ids(.gemini, #"{"contents":[{"parts":[{"functionResponse":{"id":"fr_9","name":"web_fetch"}}]},{"parts":[{"functionResponse":{"name":"x","response":{}}}]}]}"#) == ["fr_9"])
        #expect(ids(.anthropicMessages, #"{"tool_use_id":""}"#).isEmpty)
        #expect(ids(.anthropicMessages, "{\"tool_use_id\":\"" + String(repeating: "a", count: 300) + "\"}").isEmpty)
    }

    @Test func jsonResponsesAndRequests() {
        var f = LLMFacts()
        LLMParsing.request(.openAIResponses, Array(#"{"model":"gpt-5","prompt_cache_key":"3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b","input":[{"type":"function_call_output","call_id":"call_9","output":"secret prompt"}],"stream":false}"#.utf8), target: "/v1/responses", into: &f)
        #expect(f.model == "gpt-5" && f.promptCacheKey == "3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b")
        var a = LLMFacts()
        LLMParsing.response(.anthropicMessages, Array(#"{"id":"msg_2","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"toolu_9","name":"read","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":4,"cache_read_input_tokens":0}}"#.utf8), into: &a)
        #expect(a.model == "claude-haiku-4-5" && a.inputTokens == 10 && a.outputTokens == 4 && a.cacheReadTokens == 0)
        #expect(a.stopReason == "tool_use" && a.toolCalls == ["read toolu_9"])
        var o = LLMFacts()
        LLMParsing.response(.openAIChat, Array(#"{"model":"gpt-4o-mini","choices":[{"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#.utf8), into: &o)
        #expect(o.model == "gpt-4o-mini" && o.inputTokens == 9 && o.outputTokens == 2 && o.stopReason == "stop")
        var bad = LLMFacts()
        LLMParsing.response(.openAIChat, Array("<html>502</html>".utf8), into: &bad)
        #expect(bad.unreadable && bad.model == nil)
    }

    @Test(arguments: [
        ("POST", "/v1/chat/completions", LLMAPI.openAIChat),
        ("POST", "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21", .openAIChat),
        ("POST", "/v1/responses", .openAIResponses),
        ("POST", "/backend-api/codex/responses", .openAIResponses),
        ("POST", "/v1/messages", .anthropicMessages),
        ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", .gemini),
    ])
    func endpoints(method: String, target: String, api: LLMAPI) {
        #expect(LLMAPI.match(method: method, target: target) == api)
    }

    @Test func otherRequestsAreNotLLMCalls() {
        #expect(LLMAPI.match(method: "GET", target: "/v1/chat/completions") == nil)
        #expect(LLMAPI.match(method: "POST", target: "/v1/models") == nil)
        #expect(LLMAPI.match(method: "POST", target: "/v1/messages/batches") == nil)
    }

    /// A line longer than the cap is skipped and counted, and the stream goes on.
    @Test func overlongLinesAreSkipped() {
        var c = LLMCapture(api: .openAIChat, cap: 64)
        c.responseHead(contentType: "text/event-stream", contentEncoding: nil)
        let long = "data: " + String(repeating: "x", count: 500) + "\n\n"
        let good = #"data: {"model":"m","choices":[{"delta":{},"finish_reason":"stop"}]}"# + "\n\n"
        Array((long + good).utf8).withUnsafeBytes { c.response($0, at: 1) }
        #expect(c.sse.linesSkipped == 2) // the good line is 66 bytes, over the 64-byte cap too
        #expect(c.facts.stopReason == nil)
        var d = LLMCapture(api: .openAIChat, cap: 128)
        d.responseHead(contentType: "text/event-stream", contentEncoding: nil)
        Array((long + good).utf8).withUnsafeBytes { d.response($0, at: 1) }
        #expect(d.sse.linesSkipped == 1 && d.facts.stopReason == "stop" && d.facts.model == "m")
        #expect(d.heldBytes <= 1024)
    }

    /// A compressed stream is not read as it comes: the body is kept (bounded) and decoded at the end.
    @Test func compressedStreamsAreKept() {
        var c = LLMCapture(api: .openAIChat, cap: 1024)
        c.responseHead(contentType: "text/event-stream", contentEncoding: "gzip")
        #expect(!c.streaming && c.responseEncoding == "gzip")
    }
}

/// The same through the HTTP/2 analyser: DATA frames of a streamed response read as SSE, with the
/// first data event's time.
@Suite struct LLMOverHTTP2Tests {
    @Test func sseOverHTTP2() throws {
        var client = HPACKEncoder(allocator: ByteBufferAllocator())
        var server = HPACKEncoder(allocator: ByteBufferAllocator())
        var limits = HTTP2Limits()
        limits.llmBodyBytes = 1 << 16
        let budget = ParserBudget(limit: 1 << 20)
        let a = HTTP2Analyser(limits: limits, budget: budget)
        var c: [UInt8] = HTTP2Analyser.preface + H2.frame(4, stream: 0, [])
        c += H2.frame(1, flags: 0x04, stream: 1, try H2.block([(":method", "POST"), (":scheme", "https"),
                                                             (":authority", "api.anthropic.com"), (":path", "/v1/messages")], &client))
        c += H2.frame(0, flags: 0x01, stream: 1, Array(#"{"model":"claude-sonnet-4-5","stream":true}"#.utf8))
        c.withUnsafeBytes { a.deliver(.toServer, $0, at: 10) }
        var s: [UInt8] = H2.frame(4, stream: 0, [])
        s += H2.frame(1, flags: 0x04, stream: 1, try H2.block([(":status", "200"), ("content-type", "text/event-stream")], &server))
        s.withUnsafeBytes { a.deliver(.toClient, $0, at: 20) }
        let e1 = Array(("event: message_start\ndata: " + #"{"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":7}}}"# + "\n\n").utf8)
        H2.frame(0, stream: 1, e1).withUnsafeBytes { a.deliver(.toClient, $0, at: 30) }
        let text = Array(("data: " + #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"# + "\n\n").utf8)
        H2.frame(0, stream: 1, text).withUnsafeBytes { a.deliver(.toClient, $0, at: 35) }
        let e2 = Array(("data: " + #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"# + "\n\n").utf8)
        H2.frame(0, flags: 0x01, stream: 1, e2).withUnsafeBytes { a.deliver(.toClient, $0, at: 40) }
        let st = try #require(a.takeCompleted().first)
        let llm = try #require(st.llm)
        #expect(llm.api == .anthropicMessages && llm.streaming)
        #expect(llm.facts.inputTokens == 7 && llm.facts.outputTokens == 3 && llm.facts.stopReason == "end_turn")
        #expect(llm.facts.firstTokenAt == 35) // the first text, not message_start
        #expect(String(decoding: llm.requestBody, as: UTF8.self).contains("claude-sonnet-4-5"))
        #expect(llm.charged == 0) // handed out: its bytes are no longer counted
    }
}

@Suite struct SSEBoundsTests {
    /// An event of endless `data:` lines without the blank line that ends it holds no more than the cap.
    @Test func anEndlessEventIsDropped() {
        var c = LLMCapture(api: .openAIChat, cap: 256)
        c.responseHead(contentType: "text/event-stream", contentEncoding: nil)
        let line = Array("data: {\"x\":1}\n".utf8)
        for _ in 0..<10_000 { line.withUnsafeBytes { c.response($0, at: 1) } }
        #expect(c.heldBytes < 4096)
        let end = Array("\ndata: {\"model\":\"m\"}\n\n".utf8)
        end.withUnsafeBytes { c.response($0, at: 2) }
        #expect(c.sse.linesSkipped == 1 && c.facts.model == "m")
    }
}

@Suite struct LLMHostileBodiesTests {
    /// Names from a body are bounded; counts outside what a provider reports are dropped; a body of
    /// countless tiny values is not parsed.
    @Test func boundedFacts() {
        var f = LLMFacts()
        let long = String(repeating: "m", count: 5000)
        LLMParsing.response(.anthropicMessages, Array(#"{"model":"\#(long)","stop_reason":"\#(long)","usage":{"input_tokens":-5,"output_tokens":1e30}}"#.utf8), into: &f)
        #expect(f.model?.count == 200 && f.stopReason?.count == 100)
        #expect(f.inputTokens == nil && f.outputTokens == nil)
        let many = "[" + Array(repeating: "0", count: 100_000).joined(separator: ",") + "]"
        #expect(LLMParsing.object(Array(#"{"a":\#(many)}"#.utf8)) == nil)
    }

    /// The first token is the first output event, not the stream's opening events.
    @Test func firstTokenIsFirstOutput() {
        #expect(!LLMParsing.isOutput(.openAIResponses, Array(#"{"type":"response.created","response":{}}"#.utf8)))
        #expect(LLMParsing.isOutput(.openAIResponses, Array(#"{"type":"response.output_text.delta","delta":"x"}"#.utf8)))
        #expect(!LLMParsing.isOutput(.openAIChat, Array(#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#.utf8)))
        #expect(LLMParsing.isOutput(.openAIChat, Array(#"{"choices":[{"delta":{"content":"Hi"}}]}"#.utf8)))
        #expect(!LLMParsing.isOutput(.anthropicMessages, Array(#"{"type":"ping"}"#.utf8)))
    }

    @Test func gaveUpKeepsNothing() {
        var c = LLMCapture(api: .openAIChat, cap: 1 << 20)
        c.responseHead(contentType: "text/event-stream", contentEncoding: nil)
        Array(("data: " + #"{"model":"\#(String(repeating: "x", count: 100))","choices":[]}"# + "\n\n").utf8).withUnsafeBytes { c.response($0, at: 1) }
        #expect(c.facts.model != nil)
        c.giveUp()
        #expect(c.facts.model == nil && c.facts.unreadable && c.heldBytes == 0)
    }
}

/// The byte searches and the top-level string reader that every LLM body goes through, against plain
/// references on bodies with escapes, partial matches and matches at the very ends.
@Suite struct LLMScanTests {
    static func naiveFind(_ needle: String, in data: [UInt8], from: Int) -> Int? {
        let n = Array(needle.utf8)
        guard from >= 0, n.count <= data.count else { return nil }
        var i = from
        while i + n.count <= data.count {
            if Array(data[i..<(i + n.count)]) == n { return i + n.count }
            i += 1
        }
        return nil
    }

    @Test func findAgreesWithANaiveSearch() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#"_"tool_call_id: {}usageMTa\"#.utf8)
        for round in 0..<400 {
            var data = (0..<Int.random(in: 0...120, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            if round % 3 == 0 { data += Array(#""tool_call_id""#.utf8) } // at the very end
            for from in [0, 1, data.count / 2, max(0, data.count - 14), data.count, data.count + 3] {
                #expect(LLMParsing.find("\"tool_call_id\"", in: data, from: from) == Self.naiveFind("\"tool_call_id\"", in: data, from: from))
                #expect(LLMParsing.find("usageMetadata", in: data, from: from) == Self.naiveFind("usageMetadata", in: data, from: from))
                #expect(LLMParsing.find("\"usage\"", in: data, from: from) == Self.naiveFind("\"usage\"", in: data, from: from))
                #expect(LLMParsing.find("\"", in: data, from: from) == Self.naiveFind("\"", in: data, from: from))
            }
        }
        #expect(LLMParsing.find("\"id\"", in: Array(#""i""id""#.utf8)) == 7)
        #expect(LLMParsing.find("\"id\"", in: []) == nil)
    }

    @Test func topLevelStringsMatchJSONSerialization() throws {
        let bodies = [
            #"{"model":"gpt-4o","prompt_cache_key":"k1","messages":[{"role":"user","content":"say \"hi\" \\ now"}]}"#,
            #"{ "messages" : [ {"content": "a \\\" b"} , "]}" ], "model" : "m\u00e9\"x", "user": "u" }"#,
            #"{"a":{"model":"inner"},"model":"outer\\\\","b":[1,2,{"c":"\\"}],"user":"z"}"#,
            #"{"model":"cut"#,
        ]
        for body in bodies {
            let got = TopLevelJSON.strings(Array(body.utf8), keys: ["model", "prompt_cache_key", "user"])
            let whole = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            if let whole {
                for key in ["model", "prompt_cache_key", "user"] {
                    #expect(got[key] == whole[key] as? String, "\(key) in \(body)")
                }
            } else {
                #expect(got.isEmpty, "\(body)")
            }
        }
    }
}
