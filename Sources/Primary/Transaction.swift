// One audited transaction as the application sees it. Statements run on the writer's
// connection; row changes are captured by the writer's ChangeCapture, and each DDL
// statement closes the current changeset so that the commit record keeps DDL and
// changes in execution order.

import Apply
import AuditTrail
import CUnderstudySQLite
import Node
import SQLiteSupport

public final class Transaction {
  let connection: Connection
  let policy: StatementPolicy
  let schema: SchemaCache
  let capture: ChangeCapture
  private(set) var items: [CommitItem] = []
  /// What the transaction did to the database checksum (IncrementalChecksum).
  private(set) var checksumDelta = ChecksumDelta()
  /// sqlite_sequence as it was before the first statement since the last flush that
  /// could move it; nil if none could.
  private var sequenceBefore: SequenceItem.Rows?
  /// `PRAGMA foreign_keys = ON` ran in this transaction.
  private var foreignKeysOn = false

  init(connection: Connection, policy: StatementPolicy, schema: SchemaCache, capture: ChangeCapture) {
    self.connection = connection
    self.policy = policy
    self.schema = schema
    self.capture = capture
    // Whatever a transaction before this one left (it may have failed before finish()).
    try? setForeignKeys(false)
  }

  /// Foreign-key enforcement on the writer's connection. PRAGMA foreign_keys is a no-op
  /// inside a transaction, and every audited transaction is inside one; the connection
  /// flag is what it would set.
  private func setForeignKeys(_ on: Bool) throws {
    var now: Int32 = 0
    try connection.check(
      understudy_db_config_read(connection.handle, SQLITE_DBCONFIG_ENABLE_FKEY, &now), "read foreign_keys")
    guard (now != 0) != on else { return }
    try connection.check(
      understudy_db_config_int(connection.handle, SQLITE_DBCONFIG_ENABLE_FKEY, on ? 1 : 0), "set foreign_keys=\(on)")
  }

  /// Runs one statement with `arguments`, or several separated by `;` without arguments.
  public func execute(_ sql: String, _ arguments: [SQLiteValue] = []) throws {
    // SQLite rolled the whole transaction back (OR ROLLBACK, a full disk) and the body
    // went on: a statement now would commit on its own, before any MAT record.
    guard !connection.isAutocommit else { throw PrimaryError.transactionRolledBack }
    if !arguments.isEmpty, let verdict = try policy.verdict(for: sql, on: connection), !verdict.isDDL {
      // The hot path: a parameterised write, prepared once and judged once.
      if let refusal = verdict.refusal { throw PrimaryError.statementRefused(statement: sql, reason: refusal) }
      try run(
        try connection.cached(sql), arguments: arguments, writing: verdict.writtenTables,
        writesSequence: verdict.writesSequence)
      return
    }
    var statements = connection.statements(sql).makeIterator()
    var count = 0
    while let statement = try nextStatement(&statements) {
      count += 1
      if count > 1 && !arguments.isEmpty {
        throw PrimaryError.statementRefused(
          statement: statement.sql, reason: "arguments can be given only with a single statement")
      }
      try statement.bind(arguments)
      if let on = policy.foreignKeys {
        try setForeignKeys(on)
        if on { foreignKeysOn = true }
      } else if policy.isDDL {
        try flushChanges()
        // Storing added columns' defaults is not the transaction's change: the replayer does it too.
        capture.isRecording = false
        defer { capture.isRecording = true }
        let version = try connection.scalarInt("PRAGMA schema_version")
        try AddedColumnDefaults.executeDDL(on: connection) { try statement.run() }
        schema.invalidate()
        try refuseGeneratedColumns(in: policy.definedTables)
        // Only DDL that changed something (not CREATE TABLE IF NOT EXISTS of one that
        // exists, as an application runs at every start) is recorded and makes every node
        // recompute its checksum: replaying it would change nothing, and undoing it (a
        // restore to before the application's restart) could not know it created nothing.
        if try connection.scalarInt("PRAGMA schema_version") != version {
          checksumDelta.schemaChanged = true
          items.append(.ddl(statement.sql))
        }
      } else {
        try run(statement, arguments: nil, writing: policy.writtenTables, writesSequence: policy.writesSequence)
      }
    }
    if count == 0 { throw PrimaryError.emptySQL }
  }

