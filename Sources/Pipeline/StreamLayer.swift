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

    /// A response began and did not finish, for want of bytes: the capture ended, or it stopped
    /// following the connection.
    static func cutShort(_ finishing: FinishReason?) -> (Outcome, String) {
        (.incomplete, finishing == .endOfCapture ? "capture ended during the response" : "response cut short")
    }

    /// An RST, naming the side that sent it.
    static func reset(_ c: TCPConnection) -> (Outcome, String) {
        (.reset, c.resetBy == .toServer ? "connection reset by client" : "connection reset by server")
    }

    /// A response began and did not finish, with none of its bytes lost: what ended it, and when. The
    /// first of these decides: the client's FIN (`client_closed`), the server's FIN (`server_closed`), an
    /// RST from either side (`reset`). A client FIN sent before the response began is a half-close the
    /// server went on answering, not an end; a client FIN alone, with the server neither closing nor
    /// resetting, ends nothing yet: the call stays `incomplete` when the capture ends first.
    static func cut(_ c: TCPConnection, responseStart: Nanos?, finishing: FinishReason?) -> (outcome: (Outcome, String), endedAt: Nanos?) {
        var clientFin = c.finTime[Direction.toServer.rawValue]
        if let fin = clientFin, let start = responseStart, fin < start { clientFin = nil }
        let serverFin = c.finTime[Direction.toClient.rawValue]
        guard serverFin != nil || c.resetTime != nil else { return (cutShort(finishing), nil) }
        var first: (outcome: (Outcome, String), endedAt: Nanos?) = (cutShort(finishing), nil)
        var at = Nanos.max
        if let t = c.resetTime { first = (reset(c), t); at = t }
        if let t = clientFin, t < at { first = ((.clientClosed, "client closed the connection during the response"), t); at = t }
        if let t = serverFin, t < at { first = ((.serverClosed, "server closed the connection during the response"), t) }
        return first
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
