// Undoing committed transactions on the old primary, newest first: each row change by
// its inverted changeset (a conflict means the database is not what the MAT says, and
// aborts everything), each DDL statement by its opposite where one exists.

import AuditTrail
import Foundation
import Primary
import SQLiteSupport

public enum UndoError: Error, CustomStringConvertible {
  case ddl(sql: String, txid: TransactionID, position: MATPosition, reason: String)
  case conflict(txid: TransactionID, position: MATPosition, reason: String)

  public var description: String {
    switch self {
    case .ddl(let sql, let txid, let position, let reason):
      "cannot undo `\(sql)` of transaction \(txid) at \(position): \(reason). Nothing was changed; make this node a backup with `understudy follow --full-copy` instead"
    case .conflict(let txid, let position, let reason):
      "undoing transaction \(txid) at \(position) conflicts with the database: \(reason). Nothing was changed; the database is not what its MAT says, so make it a backup with `understudy follow --full-copy`"
    }
  }
}

enum Undo {
  /// Undoes `records` (oldest first as in the MAT) newest first, inside the caller's transaction.
  static func undo(_ records: [PositionedRecord], on db: Connection) throws {
    try db.withTriggersDisabled {
      for record in records.reversed() where record.record.type == .commit {
        let items = try CommitPayload.decode(record.record.payload)
        // The transaction's sequences go back once its rows have: re-inserting a row it
        // deleted raises the sequence again.
        var sequences: [String] = []
        for item in items.reversed() {
          switch item {
          case .ddl(let sql) where SequenceItem.isItem(sql):
            guard let undo = SequenceItem.undo(of: sql) else {
              throw UndoError.ddl(
                sql: sql, txid: record.record.txid, position: record.position, reason: "its undo part is missing")
            }
            sequences.append(undo)
          case .checksum: continue  // the forward delta; undoing moves the checksum back by the rows undone
          case .changes(let changeset, _):
            do {
              try Changeset.apply(try Changeset.invert(changeset), to: db)
            } catch {
              throw UndoError.conflict(txid: record.record.txid, position: record.position, reason: "\(error)")
            }
          case .ddl(let sql):
            let opposite = try opposite(of: sql, txid: record.record.txid, position: record.position)
            do {
              try db.execute(opposite)
            } catch {
              throw UndoError.ddl(
                sql: sql, txid: record.record.txid, position: record.position, reason: "`\(opposite)` failed: \(error)")
            }
          }
        }
        for sql in sequences {
          do {
            try db.execute(sql)
          } catch {
            throw UndoError.conflict(
              txid: record.record.txid, position: record.position, reason: "restoring sqlite_sequence: \(error)")
          }
        }
      }
    }
  }

  /// The statement that reverses `sql`, for the DDL whose reversal needs no lost data.
  static func opposite(of sql: String, txid: TransactionID, position: MATPosition) throws -> String {
    func refuse(_ reason: String) -> UndoError { .ddl(sql: sql, txid: txid, position: position, reason: reason) }
    let t = SQLTokens(sql)
    var i = 0
    func word(_ w: String) -> Bool {
      if i < t.count, t.upper(i) == w {
        i += 1
        return true
      }
      return false
    }
    if word("CREATE") {
      _ = word("TEMP") || word("TEMPORARY") || word("UNIQUE")
      let kinds = ["TABLE", "INDEX", "VIEW", "TRIGGER"]
      guard i < t.count, let kind = kinds.first(where: { t.upper(i) == $0 }) else {
        throw refuse("only CREATE TABLE, INDEX, VIEW and TRIGGER can be undone")
      }
      i += 1
      if word("IF") {
        throw refuse(
          "CREATE … IF NOT EXISTS may not have created anything, so dropping could destroy what was there before")
      }
      guard let name = t.qualifiedName(at: &i) else { throw refuse("cannot find the name it creates") }
      return "DROP \(kind) \(name)"
    }
    if word("ALTER"), word("TABLE"), let table = t.qualifiedName(at: &i) {
      if word("ADD") {
        _ = word("COLUMN")
        guard i < t.count else { throw refuse("cannot find the column it adds") }
        return "ALTER TABLE \(table) DROP COLUMN \(t.raw(i))"
      }
      if word("RENAME") {
        if word("TO") {
          guard i < t.count else { throw refuse("cannot find the new name") }
          let schema = table.contains(".") ? String(table[..<table.firstIndex(of: ".")!]) + "." : ""
          return "ALTER TABLE \(schema)\(t.raw(i)) RENAME TO \(table.split(separator: ".").last!)"
        }
        _ = word("COLUMN")
        guard i + 2 < t.count, t.upper(i + 1) == "TO" else { throw refuse("cannot read the columns it renames") }
        return "ALTER TABLE \(table) RENAME COLUMN \(t.raw(i + 2)) TO \(t.raw(i))"
      }
      throw refuse("dropping a column loses its values, which the MAT does not hold")
    }
    throw refuse("a DROP loses what it dropped, which the MAT does not hold")
  }
}

/// Just enough of SQL's lexical rules to read the head of a DDL statement: words,
/// quoted identifiers ("x", `x`, [x], 'x') and punctuation, comments skipped.
struct SQLTokens {
  private var tokens: [String] = []

  init(_ sql: String) {
    let c = Array(sql)
    var i = 0
    while i < c.count {
      let ch = c[i]
      if ch.isWhitespace {
        i += 1
      } else if ch == "-", i + 1 < c.count, c[i + 1] == "-" {
        while i < c.count, c[i] != "\n" { i += 1 }
      } else if ch == "/", i + 1 < c.count, c[i + 1] == "*" {
        i += 2
        while i + 1 < c.count, !(c[i] == "*" && c[i + 1] == "/") { i += 1 }
        i += 2
      } else if let close = ["\"": "\"", "`": "`", "[": "]", "'": "'"][String(ch)] {
        var j = i + 1
        while j < c.count {
          if String(c[j]) == close {
            if close != "]", j + 1 < c.count, String(c[j + 1]) == close {
              j += 2
              continue
            }
            break
          }
          j += 1
        }
        tokens.append(String(c[i...min(j, c.count - 1)]))
        i = j + 1
      } else if ch.isLetter || ch.isNumber || ch == "_" || ch == "$" {
        var j = i
        while j < c.count, c[j].isLetter || c[j].isNumber || c[j] == "_" || c[j] == "$" { j += 1 }
        tokens.append(String(c[i..<j]))
        i = j
      } else {
        tokens.append(String(ch))
        i += 1
      }
    }
  }

  var count: Int { tokens.count }
  func raw(_ i: Int) -> String { tokens[i] }
  func upper(_ i: Int) -> String { tokens[i].uppercased() }

  /// `name` or `schema.name`, as written.
  func qualifiedName(at i: inout Int) -> String? {
    guard i < count, tokens[i] != "(" else { return nil }
    var name = tokens[i]
    i += 1
    if i + 1 < count, tokens[i] == "." {
      name += "." + tokens[i + 1]
      i += 2
    }
    return name
  }
}
