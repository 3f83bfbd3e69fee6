/// Which way bytes travel on a connection. The client is the side that sent the SYN (or, for a connection
/// seen from mid-stream, the side guessed to be the client by port). Every layer speaks of direction in
/// these words: the reassembler, the parsers and the call builders.
public enum Direction: Int, Sendable {
    case toServer = 0
    case toClient = 1
    public var reversed: Direction { self == .toServer ? .toClient : .toServer }
}
