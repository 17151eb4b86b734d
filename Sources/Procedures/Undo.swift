// Undoing committed transactions on the old primary, newest first: each row change by
// its inverted changeset (a conflict means the database is not what the MAT says, and
// aborts everything), each DDL statement by its opposite where one exists. The inverted
// changesets of consecutive transactions are applied as one, split at DDL, as the
// updater joins them forwards (`Replay.apply`).

import Apply
import AuditTrail
import Foundation
import Primary
import SQLiteSupport

public enum UndoError: Error, CustomStringConvertible {
  case ddl(sql: String, txid: TransactionID, position: MATPosition, reason: String)
  case conflict(txid: TransactionID, position: MATPosition, reason: String)
  /// The rows undone moved the checksum of `table` back by other than the records say
  /// their transactions moved it forward.
  case diverged(table: String, undone: String, recorded: String)

  /// What went wrong, without file recovery's advice: a restore picks another point.
  public var restoreReason: String {
    switch self {
    case .ddl(let sql, let txid, let position, let reason):
      "`\(sql)` of transaction \(txid) at \(position) cannot be undone: \(reason)"
    case .diverged(let table, _, _):
      "the rows of table \(table) are not what the image trail says (changed outside Understudy; `understudy verify` names the tables)"
    case .conflict(let txid, let position, let reason):
      "undoing transaction \(txid) at \(position) conflicts with the database: \(reason)"
    }
  }

  public var description: String {
    switch self {
    case .ddl(let sql, let txid, let position, let reason):
      "cannot undo `\(sql)` of transaction \(txid) at \(position): \(reason). Nothing was changed; make this node a backup with `understudy follow --full-copy` instead"
    case .diverged(let table, let undone, let recorded):
      "undoing the transactions changed rows of table \(table) that differ from what the MAT says they were: their commit records moved the table's checksum by \(recorded), the rows undone here account for \(undone). Nothing was changed; the database was changed outside Understudy (`understudy verify` names the tables), so make it a backup with `understudy follow --full-copy`"
    case .conflict(let txid, let position, let reason):
      "undoing transaction \(txid) at \(position) conflicts with the database: \(reason). Nothing was changed; the database is not what its MAT says, so make it a backup with `understudy follow --full-copy`"
    }
  }
}

enum Undo {
  /// Undoes `records` (oldest first as in the MAT) newest first, inside the caller's transaction.
  ///
  /// `sqlite3changeset_apply` reads the table's columns and compiles its statements on
  /// every call, so the inverses of a run of transactions between DDL items are joined
  /// and applied once: newest transaction first, its changesets last first, each
  /// inverted newest change first (`Changeset.invert`), which is the exact reverse of
  /// the order the primary made them in. A failure of the joined apply names no
  /// transaction, so it is rolled back and the run is undone again change by change, as
  /// one apply per changeset, to say which transaction fails.
  /// `capture`: the connection's change capture when a tracker keeps the checksum; what a
  /// joined run that is rolled back logged is forgotten, so it is counted once.
  static func undo(_ records: [PositionedRecord], on db: Connection, capture: ChangeCapture? = nil) throws {
    try db.withTriggersDisabled {
      var run = Run()
      // What one record says about itself (an inverse that cannot be made, a DDL that
      // cannot be undone) is thrown only once the newer transactions' undo has run: a
      // conflict there is what undoing them one by one would have met first.
      func refuse(_ error: Error) throws -> Never {
        try run.flush(on: db, capture: capture)
        throw error
      }
      for record in records.reversed() where record.record.type == .commit {
        let (txid, position) = (record.record.txid, record.position)
        let items = try CommitPayload.decode(record.record.payload)
        // The transaction's sequences go back once its rows have: re-inserting a row it
        // deleted raises the sequence again. In a joined run they wait for the run's
        // rows and run newest transaction first, so each name ends at the value of the
        // oldest transaction that moved it: the one it had where the run starts.
        var sequences: [String] = []
        for item in items.reversed() {
          switch item {
          case .ddl(let sql) where SequenceItem.isItem(sql):
            guard let undo = SequenceItem.undo(of: sql) else {
              try refuse(UndoError.ddl(sql: sql, txid: txid, position: position, reason: "its undo part is missing"))
            }
            sequences.append(undo)
          case .checksum: continue  // the forward delta; undoing moves the checksum back by the rows undone
          case .changes(let changeset, _):
            do {
              run.add(rows: try Changeset.invert(changeset), txid: txid, position: position)
            } catch {
              try refuse(UndoError.conflict(txid: txid, position: position, reason: "\(error)"))
            }
          case .ddl(let sql):
            // Its opposite runs in order: after every newer change, before every older one.
            try run.flush(on: db, capture: capture)
            let opposite: String
            do {
              opposite = try Self.opposite(of: sql, txid: txid, position: position)
            } catch {
              try refuse(error)
            }
            do {
              try db.execute(opposite)
            } catch let error as SQLiteError where db.isAutocommit || error.isResourceFailure {
              throw error
            } catch {
              throw UndoError.ddl(sql: sql, txid: txid, position: position, reason: "`\(opposite)` failed: \(error)")
            }
          }
        }
        run.add(sequences: sequences, txid: txid, position: position)
        if run.joined.count >= Run.flushBytes { try run.flush(on: db, capture: capture) }
      }
      try run.flush(on: db, capture: capture)
    }
  }

