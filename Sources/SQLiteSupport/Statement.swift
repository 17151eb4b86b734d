// A prepared statement: bind, step, read columns. Finalized when released.

import CUnderstudySQLite

public final class Statement {
  let handle: OpaquePointer
  // Strong: a statement keeps its connection open (sqlite3_close_v2 would wait anyway).
  let connection: Connection

  /// False for a connection's cached statements, which the connection finalizes.
  let owned: Bool

  init(_ handle: OpaquePointer, connection: Connection, owned: Bool = true) {
    self.handle = handle
    self.connection = connection
    self.owned = owned
  }

  deinit {
    if owned { sqlite3_finalize(handle) } else { sqlite3_reset(handle) }
  }

  /// The statement's text as written (for DDL, what a replica replays).
  public var sql: String { String(cString: sqlite3_sql(handle)) }
  public var isReadOnly: Bool { sqlite3_stmt_readonly(handle) != 0 }
  public var parameterCount: Int { Int(sqlite3_bind_parameter_count(handle)) }
  public var columnCount: Int { Int(sqlite3_column_count(handle)) }

  public func columnName(_ i: Int) -> String { String(cString: sqlite3_column_name(handle, Int32(i))) }

  public func bind(_ arguments: [SQLiteValue]) throws {
    guard arguments.count == parameterCount else {
      throw SQLiteError(
        code: SQLITE_RANGE,
        message: "the statement has \(parameterCount) parameters, \(arguments.count) arguments were given",
        context: "bind \(sql)")
    }
    for (i, value) in arguments.enumerated() {
      let index = Int32(i + 1)
      let rc: Int32
      switch value {
      case .null: rc = sqlite3_bind_null(handle, index)
      case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
      case .real(let v): rc = sqlite3_bind_double(handle, index, v)
      case .text(let s): rc = sqlite3_bind_text(handle, index, s, -1, understudy_sqlite_transient())
      case .blob(let b):
        rc = b.withUnsafeBytes {
          sqlite3_bind_blob64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), understudy_sqlite_transient())
        }
      }
      try connection.check(rc, "bind argument \(i + 1) of \(sql)")
    }
  }

  /// Steps once; true when a row is ready.
  public func step() throws -> Bool {
    let rc = sqlite3_step(handle)
    if rc == SQLITE_ROW { return true }
    if rc == SQLITE_DONE { return false }
    throw connection.error(rc, "run \(sql)")
  }

  /// Runs to completion, discarding rows.
  public func run() throws {
    while try step() {}
  }

  public func rows() throws -> [[SQLiteValue]] {
    var out: [[SQLiteValue]] = []
    while try step() { out.append(row()) }
    return out
  }

  public func row() -> [SQLiteValue] {
    (0..<columnCount).map { column($0) }
  }

  public func column(_ i: Int) -> SQLiteValue {
    let i32 = Int32(i)
    switch sqlite3_column_type(handle, i32) {
    case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, i32))
    case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, i32))
    case SQLITE_TEXT:
      let n = Int(sqlite3_column_bytes(handle, i32))
      guard let p = sqlite3_column_text(handle, i32) else { return .text("") }
      return .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
    case SQLITE_BLOB:
      let n = Int(sqlite3_column_bytes(handle, i32))
      guard let p = sqlite3_column_blob(handle, i32), n > 0 else { return .blob([]) }
      return .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
    default: return .null
    }
  }

  public func reset() {
    sqlite3_reset(handle)
    sqlite3_clear_bindings(handle)
  }
}
