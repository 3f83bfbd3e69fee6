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