  /// The undo of consecutive transactions between DDL items, newest first: their
  /// inverted changesets joined into one buffer, and where each one's part lies in it.
  struct Run {
    /// A run this large is applied before the next transaction joins it, which bounds
    /// the memory the joined inverse takes beside the records.
    static let flushBytes = 32 << 20

    enum Step {
      /// The inverse of one changeset item: a range of `joined`.
      case rows(Range<Int>)
      /// A transaction's sqlite_sequence undo, after all its other items.
      case sequences([String])
    }

    var joined: [UInt8] = []
    private(set) var steps: [(step: Step, txid: TransactionID, position: MATPosition)] = []
    private var transactions = 0

    mutating func add(rows inverse: [UInt8], txid: TransactionID, position: MATPosition) {
      guard !inverse.isEmpty else { return }
      note(txid)
      steps.append((.rows(joined.count..<joined.count + inverse.count), txid, position))
      joined += inverse
    }

    mutating func add(sequences: [String], txid: TransactionID, position: MATPosition) {
      guard !sequences.isEmpty else { return }
      note(txid)
      steps.append((.sequences(sequences), txid, position))
    }

    private mutating func note(_ txid: TransactionID) {
      if steps.last?.txid != txid { transactions += 1 }
    }

    /// Applies the run and empties it. One transaction's undo runs step by step as it
    /// always did; several are joined in a savepoint and, if that fails, undone again
    /// step by step so the error names the transaction (`UndoError.conflict`).
    mutating func flush(on db: Connection, capture: ChangeCapture? = nil) throws {
      defer {
        joined.removeAll(keepingCapacity: true)
        steps.removeAll(keepingCapacity: true)
        transactions = 0
      }
      guard transactions > 1 else { return try stepByStep(on: db) }
      let mark = capture?.count
      try db.execute("SAVEPOINT understudy_undo")
      do {
        try Changeset.apply(joined, to: db)
        for case (.sequences(let statements), _, _) in steps {
          for sql in statements { try db.execute(sql) }
        }
        if Failpoint.isArmed("joined-apply-fails") { throw Failpoint.Triggered("joined-apply-fails") }
        try db.execute("RELEASE understudy_undo")
      } catch {
        // A full disk or an I/O error is not the joining's fault, and SQLite may have rolled
        // back the caller's whole transaction, savepoint and all: hand it up as it is.
        if db.isAutocommit { throw error }
        if let sqlite = error as? SQLiteError, sqlite.isResourceFailure {
          try? db.execute("ROLLBACK TO understudy_undo")
          throw error
        }
        try db.execute("ROLLBACK TO understudy_undo")
        try db.execute("RELEASE understudy_undo")
        if let mark { capture?.forget(since: mark) }
        try stepByStep(on: db)
      }
    }

    /// The run as undo ran before joining: one apply per changeset item, each
    /// transaction's sequences after its rows, the first failure naming its transaction.
    private func stepByStep(on db: Connection) throws {
      for (step, txid, position) in steps {
        do {
          switch step {
          case .rows(let range): try Changeset.apply(Array(joined[range]), to: db)
          case .sequences(let statements): for sql in statements { try db.execute(sql) }
          }
        } catch let error as SQLiteError where db.isAutocommit || error.isResourceFailure {
          throw error  // the database could not be written (a full disk): not this transaction's fault
        } catch {
          let part = if case .sequences = step { "restoring sqlite_sequence: " } else { "" }
          throw UndoError.conflict(txid: txid, position: position, reason: part + "\(error)")
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
