import CallModel
import Foundation

/// Lines in ClawMetry's interceptor format (`type: external_api_call`), so its own sync picks calltap's
/// calls up unchanged. LLM provider hosts are left out by default: ClawMetry records those itself as `llm_call`.
enum ClawMetry {
    static let llmHosts = [
        "api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.mistral.ai", "api.cohere.ai",
        "api.cohere.com", "api.groq.com", "openrouter.ai", "api.together.xyz", "api.deepseek.com", "api.x.ai",
        "api.perplexity.ai", "api.fireworks.ai", "openai.azure.com", "bedrock-runtime.amazonaws.com",
    ]

    static func isLLMHost(_ host: String?) -> Bool {
        guard let h = host else { return false }
        return llmHosts.contains { h == $0 || h.hasSuffix("." + $0) }
            || (h.hasPrefix("bedrock-runtime.") && h.hasSuffix(".amazonaws.com"))
    }

    /// One line per HTTP call whose request was seen (plaintext or decrypted); nil for other records.
    static func line(_ r: CallRecord, source: String, includeLLM: Bool) -> String? {
        guard r.kind == .http, !r.estimated, r.method != nil, includeLLM || !isLLMHost(r.host) else { return nil }
        var w = JSONObjectWriter()
        w.string("type", "external_api_call")
        w.string("ts", Timestamps.iso8601(r.ts))
        w.string("url", r.url)
        w.string("host", r.host)
        w.string("method", r.method)
        w.int("status_code", r.statusCode)
        w.millis("latency_ms", r.latencyMicros)
        w.string("library", "calltap")
        w.string("source", source)
        w.string("session_id", r.sessionId)
        // How the session and the process were found: ClawMetry keeps what it does not know as extra keys.
        w.string("attribution", r.attribution?.rawValue)
        w.string("owner_source", r.ownerSource?.rawValue)
        w.string("attribution_key", r.attributionKey?.rawValue)
        w.string("trace_id", r.traceId)
        w.string("parent_span_id", r.parentSpanId)
        if r.llmProvider != nil {
            w.string("llm_provider", r.llmProvider)
            w.string("llm_model", r.llmModel)
            w.int("llm_input_tokens", r.llmInputTokens)
            w.int("llm_output_tokens", r.llmOutputTokens)
            w.int("llm_cache_read_tokens", r.llmCacheReadTokens)
            w.millis("llm_ttft_ms", r.llmTTFTMicros)
            w.string("llm_stop_reason", r.llmStopReason)
            w.strings("llm_tool_calls", r.llmToolCalls)
        }
        w.string("outcome", r.outcome.rawValue)
        w.string("error", r.error)
        return w.finish()
    }
}
