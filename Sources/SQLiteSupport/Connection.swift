// One SQLite connection and its statements. A connection has one owner at a time
// (a thread or a serial writer); nothing here locks.

import CUnderstudySQLite
import Foundation

public final class Connection: @unchecked Sendable {
  // @unchecked: a connection is confined to one owner at a time by its users
  // (AuditedDatabase's writer thread, or a command's main thread). SQLite itself is
  // built thread-safe, so handing it over between threads is fine.
  public let handle: OpaquePointer
  public let path: String
  private var authorizerBox: Unmanaged<AuthorizerBox>?

  public enum Mode { case readWrite, readOnly, readWriteCreate }

  public init(path: String, mode: Mode = .readWrite) throws {
    var db: OpaquePointer?
    let flags: Int32 =
      switch mode {
      case .readOnly: SQLITE_OPEN_READONLY
      case .readWrite: SQLITE_OPEN_READWRITE
      case .readWriteCreate: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
      }
    let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
    guard rc == SQLITE_OK, let db else {
      let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
      if let db { sqlite3_close_v2(db) }
      throw SQLiteError(code: rc, message: message, context: "open database \(path)")
    }
    handle = db
    self.path = path
    sqlite3_extended_result_codes(db, 1)
    // Another connection may hold the lock for a moment (closing a WAL database
    // checkpoints it); wait rather than fail at once.
    sqlite3_busy_timeout(db, 10_000)
  }

  deinit {
    clearCache()
    authorizerBox?.release()
    sqlite3_close_v2(handle)
  }

  func error(_ rc: Int32, _ context: String) -> SQLiteError {
    SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
  }

