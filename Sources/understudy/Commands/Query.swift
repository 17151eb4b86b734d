import ArgumentParser
import Node
import SQLiteSupport

struct Query: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a read-only query on any node's database (never audited).")

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Argument(help: "One read-only SQL statement.")
  var sql: String

  func run() throws {
    try reporting(json: output.json) {
      let config = try NodeLayout(root: node.node).loadConfig()
      let db = try Connection(path: config.database, mode: .readOnly)
      var statements = db.statements(sql).makeIterator()
      guard let statement = try statements.nextStatement() else { throw CommandError("no SQL statement given") }
      guard statement.isReadOnly else {
        throw CommandError("query runs read-only statements only; use `understudy sql` to change data")
      }
      if try statements.nextStatement() != nil { throw CommandError("query runs one statement at a time") }
      let columns = (0..<statement.columnCount).map(statement.columnName)
      let rows = try statement.rows()
      if output.json {
        Output.json(
          .object([
            ("columns", .array(columns.map { .string($0) })),
            ("rows", .array(rows.map { .array($0.map(\.json)) })),
          ]))
      } else {
        Output.line(columns.joined(separator: " | "))
        for row in rows { Output.line(row.map(\.description).joined(separator: " | ")) }
      }
    }
  }
}
