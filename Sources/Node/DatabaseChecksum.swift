// The logical checksum of a protected database: schema and rows, independent of page
// layout, row order and free space, excluding Understudy's own tables. Two nodes hold the
// same data exactly when their checksums are equal. AUTOINCREMENT's `sqlite_sequence` is
// covered too (as the table `sqlite_sequence`, when it exists): it decides the next id,
// so two nodes that differ there would not stay equal.
//
// It is a set hash (SetChecksum, Schemas/checksum.md): the sum of a digest per row and per
// schema object. `compute` reads every row (a full scan, `understudy checksum --full`);
// `current` reads the value the database keeps up to date transaction by transaction
// (`IncrementalChecksum`), in O(tables), and scans only when it keeps none.

import Foundation
import SQLiteSupport

public struct DatabaseChecksum: Codable, Sendable, Equatable {
  public struct Table: Codable, Sendable, Equatable {
    public var rows: Int
    public var checksum: String

    public init(rows: Int, checksum: String) {
      self.rows = rows
      self.checksum = checksum
    }
  }

  public var checksum: String
  public var tables: [String: Table]
  /// The sum of the schema objects' digests (the part no table holds).
  public var schema: String

  public init(schema: SetChecksum, tables: [String: (rows: Int, sum: SetChecksum)]) {
    self.schema = schema.description
    self.tables = tables.mapValues { Table(rows: $0.rows, checksum: $0.sum.description) }
    checksum = tables.values.reduce(schema) { $0 + $1.sum }.description
  }

  /// The checksum of the database at `path`, read in one read transaction of its own
  /// (the twin of `CommitState.read(databaseAt:)`).
  public static func compute(databaseAt path: String) throws -> DatabaseChecksum {
    try reading(path) { try compute($0) }
  }

  /// As kept by the database, or computed when it keeps none.
  public static func current(databaseAt path: String) throws -> DatabaseChecksum {
    try reading(path) { try current($0) }
  }

  public static func current(_ db: Connection) throws -> DatabaseChecksum {
    try IncrementalChecksum.read(db) ?? compute(db)
  }

  static func reading<T>(_ path: String, _ body: (Connection) throws -> T) throws -> T {
    let db = try Connection(path: path, mode: .readOnly)
    try db.execute("BEGIN")
    defer { try? db.execute("COMMIT") }
    return try body(db)
  }

  /// A full scan: every schema object and every row.
  public static func compute(_ db: Connection) throws -> DatabaseChecksum {
    var schema = SetChecksum.zero
    var tables: [String: (rows: Int, sum: SetChecksum)] = [:]
    let entries = try db.query(
      "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE \(ObjectNames.userFilter(column: "name"))")
    for entry in entries {
      schema += SetChecksum.schemaObject(entry)
      guard case .text("table") = entry[0], case .text(let name) = entry[1] else { continue }
      tables[name] = try scan(table: name, db)
    }
    // Absent until a table with AUTOINCREMENT is created.
    if let sequence = try sequenceTable(db) { tables[sequenceTable] = sequence }
    return DatabaseChecksum(schema: schema, tables: tables)
  }

  /// Every row of one table.
  public static func scan(table: String, _ db: Connection) throws -> (rows: Int, sum: SetChecksum) {
    let statement = try db.prepare("SELECT * FROM main.\(quoteIdentifier(table))")
    let columns = statement.columnCount
    var rows = 0
    var sum = SetChecksum.zero
    var values: [UInt8] = []
    while try statement.step() {
      values.removeAll(keepingCapacity: true)
      RowEncoding.appendRow(of: statement, count: columns, to: &values)
      sum += SetChecksum.row(table: table, columns: columns, values: values)
      rows += 1
    }
    return (rows, sum)
  }

  public static let sequenceTable = "sqlite_sequence"

  /// sqlite_sequence's rows, nil when it does not exist.
  static func sequenceTable(_ db: Connection) throws -> (rows: Int, sum: SetChecksum)? {
    guard try db.scalarInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'") == 1
    else { return nil }
    return try scan(table: sequenceTable, db)
  }

  /// Tables whose rows or checksum differ between `self` and `other` (a table one lacks
  /// counts as empty), sorted; "schema" when the schema differs.
  public func differences(from other: DatabaseChecksum) -> [String] {
    let empty = Table(rows: 0, checksum: SetChecksum.zero.description)
    var names = Set(tables.keys).union(other.tables.keys).filter {
      (tables[$0] ?? empty) != (other.tables[$0] ?? empty)
    }.sorted()
    if schema != other.schema { names.insert("schema", at: 0) }
    return names
  }
}
