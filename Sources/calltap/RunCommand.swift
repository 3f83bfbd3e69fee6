import ArgumentParser
import CallModel
import Core
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as an agent session: register it for calltap capture and turn on its TLS key log.",
        discussion: """
            Appends {pid, pid_start_time, session_id, started_at} to the registry, sets SSLKEYLOGFILE and \
            NODE_OPTIONS=--tls-keylog to a per-session key log, runs the command, then appends ended_at. \
            Exits with the command's status.
            """
    )

    @Option(help: "The agent session id.")
    var session: String

    @Option(help: "The registry file calltap capture follows.")
    var registry = "/run/calltap/registry.jsonl"

    @Option(name: .customLong("registry-socket"),
            help: "Register through calltap capture's verified socket instead of appending to the registry file.")
    var registrySocket: String?

    @Option(name: .customLong("keylog-dir"), help: "Where to write the session's TLS key log (SESSION.keys).")
    var keylogDir: String?

    @Option(help: "An agent name recorded with the session.")
    var agent: String?

    @Argument(parsing: .captureForPassthrough, help: "The command to run (after --).")
    var command: [String] = []

    mutating func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard let program = argv.first else { throw ValidationError("give the command to run after --") }
        // The id names a file (SESSION.keys) and goes into every call: one policy for it everywhere.
        guard SessionID.isFileNameSafe(session) else {
            throw ValidationError("--session must be 1 to \(SessionID.maxBytes) bytes of A-Z a-z 0-9 . _ : @ + = - (no /, not starting with a dot)")
        }
        // The session is registered under this process, so everything the command starts inherits it.
        let me = Int(getpid())
        let startTime = Self.startTime(me)
        if let socketPath = registrySocket {
            var request: [String: Any] = ["pid": me, "session_id": session]
            if let agent { request["agent"] = agent }
            try register(request, at: socketPath)
        } else {
            try FileManager.default.createDirectory(atPath: (registry as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            var line: [String: Any] = ["pid": me, "session_id": session, "started_at": Date().timeIntervalSince1970]
            if let startTime { line["pid_start_time"] = startTime }
            if let agent { line["agent"] = agent }
            try append(line)
        }
        var environment = ProcessInfo.processInfo.environment
        if let dir = keylogDir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let keys = (dir as NSString).appendingPathComponent("\(session).keys")
            // Created (or appended to) without following a link, 0600: the agent's TLS secrets go only here.
            do {
                let fd = try SafeFiles.openAppend(keys, mode: 0o600)
                fchmod(fd, 0o600)
                close(fd)
            } catch {
                Log.error("--keylog-dir: \(error)")
                throw ExitCode(ExitStatus.usage)
            }
            environment["SSLKEYLOGFILE"] = keys
            environment["NODE_OPTIONS"] = ((environment["NODE_OPTIONS"].map { $0 + " " }) ?? "") + "--tls-keylog=\(keys)"
        }
        // Give a running daemon one registry poll to see the line before the first connection (a
        // registration through the socket is in place when it is answered).
        if registrySocket == nil { usleep(300_000) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program.contains("/") ? program : Self.which(program) ?? program)
        process.arguments = Array(argv.dropFirst())
        process.environment = environment
        do {
            try process.run()
        } catch {
            Log.error("cannot run \(program): \(error)")
            throw ExitCode(127)
        }
        process.waitUntilExit()
        if let socketPath = registrySocket {
            try? register(["pid": me, "session_id": session, "ended": true], at: socketPath)
        } else {
            var end: [String: Any] = ["pid": me, "session_id": session, "ended_at": Date().timeIntervalSince1970]
            if let startTime { end["pid_start_time"] = startTime }
            try? append(end)
        }
        throw ExitCode(process.terminationStatus)
    }

    private func append(_ fields: [String: Any]) throws {
        var line = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        line.append(0x0A)
        // Appended without following a link (a registry path that is a symlink is refused).
        let fd: Int32
        do {
            fd = try SafeFiles.openAppend(registry, mode: 0o644)
        } catch {
            Log.error("registry: \(error)")
            throw ExitCode(ExitStatus.usage)
        }
        let h = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        try h.write(contentsOf: line)
    }

    /// One request on the verified registration socket; its answer must be `ok`.
    private func register(_ fields: [String: Any], at path: String) throws {
        var line = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        line.append(0x0A)
        // Bounded waits: a busy or stalled daemon must not keep the command from starting or ending.
        let s: Int32
        do {
            s = try UnixSocket.connect(to: path, timeout: 2)
        } catch {
            Log.error("--registry-socket: \(error)")
            throw ExitCode(ExitStatus.usage)
        }
        defer { close(s) }
        let text = UnixSocket.exchange(s, Array(line))
        guard text == "ok" else {
            Log.error("--registry-socket: \(text.isEmpty ? "no answer" : Printable.escape(text))")
            throw ExitCode(ExitStatus.usage)
        }
    }

    static func startTime(_ pid: Int) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        return rest.count > 19 ? UInt64(rest[19]) : nil
    }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
