import ArgumentParser
import Foundation

@main
struct Calltap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calltap",
        abstract: "What external services did my agent call, at what latency, and did any fail?",
        discussion: """
            Exit codes: 0 success (a partial read is reported on stderr); 1 usage error; \
            2 no input could be read; 3 partial read with --strict; 4 database error.
            """,
        subcommands: [ReadCommand.self, CallsCommand.self, ServeCommand.self, CaptureCommand.self, RunCommand.self]
    )

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
        await main(args)
    }
}

/// Exit codes, documented in the README.
enum ExitStatus {
    static let usage: Int32 = 1
    static let unreadable: Int32 = 2
    static let partialRead: Int32 = 3
    static let database: Int32 = 4
}
