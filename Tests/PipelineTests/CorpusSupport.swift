import Foundation

/// The shared corpus of public captures with expected results, beside the repository.
enum Corpus {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let root = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/corpus")

    struct Entry {
        var capture: URL
        var meta: [String: Any]
        var rows: [[String: Any]]
    }

    /// Every `<stem>.expected.jsonl` with its capture.
    static func entries() throws -> [Entry] {
        let files = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.lastPathComponent.hasSuffix(".expected.jsonl") } ?? []
        var out: [Entry] = []
        for f in files.sorted(by: { $0.path < $1.path }) {
            let data = try Data(contentsOf: f)
            let lines = data.split(separator: 0x0A).filter { !$0.isEmpty }
            let rows = try lines.map { try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] ?? [:] }
            guard let meta = rows.first, let name = meta["capture"] as? String else { continue }
            out.append(Entry(capture: f.deletingLastPathComponent().appendingPathComponent(name), meta: meta,
                             rows: Array(rows.dropFirst())))
        }
        return out
    }
}

extension Dictionary where Key == String, Value == Any {
    func str(_ k: String) -> String? { self[k] as? String }
    func int(_ k: String) -> Int? { (self[k] as? NSNumber)?.intValue }
}
