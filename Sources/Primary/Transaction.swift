// One audited transaction as the application sees it. Statements run on the writer's
// connection; row changes are captured by a session, and each DDL statement closes the
// current changeset so that the commit record keeps DDL and changes in execution order.

import AuditTrail
import Node
import SQLiteSupport

public final class Transaction {
  let connection: Connection
  let policy: StatementPolicy
  let schema: SchemaCache
  private(set) var items: [CommitItem] = []
  private var session: Session?

  init(connection: Connection, policy: StatementPolicy, schema: SchemaCache) {
    self.connection = connection
    self.policy = policy
    self.schema = schema
  }

  /// Runs one statement with `arguments`, or several separated by `;` without arguments.
  public func execute(_ sql: String, _ arguments: [SQLiteValue] = []) throws {
    if !arguments.isEmpty, let verdict = try policy.verdict(for: sql, on: connection), !verdict.isDDL {
      // The hot path: a parameterised write, prepared once and judged once.
      if let refusal = verdict.refusal { throw PrimaryError.statementRefused(statement: sql, reason: refusal) }
      try run(try connection.cached(sql), arguments: arguments, writing: verdict.writtenTables)
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
      if policy.isDDL {
        try flushSession()
        try AddedColumnDefaults.executeDDL(on: connection) { try statement.run() }
        items.append(.ddl(statement.sql))
        schema.invalidate()
      } else {
        try run(statement, arguments: nil, writing: policy.writtenTables)
      }
    }
    if count == 0 { throw PrimaryError.emptySQL }
  }

  /// Runs a judged, non-DDL statement under the session.
  private func run(_ statement: Statement, arguments: [SQLiteValue]?, writing tables: Set<String>) throws {
    for table in tables where try !schema.table(table).hasPrimaryKey {
      throw PrimaryError.noPrimaryKey(table: table)
    }
    if let arguments { try statement.bind(arguments) }
    if !statement.isReadOnly && session == nil {
      session = try Session(connection: connection, accept: ObjectNames.isUser)
    }
    defer { statement.reset() }
    try statement.run()
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
    if let statement, let refusal = policy.refusal {
      throw PrimaryError.statementRefused(statement: statement.sql, reason: refusal)
    }
    return statement
  }

  /// Closes the current changeset into an item, with its tables' column names.
  private func flushSession() throws {
    guard let current = session else { return }
    session = nil
    let changeset = try current.changeset()
    var tables: [TableColumns] = []
    for name in current.touchedTables where !tables.contains(where: { $0.table == name }) {
      let table = try schema.table(name)
      guard table.hasPrimaryKey else { throw PrimaryError.noPrimaryKey(table: name) }
      for n in [name] + table.columns where n.utf8.count > Int(UInt16.max) { throw PrimaryError.nameTooLong(n) }
      tables.append(TableColumns(table: name, columns: table.columns))
    }
    if !changeset.isEmpty { items.append(.changes(changeset: changeset, tables: tables)) }
  }

  /// The transaction's items, in order; empty if it changed nothing.
  func finish() throws -> [CommitItem] {
    try flushSession()
    return items
  }
}
