import ArgumentParser
import Server
import Storage

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the external-calls API, /metrics and the dashboard from a database.",
        discussion: "Binds to loopback by default; any other address requires --token (bearer authentication)."
    )

    @Option(help: "The SQLite database written by calltap read or calltap capture (created if missing).")
    var db: String

    @Option(help: "Address and port to listen on, e.g. 127.0.0.1:8477 or [::1]:8477.")
    var listen = "127.0.0.1:8477"

    @Option(help: "Require 'Authorization: Bearer TOKEN' on the API and /metrics.")
    var token: String?

    @Option(name: .customLong("allow-host"),
            help: "Without --token, also answer requests whose Host is NAME (besides the listen address and localhost). Repeatable.")
    var allowHosts: [String] = []

    @Option(name: .customLong("cors-origin"),
            help: "Let pages from this origin (e.g. http://127.0.0.1:8900, a ClawMetry dashboard) read the API from a browser.")
    var corsOrigin: String?

    mutating func run() async throws {
        guard let address = ServerOptions.parseListen(listen) else {
            throw ValidationError("--listen: expected HOST:PORT, got '\(listen)'")
        }
        var options = ServerOptions()
        options.host = address.host
        options.port = address.port
        options.token = token
        options.allowedHosts = allowHosts
        if let o = corsOrigin {
            guard ServerOptions.isOrigin(o) else { throw ValidationError("--cors-origin: expected an origin such as http://127.0.0.1:8900, got '\(o)'") }
            options.corsOrigin = o
        }
        let store = try CallStore.openForCommand(db)
        do {
            let app = try buildApplication(store: store, options: options)
            Log.info("serving \(db) on http://\(listen)/")
            try await app.runService()
        } catch let e as ServerError {
            Log.error(e.description)
            throw ExitCode(ExitStatus.usage)
        }
    }
}
