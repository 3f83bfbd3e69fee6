import CallModel
import Foundation
import Testing

/// The README's "Where each field comes from" table is one hop from a field to its code: one row per
/// field, in contract order, and its first file exists and names the field.
@Suite struct FieldTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func rows() throws -> [(field: String, files: [String])] {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "## Where each field comes from"))
        let rest = readme[section.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        var out: [(String, [String])] = []
        for line in rest[..<end].split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2 else { continue }
            let field = cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            let files = cells[1].components(separatedBy: "`").enumerated()
                .filter { $0.offset % 2 == 1 && $0.element.hasPrefix("Sources/") }.map(\.element)
            out.append((field, files))
        }
        return out
    }

    @Test func everyFieldHasARowInContractOrder() throws {
        #expect(try Self.rows().map(\.field) == CallRecord.fieldNames)
    }

    @Test func eachRowPointsAtCodeThatNamesTheField() throws {
        for row in try Self.rows() {
            #expect(!row.files.isEmpty, "\(row.field): no file")
            for file in row.files {
                #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(file).path), "\(row.field): \(file)")
            }
            guard let first = row.files.first else { continue }
            let text = try String(contentsOf: Self.root.appendingPathComponent(first), encoding: .utf8)
            // The Swift property: camel case, and durations shown in ms are held in µs (`latency_ms` → `latencyMicros`).
            var camel = row.field.split(separator: "_").enumerated()
                .map { $0.offset == 0 ? String($0.element) : $0.element.prefix(1).uppercased() + $0.element.dropFirst() }.joined()
            if camel.hasSuffix("Ms") { camel = camel.dropLast(2) + "Micros" }
            #expect(text.contains(camel) || text.contains(row.field), "\(row.field): \(first) names neither \(camel) nor \(row.field)")
        }
    }
}

/// The session resolver's rules, one row per case: request header, registry (exact / inherited /
/// ambiguous / none), `--session`, and nothing looked up.
@Suite struct SessionResolverTests {
    static func owner(_ session: String?, _ attribution: String) -> ConnectionOwner {
        ConnectionOwner(pid: 42, process: "curl", exe: nil, cgroup: nil, sessionId: session, attribution: attribution,
                        agent: nil, source: .connect)
    }

    struct Row: Sendable, CustomStringConvertible {
        var name: String
        var header: String?
        var owner: ConnectionOwner?
        var input: String?
        var lookedUp: Bool
        var session: String?
        var attribution: Attribution?
        var description: String { name }
    }

    static let rows: [Row] = [
        Row(name: "header beats the registry", header: "h", owner: owner("reg", "exact"), input: nil, lookedUp: true, session: "h", attribution: .exact),
        Row(name: "header beats --session", header: "h", owner: nil, input: "in", lookedUp: false, session: "h", attribution: .exact),
        Row(name: "header decides an ambiguous process", header: "h", owner: owner(nil, "ambiguous"), input: nil, lookedUp: true, session: "h", attribution: .exact),
        Row(name: "registry, own entry", header: nil, owner: owner("reg", "exact"), input: nil, lookedUp: true, session: "reg", attribution: .exact),
        Row(name: "registry, an ancestor's entry", header: nil, owner: owner("reg", "inherited"), input: "in", lookedUp: true, session: "reg", attribution: .inherited),
        Row(name: "--session when the registry knows nothing", header: nil, owner: owner(nil, "none"), input: "in", lookedUp: true, session: "in", attribution: Attribution.none),
        Row(name: "--session beats ambiguous", header: nil, owner: owner(nil, "ambiguous"), input: "in", lookedUp: true, session: "in", attribution: .ambiguous),
        Row(name: "ambiguous", header: nil, owner: owner(nil, "ambiguous"), input: nil, lookedUp: true, session: nil, attribution: .ambiguous),
        Row(name: "an owner without a session", header: nil, owner: owner(nil, "none"), input: nil, lookedUp: true, session: nil, attribution: Attribution.none),
        Row(name: "looked up, no owner", header: nil, owner: nil, input: nil, lookedUp: true, session: nil, attribution: Attribution.none),
        Row(name: "nothing looked up (read)", header: nil, owner: nil, input: nil, lookedUp: false, session: nil, attribution: nil),
        Row(name: "read --session", header: nil, owner: nil, input: "in", lookedUp: false, session: "in", attribution: nil),
    ]

    @Test(arguments: rows) func rule(_ row: Row) {
        var r = CallRecord(kind: .http, ts: 0)
        if let h = row.header { r.sessionId = h; r.attribution = .exact }
        r.attribute(owner: row.owner, inputSession: row.input, lookedUp: row.lookedUp)
        #expect(r.sessionId == row.session)
        #expect(r.attribution == row.attribution)
        if let o = row.owner {
            #expect(r.pid == o.pid && r.process == o.process && r.ownerSource == o.source)
        } else {
            #expect(r.pid == nil && r.ownerSource == nil)
        }
    }
}
