import ArgumentParser
import Foundation
import OTLP

/// `--otlp-endpoint`, `--otlp-header`, `--otlp-timeout`, shared by `read` and `capture`.
struct OTLPOptions: ParsableArguments {
    @Option(name: .customLong("otlp-endpoint"),
            help: "Export calls as OTLP spans and metrics (OTLP/HTTP protobuf) to this base URL; /v1/traces and /v1/metrics are appended. Default: $OTEL_EXPORTER_OTLP_ENDPOINT.")
    var endpoint: String?

    @Option(name: .customLong("otlp-header"), help: "A header for every OTLP request, NAME=VALUE. Repeatable; adds to $OTEL_EXPORTER_OTLP_HEADERS.")
    var headers: [String] = []

    @Option(name: .customLong("otlp-timeout"), help: "Seconds `read` keeps retrying an OTLP endpoint that does not take the export before exiting 5.")
    var timeout: Double = 30

    /// The resolved configuration, nil when no endpoint is set; a bad value is a usage error.
    func resolve() throws -> OTLPConfiguration? {
        guard timeout > 0, timeout.isFinite else {
            Log.error("--otlp-timeout must be a positive number of seconds")
            throw ExitCode(ExitStatus.usage)
        }
        do {
            return try OTLPConfiguration.resolve(endpoint: endpoint, headers: headers, timeout: timeout,
                                                 environment: ProcessInfo.processInfo.environment,
                                                 hostName: ProcessInfo.processInfo.hostName)
        } catch {
            Log.error("\(error)")
            throw ExitCode(ExitStatus.usage)
        }
    }
}
