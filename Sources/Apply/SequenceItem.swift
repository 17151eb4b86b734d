// AUTOINCREMENT's next id lives in `sqlite_sequence`, which SQLite writes without the
// preupdate hook seeing it, and which has no key, so no changeset can carry it. A
// backup that applies the inserts raises its own sequence the same way, but file
// recovery's undo cannot lower it again, and a hand-written
// `UPDATE sqlite_sequence …` (a dump loads one) would never reach the backup.
//
// So when a transaction moves sqlite_sequence, its commit record carries the rows it
// changed as one more statement among its DDL, after the transaction's row changes:
// SQL that sets those rows, then in a comment the SQL that puts them back (for undo).
// Replay runs the first part; undo runs the second.

import SQLiteSupport

public enum SequenceItem {
  static let prefix = "-- understudy: sqlite_sequence\n"
  static let undoStart = "\n/* undo: "
  static let undoEnd = " */"

  /// sqlite_sequence's rows, per name (a name appears once unless written by hand).
  package typealias Rows = [SQLiteValue: [SQLiteValue]]

  package static func read(_ db: Connection) throws -> Rows {
    var rows: Rows = [:]
    // A table named with AUTOINCREMENT in its text may not be one: then there is no sqlite_sequence.
    let exists = try db.cached("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'")
    defer { exists.reset() }
    guard try exists.step() else { return rows }
    for row in try db.query("SELECT name, seq FROM main.sqlite_sequence ORDER BY rowid") {
      rows[row[0], default: []].append(row[1])
    }
    return rows
  }

  /// The item for the names whose rows differ between `before` and `after`, or nil.
  package static func item(before: Rows, after: Rows) -> String? {
    let names = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted {
      "\($0)" < "\($1)"
    }
    guard !names.isEmpty else { return nil }
    return prefix + statements(names: names, rows: after, literal: literal)
      + undoStart + statements(names: names, rows: before, literal: commentSafeLiteral) + undoEnd
  }

  private static func statements(
    names: [SQLiteValue], rows: Rows, literal: (SQLiteValue) -> String
  ) -> String {
    var sql = "DELETE FROM main.sqlite_sequence WHERE name IN (\(names.map(literal).joined(separator: ", ")))"
    let values = names.flatMap { name in (rows[name] ?? []).map { "(\(literal(name)), \(literal($0)))" } }
    if !values.isEmpty {
      sql += "; INSERT INTO main.sqlite_sequence(name, seq) VALUES \(values.joined(separator: ", "))"
    }
    return sql
  }

  /// Whether a DDL item of a commit record is a sequence item.
  public static func isItem(_ sql: String) -> Bool { sql.hasPrefix(prefix) }

  /// The SQL that puts back what the item changed, if `sql` is a sequence item.
  public static func undo(of sql: String) -> String? {
    guard isItem(sql), let start = sql.range(of: undoStart), sql.hasSuffix(undoEnd) else { return nil }
    return String(sql[start.upperBound..<sql.index(sql.endIndex, offsetBy: -undoEnd.count)])
  }

  static func literal(_ value: SQLiteValue) -> String {
    switch value {
    case .null: "NULL"
    case .integer(let v): String(v)
    case .real(let v): v.isFinite ? "\(v)" : (v > 0 ? "9e999" : v < 0 ? "-9e999" : "NULL")
    case .text(let s): "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
    case .blob(let b): "X'" + hex(b) + "'"
    }
  }

  /// Text as hex, so that no name can end the comment it sits in.
  static func commentSafeLiteral(_ value: SQLiteValue) -> String {
    if case .text(let s) = value { return "CAST(X'\(hex(Array(s.utf8)))' AS TEXT)" }
    return literal(value)
  }

  private static func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789ABCDEF")
    var out = ""
    for b in bytes {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 15)])
    }
    return out
  }
}
