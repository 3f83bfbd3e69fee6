import Analysers
import CallModel
import Core
import Decode
import Source
import Reassembly

/// One protocol's analysis of a TCP stream, or of the plaintext inside TLS: an incremental parser from
/// Analysers and the call builder for what it finds. `ConnectionAnalysis` hands every layer the same four
/// things, so what reaches one protocol reaches all of them — including the protocol inside decrypted TLS.
protocol StreamLayer: AnyObject {
    /// In-order bytes from one side. Returns nil while the stream stays this protocol, or how many bytes
    /// were this protocol's when it switched to another (CONNECT, 101 Switching Protocols): the rest, and
    /// everything after, belong to what follows.
    func deliver(_ d: Direction, _ data: UnsafeRawBufferPointer, at t: Nanos) -> Int?
    /// `length` bytes of one side were never seen.
    func gap(_ d: Direction, length: Int, at t: Nanos)
    /// One side closed (its FIN reached in sequence).
    func endOfStream(_ d: Direction, at t: Nanos)
    /// The connection is over: every call still open is reported, with the reason.
    func finish(_ reason: FinishReason)
}

/// How calls end, in the same words whatever the protocol.
enum CallOutcome {
    /// No response came: the capture ended first, or the connection closed.
    static func noResponse(_ finishing: FinishReason?) -> (Outcome, String) {
        (.noResponse, finishing == .endOfCapture ? "capture ended before a response" : "connection closed without a response")
    }

    /// A response began and did not finish.
    static func cutShort(_ finishing: FinishReason?) -> (Outcome, String) {
        (.incomplete, finishing == .endOfCapture ? "capture ended during the response" : "response cut short")
    }

    /// A complete response: ok, or `http_error` for 400 and above.
    static func status(_ status: Int) -> (Outcome, String?) {
        status >= 400 ? (.httpError, "HTTP \(status)") : (.ok, nil)
    }
}

extension CallRecord {
    mutating func set(_ outcome: (Outcome, String?)) {
        self.outcome = outcome.0
        error = outcome.1
    }

    mutating func set(_ outcome: (Outcome, String)) {
        self.outcome = outcome.0
        error = outcome.1
    }
}
