// A commit record made readable: its DDL and row changes with table, key, old and new
// values by column name. Used by `trail dump` (and later by the lost-transactions report).

import AuditTrail
import Node
import SQLiteSupport

public struct DecodedTransaction: Sendable {
  public enum Item: Sendable {
    case ddl(String)
    case change(DecodedChange)
    /// Format 2: what the transaction did to the primary's checksum, per table.
    case checksum([TableDigest])
  }

  public var position: MATPosition
  public var end: MATPosition
  public var type: RecordType
  public var txid: TransactionID
  public var commitMicros: Int64
  public var generation: Generation
  public var items: [Item]

  public init(_ r: PositionedRecord) throws {
    position = r.position
    end = r.end
    type = r.record.type
    txid = r.record.txid
    commitMicros = r.record.commitMicros
    generation = r.generation
    items = []
    guard type == .commit else { return }
    for item in try CommitPayload.decode(r.record.payload) {
      switch item {
      case .ddl(let sql): items.append(.ddl(sql))
      case .changes(let changeset, let tables):
        for change in try Changeset.changes(changeset) {
          let columns = tables.first(where: { $0.table == change.table })?.columns ?? []
          items.append(.change(DecodedChange(change, columns: columns)))
        }
      case .checksum(let tables): items.append(.checksum(tables))
      }
    }
  }

  public var json: JSON {
    .object([
      ("position", position.json), ("end", end.json), ("type", .string(type.description)),
      ("txid", .int(Int64(txid.rawValue))), ("generation", .int(Int64(generation.rawValue))),
      ("commitTime", .string(isoTime(micros: commitMicros))), ("commitMicros", .int(commitMicros)),
      (
        "items",
        .array(
          items.map {
            switch $0 {
            case .ddl(let sql): .object([("kind", .string("ddl")), ("sql", .string(sql))])
            case .change(let c): c.json
            case .checksum(let tables):
              .object([
                ("kind", .string("checksum")),
                (
                  "tables",
                  .array(
                    tables.map {
                      .object([
                        ("table", .string($0.table)), ("rows", .int($0.rows)),
                        ("sum", .string(SetChecksum(bytes: $0.sum)?.description ?? "")),
                      ])
                    })
                ),
              ])
            }
          })
      ),
    ])
  }
}

/// One row change with column names (`c0`, `c1`, … if the record did not name them).
public struct DecodedChange: Sendable {
  public var table: String
  public var operation: RowChange.Operation
  public var key: [(String, SQLiteValue)]
  /// Columns the change carries; nil for an insert's old or a delete's new image.
  public var old: [(String, SQLiteValue)]?
  public var new: [(String, SQLiteValue)]?

  init(_ change: RowChange, columns: [String]) {
    func name(_ i: Int) -> String { i < columns.count ? columns[i] : "c\(i)" }
    func image(_ values: [SQLiteValue?]) -> [(String, SQLiteValue)] {
      values.enumerated().compactMap { i, v in v.map { (name(i), $0) } }
    }
    table = change.table
    operation = change.operation
    let keyImage = change.operation == .insert ? change.new : change.old
    key = change.primaryKey.enumerated().compactMap { i, isKey in isKey ? (name(i), keyImage[i] ?? .null) : nil }
    old = change.operation == .insert ? nil : image(change.old)
    new = change.operation == .delete ? nil : image(change.new)
  }

  public var json: JSON {
    func object(_ pairs: [(String, SQLiteValue)]?) -> JSON {
      pairs.map { .object($0.map { ($0.0, $0.1.json) }) } ?? .null
    }
    return .object([
      ("kind", .string("change")), ("table", .string(table)), ("op", .string(operation.rawValue)),
      ("key", object(key)), ("old", object(old)), ("new", object(new)),
    ])
  }

  public var text: String {
    func list(_ pairs: [(String, SQLiteValue)]) -> String {
      pairs.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")
    }
    var s = "\(operation.rawValue) \(table) (\(list(key)))"
    if let old, operation == .update { s += "  old: \(list(old))" }
    if let new { s += "  new: \(list(new))" }
    if let old, operation == .delete { s += "  old: \(list(old))" }
    return s
  }
}
