// The logical checksum of a protected database: schema and rows, independent of page
// layout, row order on disk and free space, excluding Understudy's own tables. Two
// nodes hold the same data exactly when their checksums are equal. AUTOINCREMENT's
// `sqlite_sequence` is covered too (as the table `sqlite_sequence`, when it exists): it
// decides the next id, so two nodes that differ there would not stay equal.

import Crypto
import Foundation
import SQLiteSupport

public struct DatabaseChecksum: Codable, Sendable, Equatable {
  public struct Table: Codable, Sendable, Equatable {
    public var rows: Int
    public var checksum: String
  }

  public var checksum: String
  public var tables: [String: Table]

  /// The checksum of the database at `path`, read in one read transaction of its own
  /// (the twin of `CommitState.read(databaseAt:)`).
  public static func compute(databaseAt path: String) throws -> DatabaseChecksum {
    let db = try Connection(path: path, mode: .readOnly)
    try db.execute("BEGIN")
    defer { try? db.execute("COMMIT") }
    return try compute(db)
  }

  public static func compute(_ db: Connection) throws -> DatabaseChecksum {
    var overall = SHA256()
    var tables: [String: Table] = [:]
    let schema = try db.query(
      "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE \(ObjectNames.userFilter(column: "name")) ORDER BY type, name"
    )
    for entry in schema {
      feed(&overall, entry)
      guard case .text("table") = entry[0], case .text(let name) = entry[1] else { continue }
      let table = try checksum(table: name, schemaSQL: entry[3], db)
      tables[name] = table
      feed(&overall, [.text(name), .text(table.checksum)])
    }
    // Absent until a table with AUTOINCREMENT is created: other databases' checksums stay as they were.
    if try db.scalarInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'") == 1 {
      let table = try checksum(sequenceIn: db)
      tables[sequenceTable] = table
      feed(&overall, [.text(sequenceTable), .text(table.checksum)])
    }
    return DatabaseChecksum(checksum: hexDigest(overall.finalize()), tables: tables)
  }

  static func checksum(table: String, schemaSQL: SQLiteValue, _ db: Connection) throws -> Table {
    var hasher = SHA256()
    feed(&hasher, [schemaSQL])
    let info = try db.query("SELECT name, pk FROM pragma_table_info(?) ORDER BY pk, cid", [.text(table)])
    let keyColumns = info.compactMap { row -> String? in
      guard case .integer(let pk) = row[1], pk > 0, case .text(let name) = row[0] else { return nil }
      return name
    }
    let allColumns = info.compactMap { row -> String? in
      if case .text(let name) = row[0] { return name }
      return nil
    }
    let order = (keyColumns.isEmpty ? allColumns : keyColumns).map(quoteIdentifier).joined(separator: ", ")
    let statement = try db.prepare(
      "SELECT * FROM \(quoteIdentifier(table))" + (order.isEmpty ? "" : " ORDER BY \(order)"))
    var rows = 0
    var buffer: [UInt8] = []
    while try statement.step() {
      encode(statement.row(), into: &buffer)
      rows += 1
      if buffer.count > 1 << 16 {
        hasher.update(data: buffer)
        buffer.removeAll(keepingCapacity: true)
      }
    }
    hasher.update(data: buffer)
    return Table(rows: rows, checksum: hexDigest(hasher.finalize()))
  }

  public static let sequenceTable = "sqlite_sequence"

  /// sqlite_sequence's rows (it has no key, and a name may appear twice if written by hand).
  static func checksum(sequenceIn db: Connection) throws -> Table {
    var hasher = SHA256()
    let rows = try db.query("SELECT name, seq FROM sqlite_sequence ORDER BY name, seq")
    for row in rows { feed(&hasher, row) }
    return Table(rows: rows.count, checksum: hexDigest(hasher.finalize()))
  }

  static func feed(_ hasher: inout SHA256, _ values: [SQLiteValue]) {
    var buffer: [UInt8] = []
    encode(values, into: &buffer)
    hasher.update(data: buffer)
  }

  /// A canonical, unambiguous encoding: a type tag, then a fixed-width or length-prefixed body.
  static func encode(_ values: [SQLiteValue], into out: inout [UInt8]) {
    func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    le(UInt32(values.count))
    for value in values {
      switch value {
      case .null: out.append(0)
      case .integer(let v):
        out.append(1)
        le(v)
      case .real(let v):
        out.append(2)
        le(v.bitPattern)
      case .text(let s):
        out.append(3)
        let utf8 = Array(s.utf8)
        le(UInt64(utf8.count))
        out.append(contentsOf: utf8)
      case .blob(let b):
        out.append(4)
        le(UInt64(b.count))
        out.append(contentsOf: b)
      }
    }
  }

  static func hexDigest(_ digest: SHA256.Digest) -> String {
    digest.map { String(format: "%02x", $0) }.joined()
  }
}
