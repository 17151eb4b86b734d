import ArgumentParser
import Foundation
import Node
import Primary
import SQLiteSupport

struct Checksum: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print the logical checksum of a node's database (schema and rows, not pages).",
    discussion: """
      The checksum the database keeps of itself, moved by every transaction (O(tables) to
      read); --full computes it from every row instead (Schemas/checksum.md), and
      `understudy verify` compares the two. On a primary the database is first brought up
      to its audit trail (as any open for writing does), so the checksum is that of the
      committed state.
      """)

  @OptionGroup var node: NodeOption
  @Flag(help: "Read every row (a full scan) rather than the checksum the database keeps.")
  var full = false
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let config = try NodeLayout(root: node.node).loadConfig()
      if config.role == .primary { try AuditedDatabase.open(node: node.node).close() }
      let sum =
        full
        ? try DatabaseChecksum.compute(databaseAt: config.database)
        : try DatabaseChecksum.current(databaseAt: config.database)
      if output.json {
        Output.json(sum.json)
      } else {
        Output.line("checksum \(sum.checksum)")
        for name in sum.tables.keys.sorted() {
          Output.line("  \(name): \(sum.tables[name]!.rows) rows, \(sum.tables[name]!.checksum)")
        }
      }
    }
  }
}

/// The kept checksum against a full scan: a database changed behind Understudy's back
/// (or a bug in keeping it) shows as the tables that differ.
struct Verify: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Compare the checksum a node's database keeps with a full scan; exit 1 naming the tables that differ.")

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let config = try NodeLayout(root: node.node).loadConfig()
      if config.role == .primary { try AuditedDatabase.open(node: node.node).close() }
      let db = try Connection(path: config.database, mode: .readOnly)
      try db.execute("BEGIN")
      let kept = try IncrementalChecksum.read(db)
      let full = try DatabaseChecksum.compute(db)
      try db.execute("COMMIT")
      let differ = kept.map { full.differences(from: $0) } ?? []
      if output.json {
        Output.json(
          .object([
            ("database", .string(config.database)), ("kept", kept.map { .string($0.checksum) } ?? .null),
            ("full", .string(full.checksum)), ("equal", .bool(kept != nil && differ.isEmpty)),
            (
              "differ",
              .array(
                differ.map { name in
                  .object([
                    ("table", .string(name)),
                    ("kept", kept.flatMap { $0.row(name) }.map(\.json) ?? .null),
                    ("full", full.row(name).map(\.json) ?? .null),
                  ])
                })
            ),
          ]))
      } else if let kept {
        Output.line("kept     \(kept.checksum)")
        Output.line("full     \(full.checksum)")
        for name in differ {
          Output.line(
            "  \(name) differs: kept \(kept.row(name)?.text ?? "none"), full scan \(full.row(name)?.text ?? "none")")
        }
        Output.line(differ.isEmpty ? "equal" : "DIFFERENT: \(differ.joined(separator: ", "))")
      } else {
        Output.line("full     \(full.checksum)")
        Output.line("no checksum kept (it is recomputed at the next change)")
      }
      guard kept != nil, differ.isEmpty else {
        throw ExitCode(kept == nil ? 2 : 1)
      }
    }
  }
}

extension DatabaseChecksum {
  /// A table's entry (or the schema's, as "schema") for `verify`.
  fileprivate func row(_ name: String) -> VerifiedEntry? {
    if name == "schema" { return VerifiedEntry(rows: nil, checksum: schema) }
    return tables[name].map { VerifiedEntry(rows: $0.rows, checksum: $0.checksum) }
  }
}

private struct VerifiedEntry {
  var rows: Int?
  var checksum: String
  var json: JSON { .object([("rows", rows.map { .int(Int64($0)) } ?? .null), ("checksum", .string(checksum))]) }
  var text: String { (rows.map { "\($0) rows, " } ?? "") + checksum }
}
