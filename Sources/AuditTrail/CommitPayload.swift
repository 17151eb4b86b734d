// The payload of a commit record: the transaction's DDL statements and row changes,
// in the order they ran. Row changes are SQLite changesets, each with the column
// names of its tables as they were at that moment, so a trail explains itself years
// later without the database that wrote it.

public struct TableColumns: Equatable, Sendable, Codable {
  public var table: String
  public var columns: [String]
  public init(table: String, columns: [String]) {
    self.table = table
    self.columns = columns
  }
}

public enum CommitItem: Equatable, Sendable {
  /// A schema statement, replayed verbatim.
  case ddl(String)
  /// A SQLite changeset and the column names of each table in it.
  case changes(changeset: [UInt8], tables: [TableColumns])
  /// Format 2, last, in a transaction without DDL: what it did to the database checksum
  /// on the primary (Schemas/checksum.md), per table. A node that applies it checks that
  /// the rows it changed moved its own checksum the same way.
  case checksum([TableDigest])
}

/// One table's share of a transaction's checksum delta: rows added less rows removed,
/// and the sum of the added rows' digests less the removed ones' (32 bytes, four
/// little-endian 64-bit lanes).
public struct TableDigest: Equatable, Sendable {
  public var table: String
  public var rows: Int64
  public var sum: [UInt8]

  public init(table: String, rows: Int64, sum: [UInt8]) {
    self.table = table
    self.rows = rows
    self.sum = sum
  }
}

public struct PayloadError: Error, CustomStringConvertible {
  public var offset: Int
  public var reason: String
  public var description: String { "commit payload malformed at byte \(offset): \(reason)" }
}

/// Layout: a sequence of items, each `kind u8, length u32, body`.
/// kind 1, DDL: UTF-8 text. kind 2, changes: `u16 table count`, per table `u16 name
/// length, name, u16 column count`, per column `u16 length, name`; then the changeset.
/// kind 3 (format 2), checksum: `u16 table count`, per table `u16 name length, name, i64
/// rows, 32 bytes sum`.
public enum CommitPayload {
  static let ddlKind: UInt8 = 1
  static let changesKind: UInt8 = 2
  static let checksumKind: UInt8 = 3

  public static func encode(_ items: [CommitItem]) -> [UInt8] {
    var out: [UInt8] = []
    for item in items {
      var body: [UInt8] = []
      let kind: UInt8
      switch item {
      case .ddl(let sql):
        kind = ddlKind
        body.append(contentsOf: Array(sql.utf8))
      case .changes(let changeset, let tables):
        kind = changesKind
        body.appendLE(UInt16(tables.count))
        for t in tables {
          appendString(t.table, to: &body)
          body.appendLE(UInt16(t.columns.count))
          for c in t.columns { appendString(c, to: &body) }
        }
        body.append(contentsOf: changeset)
      case .checksum(let tables):
        kind = checksumKind
        body.appendLE(UInt16(tables.count))
        for t in tables {
          appendString(t.table, to: &body)
          body.appendLE(UInt64(bitPattern: t.rows))
          body.append(contentsOf: t.sum)
        }
      }
      out.append(kind)
      out.appendLE(UInt32(body.count))
      out.append(contentsOf: body)
    }
    return out
  }

  public static func decode(_ bytes: [UInt8]) throws -> [CommitItem] {
    var items: [CommitItem] = []
    var o = 0
    func need(_ n: Int, _ what: String) throws {
      guard o + n <= bytes.count else {
        throw PayloadError(offset: o, reason: "\(what) needs \(n) bytes, \(bytes.count - o) remain")
      }
    }
    func string(_ what: String) throws -> String {
      try need(2, what + " length")
      let n = Int(bytes.readLE(UInt16.self, at: o))
      o += 2
      try need(n, what)
      defer { o += n }
      guard let s = String(validating: bytes[o..<(o + n)], as: UTF8.self) else {
        throw PayloadError(offset: o, reason: "\(what) is not UTF-8")
      }
      return s
    }
    while o < bytes.count {
      try need(5, "item header")
      let kind = bytes[o]
      let length = Int(bytes.readLE(UInt32.self, at: o + 1))
      o += 5
      try need(length, "item body")
      let end = o + length
      switch kind {
      case ddlKind:
        guard let sql = String(validating: bytes[o..<end], as: UTF8.self) else {
          throw PayloadError(offset: o, reason: "DDL text is not UTF-8")
        }
        items.append(.ddl(sql))
      case changesKind:
        try need(2, "table count")
        let count = Int(bytes.readLE(UInt16.self, at: o))
        o += 2
        var tables: [TableColumns] = []
        for _ in 0..<count {
          let name = try string("table name")
          try need(2, "column count")
          let columns = Int(bytes.readLE(UInt16.self, at: o))
          o += 2
          var names: [String] = []
          for _ in 0..<columns { names.append(try string("column name")) }
          tables.append(TableColumns(table: name, columns: names))
        }
        guard o <= end else { throw PayloadError(offset: o, reason: "table list runs past its item") }
        items.append(.changes(changeset: Array(bytes[o..<end]), tables: tables))
      case checksumKind:
        try need(2, "table count")
        let count = Int(bytes.readLE(UInt16.self, at: o))
        o += 2
        var tables: [TableDigest] = []
        for _ in 0..<count {
          let name = try string("table name")
          try need(40, "rows and sum")
          let rows = Int64(bitPattern: bytes.readLE(UInt64.self, at: o))
          tables.append(TableDigest(table: name, rows: rows, sum: Array(bytes[(o + 8)..<(o + 40)])))
          o += 40
        }
        guard o == end else {
          throw PayloadError(offset: o, reason: "checksum item does not end where its length says")
        }
        items.append(.checksum(tables))
      default:
        throw PayloadError(offset: o - 5, reason: "unknown item kind \(kind)")
      }
      o = end
    }
    return items
  }

  private static func appendString(_ s: String, to out: inout [UInt8]) {
    let utf8 = Array(s.utf8)
    out.appendLE(UInt16(utf8.count))
    out.append(contentsOf: utf8)
  }
}
