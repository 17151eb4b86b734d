// ALTER TABLE … ADD COLUMN … DEFAULT x leaves existing rows without a stored value:
// reads show x, but the session extension's old image shows NULL (SQLite 3.40), so a
// later update of such a row would be recorded with a wrong before image and conflict
// on replay. After any DDL statement, both the writer and the replayer store the
// default into existing rows, untracked and with triggers off, so the rows read the
// same and their before images are right from then on.

import Node
import SQLiteSupport

package enum AddedColumnDefaults {
  package typealias Snapshot = [String: [String]]

  /// Runs one DDL statement (`run`) and stores the defaults of any columns it added:
  /// the one way both the writer and the replayer execute DDL.
  package static func executeDDL(on db: Connection, _ run: () throws -> Void) throws {
    let before = try snapshot(db)
    try run()
    try materialize(since: before, db)
  }

  /// Every user table's columns.
  package static func snapshot(_ db: Connection) throws -> Snapshot {
    var out: Snapshot = [:]
    for row in try db.query(
      """
      SELECT m.name, p.name FROM sqlite_schema m, pragma_table_info(m.name) p
      WHERE m.type = 'table' AND \(ObjectNames.userFilter(column: "m.name")) ORDER BY m.name, p.cid
      """)
    {
      guard case .text(let table) = row[0], case .text(let column) = row[1] else { continue }
      out[table, default: []].append(column)
    }
    return out
  }

  /// Stores the defaults of columns added since `before`.
  package static func materialize(since before: Snapshot, _ db: Connection) throws {
    for (table, columns) in try snapshot(db) {
      guard let old = before[table], columns.count > old.count else { continue }
      let added = Set(columns).subtracting(old)
      let withDefaults = try db.query(
        "SELECT name FROM pragma_table_info(?) WHERE dflt_value IS NOT NULL", [.text(table)]
      )
      .compactMap { row -> String? in
        if case .text(let name) = row[0], added.contains(name) { return name }
        return nil
      }
      guard !withDefaults.isEmpty else { continue }
      let assignments = withDefaults.map { "\(quoteIdentifier($0)) = \(quoteIdentifier($0))" }.joined(separator: ", ")
      try db.withTriggersDisabled { try db.execute("UPDATE main.\(quoteIdentifier(table)) SET \(assignments)") }
    }
  }
}
