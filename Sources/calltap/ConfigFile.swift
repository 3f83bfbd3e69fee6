import Foundation
import TOMLKit

/// `calltap capture --config FILE`: a TOML file whose keys are the long flag names
/// (`netns = ["a", "b"]`, `db = "/var/lib/calltap/calls.db"`, `immediate = false`, `buffer-size = 64`).
/// Its settings go before the command line, so flags given there override it.
enum ConfigFile {
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// Expands `--config FILE` in the arguments of `calltap capture` into flags.
    static func expand(_ args: [String]) throws -> [String] {
        guard let sub = args.firstIndex(of: "capture"), let at = args.firstIndex(of: "--config"), at > sub else { return args }
        guard at + 1 < args.count else { throw Problem(description: "--config needs a file") }
        let path = args[at + 1]
        var rest = args
        rest.removeSubrange(at...(at + 1))
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Problem(description: "cannot read config file \(path)")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch {
            throw Problem(description: "config file \(path): \(error)")
        }
        let given = Set(rest.filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2).split(separator: "=")[0]) })
        var flags: [String] = []
        for key in table.keys.sorted() where !given.contains(key) {
            guard let value = table[key] else { continue }
            if let b = value.bool {
                if b { flags.append("--\(key)") }
            } else if let a = value.array {
                for item in a {
                    guard let s = item.string ?? item.int.map(String.init) else {
                        throw Problem(description: "config file \(path): \(key) must list strings or numbers")
                    }
                    flags += ["--\(key)", s]
                }
            } else if let s = value.string ?? value.int.map(String.init) ?? value.double.map({ String($0) }) {
                flags += ["--\(key)", s]
            } else {
                throw Problem(description: "config file \(path): unsupported value for \(key)")
            }
        }
        rest.insert(contentsOf: flags, at: sub + 1)
        return rest
    }
}