  public func check(_ rc: Int32, _ context: @autoclosure () -> String) throws {
    guard rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error(rc, context()) }
  }

  /// Runs one or more statements without arguments.
  public func execute(_ sql: String) throws {
    var it = statements(sql).makeIterator()
    while let statement = try it.nextStatement() { try statement.run() }
  }

  /// Runs one statement with arguments and returns its rows.
  @discardableResult
  public func query(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> [[SQLiteValue]] {
    let statement = try prepare(sql)
    try statement.bind(arguments)
    return try statement.rows()
  }

  public func prepare(_ sql: String) throws -> Statement {
    var stmt: OpaquePointer?
    try check(sqlite3_prepare_v2(handle, sql, -1, &stmt, nil), "prepare \(sql)")
    guard let stmt else { throw SQLiteError(code: SQLITE_MISUSE, message: "no statement", context: "prepare \(sql)") }
    return Statement(stmt, connection: self)
  }

  /// Splits `sql` into its statements, preparing each only when the one before it has
  /// been handed out, so that a CREATE TABLE can be used by the statement after it.
  public func statements(_ sql: String) -> StatementSequence { StatementSequence(connection: self, sql: sql) }

  // MARK: - Statement cache

  /// Raw handles, finalized by this connection (a Statement object here would retain
  /// its connection and never let it close).
  private var cache: [String: OpaquePointer] = [:]

  /// A prepared statement kept for reuse, reset and unbound; for statements run often
  /// (the writer's own bookkeeping, an application's parameterised writes).
  public func cached(_ sql: String) throws -> Statement {
    if let handle = cache[sql] {
      let statement = Statement(handle, connection: self, owned: false)
      statement.reset()
      return statement
    }
    if cache.count >= 128 { clearCache() }
    var stmt: OpaquePointer?
    var tail: UnsafePointer<CChar>?
    let utf8 = Array(sql.utf8CString)
    let rc = utf8.withUnsafeBufferPointer { buffer -> Int32 in
      let rc = sqlite3_prepare_v3(
        handle, buffer.baseAddress, Int32(buffer.count - 1), UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, &tail)
      let rest = tail.map { String(cString: $0) } ?? ""
      if rc == SQLITE_OK && !rest.allSatisfy({ $0.isWhitespace || $0 == ";" }) {
        sqlite3_finalize(stmt)
        stmt = nil
        return SQLITE_MISUSE
      }
      return rc
    }
    if rc == SQLITE_MISUSE {
      throw SQLiteError(code: rc, message: "expected one statement, found more", context: "prepare \(sql)")
    }
    try check(rc, "prepare \(sql)")
    guard let stmt else { throw SQLiteError(code: SQLITE_MISUSE, message: "no statement", context: "prepare \(sql)") }
    cache[sql] = stmt
    return Statement(stmt, connection: self, owned: false)
  }

  private func clearCache() {
    for handle in cache.values { sqlite3_finalize(handle) }
    cache.removeAll()
  }

  /// Runs a cached statement without arguments (BEGIN, COMMIT, SAVEPOINT …).
  public func run(cached sql: String) throws {
    let statement = try cached(sql)
    defer { statement.reset() }
    try statement.run()
  }

  /// Copies this database, page by page, into a new file at `path` (SQLite's online
  /// backup, in one step: one read transaction, so the copy is one consistent state of
  /// it). In WAL mode a reader blocks no writer, so the other connections go on
  /// committing meanwhile; the copy holds what was committed when it began.
  public func backup(into path: String) throws {
    let destination = try Connection(path: path, mode: .readWriteCreate)
    guard let backup = sqlite3_backup_init(destination.handle, "main", handle, "main") else {
      throw SQLiteError(
        code: sqlite3_errcode(destination.handle), message: String(cString: sqlite3_errmsg(destination.handle)),
        context: "backup of \(self.path) into \(path)")
    }
    let rc = sqlite3_backup_step(backup, -1)
    let finished = sqlite3_backup_finish(backup)
    guard rc == SQLITE_DONE else {
      throw SQLiteError(
        code: rc, message: String(cString: sqlite3_errstr(rc)), context: "backup of \(self.path) into \(path)")
    }
    try destination.check(finished, "backup of \(self.path) into \(path)")
  }

  public var changes: Int { Int(sqlite3_changes(handle)) }
  public var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }

  public func setBusyTimeout(milliseconds: Int32) { sqlite3_busy_timeout(handle, milliseconds) }

  /// Triggers off while replaying changesets: their effects are already in the changeset.
  public func setTriggersEnabled(_ on: Bool) throws {
    try check(
      understudy_db_config_int(handle, SQLITE_DBCONFIG_ENABLE_TRIGGER, on ? 1 : 0), "set triggers enabled=\(on)")
  }

  /// Runs `body` with triggers off, then puts them back as they were: a step that turned
  /// them back on regardless (storing an added column's default in the middle of a
  /// replay) let the rest of the replay fire them and apply their effects twice.
  public func withTriggersDisabled<T>(_ body: () throws -> T) throws -> T {
    var was: Int32 = 0
    try check(understudy_db_config_read(handle, SQLITE_DBCONFIG_ENABLE_TRIGGER, &was), "read triggers enabled")
    try setTriggersEnabled(false)
    defer { try? setTriggersEnabled(was != 0) }
    return try body()
  }

  public func scalarInt(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> Int64? {
    guard let row = try query(sql, arguments).first, case .integer(let v) = row.first else { return nil }
    return v
  }

  // MARK: - Authorizer

  public enum AuthorizerDecision { case allow, deny, ignore }

  /// One authorizer call: SQLite's action code and its up to four string arguments.
  public struct AuthorizerRequest {
    public var action: Int32
    public var argument1: String?
    public var argument2: String?
    public var database: String?
    public var trigger: String?
  }

  final class AuthorizerBox {
    let callback: (AuthorizerRequest) -> AuthorizerDecision
    init(_ callback: @escaping (AuthorizerRequest) -> AuthorizerDecision) { self.callback = callback }
  }

  /// Installs (or with nil removes) a callback consulted while statements are prepared.
  public func setAuthorizer(_ callback: ((AuthorizerRequest) -> AuthorizerDecision)?) {
    authorizerBox?.release()
    authorizerBox = nil
    guard let callback else {
      sqlite3_set_authorizer(handle, nil, nil)
      return
    }
    let box = Unmanaged.passRetained(AuthorizerBox(callback))
    authorizerBox = box
    sqlite3_set_authorizer(
      handle,
      { context, action, a1, a2, db, trigger in
        let box = Unmanaged<AuthorizerBox>.fromOpaque(context!).takeUnretainedValue()
        let request = AuthorizerRequest(
          action: action, argument1: a1.map { String(cString: $0) }, argument2: a2.map { String(cString: $0) },
          database: db.map { String(cString: $0) }, trigger: trigger.map { String(cString: $0) })
        switch box.callback(request) {
        case .allow: return SQLITE_OK
        case .deny: return SQLITE_DENY
        case .ignore: return SQLITE_IGNORE
        }
      }, box.toOpaque())
  }
}

/// The statements of a SQL text, prepared one at a time.
public struct StatementSequence {
  let connection: Connection
  let sql: String

  public func makeIterator() -> Iterator { Iterator(connection: connection, utf8: Array(sql.utf8CString)) }

  public struct Iterator {
    let connection: Connection
    let utf8: [CChar]
    var offset = 0

    /// The next statement, or nil when only whitespace and comments remain.
    public mutating func nextStatement() throws -> Statement? {
      while true {
        guard offset < utf8.count - 1 else { return nil }
        var stmt: OpaquePointer?
        var tailOffset = 0
        let rc = utf8.withUnsafeBufferPointer { buffer -> Int32 in
          let start = buffer.baseAddress! + offset
          var tail: UnsafePointer<CChar>?
          let rc = sqlite3_prepare_v2(connection.handle, start, Int32(utf8.count - 1 - offset), &stmt, &tail)
          tailOffset = tail.map { $0 - buffer.baseAddress! } ?? utf8.count - 1
          return rc
        }
        let text = String(decoding: utf8[offset..<max(offset, tailOffset)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard rc == SQLITE_OK else {
          throw connection.error(rc, "prepare \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        offset = tailOffset
        if let stmt { return Statement(stmt, connection: connection) }
      }
    }
  }
}
