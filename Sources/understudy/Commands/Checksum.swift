import ArgumentParser
import Node
import Primary
import SQLiteSupport

struct Checksum: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print the logical checksum of a node's database (schema and rows, not pages).",
    discussion: """
      On a primary the database is first brought up to its audit trail (as any open for
      writing does), so the checksum is that of the committed state.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let config = try NodeLayout(root: node.node).loadConfig()
      if config.role == .primary { try AuditedDatabase.open(node: node.node).close() }
      let sum = try DatabaseChecksum.compute(databaseAt: config.database)
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
