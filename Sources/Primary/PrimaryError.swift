// Errors of the write path and of recovery, each naming what and where.

import AuditTrail
import SQLiteSupport

public enum PrimaryError: Error, CustomStringConvertible {
  case noPrimaryKey(table: String)
  case statementRefused(statement: String, reason: String)
  case emptySQL
  case notReadOnly(statement: String)
  case databaseAheadOfTrail(database: String, txid: TransactionID, position: MATPosition, trailEnd: MATPosition)
  case databaseDisagreesWithTrail(database: String, position: MATPosition, reason: String)
  case databaseBehindMAT(database: String, reason: String)
  case groupRolledBack(database: String, reason: String)
  case transactionRolledBack
  case closed
  case nameTooLong(String)
  case writesBlocked(node: String, reason: String)
  case noLongerPrimary(node: String, generation: Generation, reason: String)
  case generatedColumn(table: String, column: String)
  case deferredForeignKeys

  public var description: String {
    switch self {
    case .noPrimaryKey(let table):
      "table \(table) has no PRIMARY KEY: the session extension cannot capture its changes, so writes to it cannot be audited or replicated; add a primary key (for example recreate it with `id INTEGER PRIMARY KEY`)"
    case .statementRefused(let statement, let reason):
      "statement refused: \(reason)\n  in: \(statement)"
    case .emptySQL:
      "no SQL statement given"
    case .notReadOnly(let statement):
      "query runs read-only statements only; use `understudy sql` to change data\n  in: \(statement)"
    case .databaseAheadOfTrail(let database, let txid, let position, let trailEnd):
      "\(database) is ahead of its Master Audit Trail: it holds transaction \(txid) committed at \(position), but the trail ends at \(trailEnd). The trail was truncated or replaced; refusing to run (restore the trail, or rebuild the node)"
    case .databaseDisagreesWithTrail(let database, let position, let reason):
      "\(database) disagrees with its Master Audit Trail at \(position): \(reason)"
    case .transactionRolledBack:
      "SQLite rolled this transaction back (a statement with OR ROLLBACK, a full disk or an I/O error); nothing of it is committed, and nothing more runs in it"
    case .groupRolledBack(let database, let reason):
      "not committed: SQLite rolled back the transaction on \(database) that this one shared a group commit with (\(reason)); nothing of it is durable"
    case .databaseBehindMAT(let database, let reason):
      "\(database) cannot take the transactions already committed in the Master Audit Trail (\(reason)); nothing new is written until it can. Free space on its disk: the next write or open applies them"
    case .closed:
      "the database is closed"
    case .nameTooLong(let name):
      "name longer than 65535 bytes: \(name.prefix(40))…"
    case .writesBlocked(let node, let reason):
      "node \(node) does not accept writes: \(reason)"
    case .noLongerPrimary(let node, let generation, let reason):
      "node \(node) is no longer the primary of generation \(generation) that this writer opened: \(reason). Nothing more is committed here; write to the current primary"
    case .generatedColumn(let table, let column):
      "table \(table): column \(column) is a generated column; SQLite 3.40 cannot apply changesets to tables with generated columns, so writes to it could not be replicated. Define \(column) as an ordinary column (or a view over the table)"
    case .deferredForeignKeys:
      "FOREIGN KEY constraint failed: a deferred foreign key is still violated when the transaction ends; nothing was committed"
    }
  }
}