  /// Runs a judged, non-DDL statement, its row changes captured.
  private func run(
    _ statement: Statement, arguments: [SQLiteValue]?, writing tables: Set<String>, writesSequence: Bool
  ) throws {
    var movesSequence = writesSequence
    for table in tables {
      let t = try schema.table(table)
      if !t.hasPrimaryKey { throw PrimaryError.noPrimaryKey(table: table) }
      movesSequence = movesSequence || t.autoincrement
    }
    if movesSequence && sequenceBefore == nil { sequenceBefore = try SequenceItem.read(connection) }
    if let arguments { try statement.bind(arguments) }
    defer { statement.reset() }
    let mark = capture.count
    do {
      try statement.run()
    } catch {
      // The body may catch this and go on: the log must hold what SQLite kept.
      if capture.count > mark { try capture.reconcile(since: mark) { try schema.table($0).shape } }
      throw error
    }
  }

  /// Reads inside the transaction (it sees the transaction's own changes).
  public func query(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> [[SQLiteValue]] {
    var statements = connection.statements(sql).makeIterator()
    guard let statement = try nextStatement(&statements) else { throw PrimaryError.emptySQL }
    guard statement.isReadOnly else { throw PrimaryError.notReadOnly(statement: statement.sql) }
    try statement.bind(arguments)
    return try statement.rows()
  }

  /// Prepares the next statement under the policy and refuses it before it runs.
  private func nextStatement(_ it: inout StatementSequence.Iterator) throws -> Statement? {
    policy.reset()
    policy.active = true
    let statement: Statement?
    do {
      defer { policy.active = false }
      statement = try it.nextStatement()
    }
    if let statement, let refusal = policy.refusal ?? StatementPolicy.refusal(byKeyword: statement.sql) {
      throw PrimaryError.statementRefused(statement: statement.sql, reason: refusal)
    }
    return statement
  }

  /// A table that a CREATE or ALTER TABLE has just defined with a generated column.
  private func refuseGeneratedColumns(in tables: [String]) throws {
    for table in tables {
      let generated = try connection.query(
        "SELECT name FROM pragma_table_xinfo(?) WHERE hidden IN (2, 3) ORDER BY cid", [.text(table)])
      if case .text(let column) = generated.first?.first {
        throw PrimaryError.generatedColumn(table: table, column: column)
      }
    }
  }

  /// Closes the current changeset into an item, with its tables' column names.
  private func flushChanges() throws {
    defer { sequenceBefore = nil }
    try flushRowChanges()
    // After the rows: replayed, it sets the sequence the inserts moved (see SequenceItem).
    if let before = sequenceBefore,
      let item = SequenceItem.item(before: before, after: try SequenceItem.read(connection))
    {
      items.append(.ddl(item))
      checksumDelta.sequenceMoved = true
    }
  }

  private func flushRowChanges() throws {
    guard !capture.isEmpty else { return }
    var tables: [TableColumns] = []
    for name in capture.touchedTables {
      let table = try schema.table(name)
      guard table.hasPrimaryKey else { throw PrimaryError.noPrimaryKey(table: name) }
      for n in [name] + table.columns where n.utf8.count > Int(UInt16.max) { throw PrimaryError.nameTooLong(n) }
      tables.append(TableColumns(table: name, columns: table.columns))
    }
    try checksumDelta.add(from: capture) { try schema.table($0).shape }
    let changeset = try capture.changeset { try schema.table($0).shape }
    if !changeset.isEmpty { items.append(.changes(changeset: changeset, tables: tables)) }
  }

  /// The transaction's items, in order; empty if it changed nothing.
  func finish() throws -> [CommitItem] {
    if foreignKeysOn {
      // Deferred constraints are checked at COMMIT, which comes after the commit record: check them now.
      var pending: Int32 = 0
      var highwater: Int32 = 0
      try connection.check(
        sqlite3_db_status(connection.handle, SQLITE_DBSTATUS_DEFERRED_FKS, &pending, &highwater, 0),
        "read deferred foreign keys")
      try setForeignKeys(false)
      if pending > 0 { throw PrimaryError.deferredForeignKeys }
    }
    try flushChanges()
    // Format 2: what it did to the checksum, for whoever applies it to check (not after
    // DDL, which recomputes the checksum on every node).
    if !items.isEmpty && !checksumDelta.schemaChanged { items.append(.checksum(checksumDelta.digests)) }
    return items
  }
}
