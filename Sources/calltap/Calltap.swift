import ArgumentParser
import Foundation

@main
struct Calltap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calltap",
        abstract: "What external services did my agent call, at what latency, and did any fail?",
        discussion: """
            Exit codes: 0 success (a partial read is reported on stderr); 1 usage error; \
            2 no input could be read; 3 partial read with --strict; 4 database error; \
            5 the OTLP endpoint did not take the export.
            """,
        version: Calltap.version,
        subcommands: [ReadCommand.self, CallsCommand.self, ServeCommand.self, CaptureCommand.self, RunCommand.self]
    )

    /// The version OTLP exports name as their instrumentation scope's.
    static let version = "0.7.0"

    /// Expands `capture --config FILE` before parsing, so the file's settings sit under the flags.
    static func main() async {
        _ = Log.logger // set up swift-log before any library makes a logger
        SharedFiles.restrictDefaults()
        var args = Array(CommandLine.arguments.dropFirst())
        do {
            args = try ConfigFile.expand(args)
        } catch {
            Log.error("\(error)")
            Foundation.exit(ExitStatus.usage)
        }
        await run(args)
    }

    /// Parses and runs one command. A usage error is one `calltap:` line on stderr and exit 1 (as the
    /// README's exit-code table says), not ArgumentParser's multi-line message and exit 64; help and
    /// `--version` still print in full.
    static func run(_ args: [String]) async {
        var command: ParsableCommand
        do {
            command = try parseAsRoot(args)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            let text = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "usage error"
            Log.error(text.hasPrefix("Error: ") ? String(text.dropFirst(7)) : text)
            Foundation.exit(ExitStatus.usage)
        }
        do {
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { print(fullMessage(for: error)); Foundation.exit(0) }
            let text = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
            Log.error(text.hasPrefix("Error: ") ? String(text.dropFirst(7)) : text)
            Foundation.exit(code == .validationFailure ? ExitStatus.usage : code.rawValue)
        }
    }
}

/// Exit codes, documented in the README.
enum ExitStatus {
    static let usage: Int32 = 1
    static let unreadable: Int32 = 2
    static let partialRead: Int32 = 3
    static let database: Int32 = 4
    static let export: Int32 = 5
}
