import ArgumentParser
import CallModel
import Storage

struct CallsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calls",
        abstract: "Query the calls stored in a database."
    )

    @Option(help: "The SQLite database written by calltap read or calltap capture.")
    var db: String

    @Option(help: "Only calls of this session.")
    var session: String?

    @Option(help: "Only calls to this host.")
    var host: String?

    @Flag(help: "Only failed calls (any outcome but ok).")
    var failed = false

    @Option(help: "Only calls starting at or after this time (ISO-8601 or epoch seconds).")
    var since: String?

    @Option(help: "Only calls starting before this time (ISO-8601 or epoch seconds).")
    var until: String?

    @Option(help: "Output format: table or jsonl.")
    var format: OutputFormat = .table

    mutating func run() throws {
        var filter = CallStore.Filter()
        filter.session = session
        filter.host = host
        filter.failedOnly = failed
        if let since {
            guard let t = Timestamps.parse(since) else { throw ValidationError("--since: not a time: \(since)") }
            filter.since = t
        }
        if let until {
            guard let t = Timestamps.parse(until) else { throw ValidationError("--until: not a time: \(until)") }
            filter.until = t
        }
        let records: [CallRecord]
        do {
            let store = try CallStore(path: db)
            records = try store.calls(filter)
        } catch {
            Log.error("cannot read database \(db): \(error)")
            throw ExitCode(ExitStatus.database)
        }
        let out = OutputStream()
        switch format {
        case .jsonl:
            for r in records { out.line(CallJSON.line(r)) }
        case .table:
            out.line(CallTable.header)
            for r in records { out.line(CallTable.row(r)) }
            for line in CallTable.summary(records) { out.line(line) }
        case .none:
            break
        }
        out.flush()
    }
}
