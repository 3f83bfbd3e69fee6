import ArgumentParser
import CallModel
import ClawMetry
import Analysers
import Core
import Decode
import Source
import Foundation
import OTLP
import OTLPHTTP
import Pipeline
import Storage
import Transcripts

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, jsonl, none
}

struct ReadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Turn .pcap/.pcapng files into external API calls.",
        discussion: "Calls are printed in order of their start. Without --db nothing is stored."
    )

    @Argument(help: "Capture files (pcap or pcapng); - reads standard input.")
    var files: [String]

    @Option(help: "Tag every call from these files with this session id.")
    var session: String?

    @Option(help: "Store calls and capture statistics in this SQLite database.")
    var db: String?

    @Option(help: "Output format: table, jsonl or none.")
    var format: OutputFormat = .table

    @Option(help: "A BPF filter applied while reading.")
    var filter: String?

    @Option(name: .customLong("exclude-host"), help: "Leave out calls to this host (and its subdomains). Repeatable.")
    var excludeHosts: [String] = []

    @Flag(name: .customLong("include-local"), help: "Keep loopback and link-local traffic (left out by default).")
    var includeLocal = false

    @Option(name: .customLong("keylog"), help: "TLS key log (SSLKEYLOGFILE format) for decrypting HTTPS. Repeatable.")
    var keylogs: [String] = []

    @Option(name: .customLong("memory-mb"),
            help: "Memory budget in MB: the caps on connections, out-of-order bytes, held calls, HTTP/1 head buffers and DNS names scale with it.")
    var memoryMB = AnalysisOptions.defaultMemoryMB

    @Flag(help: "Keep short, redacted request/response body summaries.")
    var summaries = false

    @Flag(help: "Print capture statistics to standard error at the end.")
    var stats = false

    @Flag(help: "Exit 3 when an input was damaged or missing, even if others were read.")
    var strict = false

    @Option(name: .customLong("clawmetry-jsonl"), help: "Append calls in ClawMetry's interceptor format to this file.")
    var clawmetryJSONL: String?

    @Flag(name: .customLong("clawmetry-include-llm"), help: "Include LLM provider hosts in --clawmetry-jsonl.")
    var clawmetryIncludeLLM = false

    @Option(name: .customLong("transcripts"),
            help: "An OpenClaw state directory (~/.openclaw): its agents' transcripts decide the sessions of calls one gateway process made for many.")
    var transcripts: String?

    @OptionGroup var otlp: OTLPOptions

    mutating func run() throws {
        var options = AnalysisOptions()
        if let session, !SessionID.isValid(session) {
            Log.error("--session must be 1 to \(SessionID.maxBytes) bytes of A-Z a-z 0-9 . _ : @ / + = -")
            throw ExitCode(ExitStatus.usage)
        }
        options.sessionId = session
        options.includeLocal = includeLocal
        options.excludeHosts = excludeHosts
        options.summaries = summaries
        options.scaleCaps(toMemoryMB: memoryMB)
        let keyLog = KeyLog()
        keyLog.maxEntries = options.maxKeyLogEntries
        for path in keylogs {
            // Read as bytes: lines that are not UTF-8 are malformed lines (counted), not an unreadable file.
            guard let data = FileManager.default.contents(atPath: path), !isDirectory(path) else {
                Log.error("cannot read key log \(path)")
                throw ExitCode(ExitStatus.unreadable)
            }
            keyLog.add(text: String(decoding: data, as: UTF8.self))
        }
        // Secrets embedded in pcapng files (Decryption Secrets Blocks), anywhere in the file.
        for path in files where path != "-" {
            for text in DecryptionSecrets.tlsKeyLogs(path: path) { keyLog.add(text: text) }
        }
        if keyLog.malformedLines > 0 { Log.error("key log: \(keyLog.malformedLines) malformed lines skipped") }
        if !keyLog.isEmpty { options.keyLog = keyLog }

        // The agents' transcripts, read whole before the capture: calls are joined to them as they finish.
        var transcriptSource: TranscriptSource?
        var join: TranscriptJoin?
        if let dir = transcripts {
            if let problem = TranscriptSource.check(directory: dir) {
                Log.error("cannot read --transcripts \(dir): \(problem)")
                throw ExitCode(ExitStatus.usage)
            }
            let source = TranscriptSource(directory: dir, index: TranscriptIndex(limits: .init(
                toolCallIds: options.maxTranscriptToolCallIds, fetches: options.maxTranscriptFetches, turns: options.maxTranscriptTurns)))
            // Polled until a poll reads nothing more (each poll is bounded).
            var read = -1
            while source.bytesRead + source.counters.entries + source.counters.skipped != read {
                read = source.bytesRead + source.counters.entries + source.counters.skipped
                source.poll()
            }
            transcriptSource = source
            join = TranscriptJoin(index: source.index)
        }

        let otlpConfiguration = try otlp.resolve()
        if let c = otlpConfiguration, otlp.endpoint == nil {
            Log.info("exporting calls over OTLP to \(OTLPClient.shown(c.tracesURL)) (OTEL_EXPORTER_OTLP_ENDPOINT is set)")
        }
        var claw: ClawMetrySink?
        if let path = clawmetryJSONL {
            do {
                let fd = try SafeFiles.openAppend(path, mode: 0o640)
                claw = ClawMetrySink(handle: FileHandle(fileDescriptor: fd, closeOnDealloc: true), includeLLM: clawmetryIncludeLLM,
                                     source: ClawMetryLines.defaultSource)
            } catch {
                Log.error("cannot write --clawmetry-jsonl: \(error)")
                throw ExitCode(ExitStatus.usage)
            }
        }
        let store = try db.map(CallStore.openForCommand)
        // The database sink `capture` uses too: batched, and it holds (bounded) what the database refuses.
        let writer = store.map { CallWriter(store: $0, maxHeld: options.maxHeldCalls) }
        var storeError: Error?
        // The first error is what is reported if the database never takes the calls; a recovery clears it.
        writer?.onFailure = { storeError = storeError ?? $0 }
        writer?.onRecovery = { _ in storeError = nil }
        let out = OutputStream()
        var tableRows: [CallRecord] = []
        var batch: [CallRecord] = []
        let format = self.format
        // The table header waits for the first call or the first readable file, so an input that cannot
        // be opened leaves nothing on stdout but its error on stderr.
        var headerWritten = false
        var clawError: Error?
        func writeBatch() {
            writer?.write(batch)
            do { try claw?.write(batch) } catch { clawError = clawError ?? error }
        }
        let exporter = otlpConfiguration.map { OTLPBatchExporter(configuration: $0, version: Calltap.version) }
        func emit(_ record: CallRecord) {
            switch format {
            case .jsonl: out.line(CallJSON.line(record))
            case .table:
                if !headerWritten { out.line(CallTable.header); headerWritten = true }
                out.line(CallTable.row(record))
                tableRows.append(record)
            case .none: break
            }
            exporter?.add(record)
            // The database and the ClawMetry file take calls in batches.
            if writer != nil || claw != nil {
                batch.append(record)
                if batch.count >= 2000 {
                    writeBatch()
                    batch.removeAll(keepingCapacity: true)
                }
            }
        }
        // The capture's own clock (the newest time seen) paces the transcript join's hold.
        var clock: Int64 = 0
        let analyzer = Analyzer(options: options) { record in
            guard let join else { return emit(record) }
            clock = max(clock, record.endedAt ?? record.ts)
            for r in join.add(record, now: clock) { emit(r) }
        }

        var totalDecoder = DecodeCounters()
        var anyRead = false
        var anyOpened = false
        var damaged: [String] = []
        var unreadable: [String] = []
        let showProgress = Log.stderrIsTTY
        for path in files {
            let reader: PcapFileReader
            do {
                reader = try PcapFileReader(path: path, filter: filter)
            } catch {
                Log.error("\(error)")
                unreadable.append(path)
                continue
            }
            anyOpened = true
            let fileSize = path == "-" ? 0 : ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
            var lastProgress = Date()
            let (outcome, counters) = analyzer.read(reader, progress: showProgress && fileSize > 50_000_000 ? { seen in
                if Date().timeIntervalSince(lastProgress) > 1 {
                    lastProgress = Date()
                    Log.progress("\(path): \(seen * 100 / max(fileSize, 1))%")
                }
            } : nil)
            if showProgress && fileSize > 50_000_000 { Log.progress("") }
            if outcome.packets > 0 { anyRead = true }
            if outcome.badTimestamps > 0 {
                Log.error("\(path): \(outcome.badTimestamps) records with impossible timestamps took the previous record's time")
            }
            if let damage = outcome.damage {
                Log.error("\(path): damaged after \(outcome.packets) packets: \(damage)")
                damaged.append(path)
            }
            totalDecoder.add(counters)
        }
        analyzer.finish()
        if let join { for r in join.finish() { emit(r) } }
        var statistics = analyzer.statistics(decoder: totalDecoder)
        join?.fill(&statistics, source: transcriptSource?.counters)
        if format == .table && anyOpened {
            if !headerWritten { out.line(CallTable.header) }
            for line in CallTable.summary(tableRows) { out.line(line) }
        }
        out.flush()
        if let claw {
            do { try claw.write(batch) } catch { clawError = clawError ?? error }
            if let clawError { Log.error("cannot write --clawmetry-jsonl \(clawmetryJSONL ?? ""): \(clawError)") }
        }
        // The export finishes before any database error ends the run, so what it holds is still sent.
        let exported = exporter?.finish()
        if let store, let writer {
            do {
                writer.write(batch)
                try writer.flush()
                try store.recordStats(statistics, source: files.joined(separator: ","),
                                      at: Int64(Date().timeIntervalSince1970 * 1_000_000_000))
            } catch {
                storeError = storeError ?? error
            }
            if let storeError {
                let dropped = writer.notStored + writer.held
                Log.error("cannot write to database \(db ?? ""): \(storeError)" + (dropped > 0 ? " (\(dropped) calls not stored)" : ""))
                throw ExitCode(ExitStatus.database)
            }
        }
        if let o = exported {
            if stats {
                FileHandle.standardError.write(Data("otlp: spans=\(o.spans) requests=\(o.requests) retries=\(o.retries) not_delivered=\(o.spansNotDelivered) metrics=\(o.metricsDelivered ? 1 : 0) busy_ms=\(Int(o.busySeconds * 1000))\n".utf8))
            }
            if let failure = o.failure {
                Log.error("OTLP export failed: \(failure)" + (o.spansNotDelivered > 0 ? " (\(o.spansNotDelivered) spans not delivered)" : ""))
                throw ExitCode(ExitStatus.export)
            }
        }
        if stats {
            let text = statistics.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            FileHandle.standardError.write(Data("stats: \(text)\n".utf8))
        }
        if !anyRead {
            if damaged.isEmpty && unreadable.isEmpty { return } // empty but valid captures
            throw ExitCode(ExitStatus.unreadable)
        }
        // A partial read is reported on stderr above; it fails the run only when asked to.
        if strict && (!damaged.isEmpty || !unreadable.isEmpty) { throw ExitCode(ExitStatus.partialRead) }
    }
}

private func isDirectory(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}
