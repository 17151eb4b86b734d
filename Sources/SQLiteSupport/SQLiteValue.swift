// A SQLite value as Swift sees it, and the error every SQLite call turns into.

import CUnderstudySQLite
import Foundation

public enum SQLiteValue: Hashable, Sendable, CustomStringConvertible {
  case null
  case integer(Int64)
  case real(Double)
  case text(String)
  case blob([UInt8])

  public var description: String {
    switch self {
    case .null: "NULL"
    case .integer(let v): String(v)
    case .real(let v): String(v)
    case .text(let s): "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
    case .blob(let b): "X'" + b.map { String(format: "%02X", $0) }.joined() + "'"
    }
  }

  /// Reads a `sqlite3_value` (a column of a changeset or a result).
  init(_ value: OpaquePointer) {
    switch sqlite3_value_type(value) {
    case SQLITE_INTEGER: self = .integer(sqlite3_value_int64(value))
    case SQLITE_FLOAT: self = .real(sqlite3_value_double(value))
    case SQLITE_TEXT:
      let n = Int(sqlite3_value_bytes(value))
      if let p = sqlite3_value_text(value) {
        self = .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
      } else {
        self = .text("")
      }
    case SQLITE_BLOB:
      let n = Int(sqlite3_value_bytes(value))
      if let p = sqlite3_value_blob(value), n > 0 {
        self = .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
      } else {
        self = .blob([])
      }
    default: self = .null
    }
  }
}

/// A failed SQLite call: the result code, SQLite's own message, and what we were doing.
public struct SQLiteError: Error, CustomStringConvertible {
  public var code: Int32
  public var message: String
  public var context: String

  public init(code: Int32, message: String, context: String) {
    self.code = code
    self.message = message
    self.context = context
  }

  public var description: String { "\(context): \(message) (SQLite code \(code))" }

  public var isBusy: Bool { code & 0xFF == SQLITE_BUSY || code & 0xFF == SQLITE_LOCKED }

  /// The database could not be written right now, whatever was being written: a full
  /// disk, an I/O error, no memory, a lock held elsewhere, a file that cannot be opened.
  /// SQLite's words for the code ("database or disk is full"); the message may not say it.
  public var meaning: String { String(cString: sqlite3_errstr(code)) }

  public var isResourceFailure: Bool {
    [SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN].contains(code & 0xFF)
  }
}

/// `"name"` with embedded quotes doubled: safe to splice into SQL.
public func quoteIdentifier(_ name: String) -> String {
  "\"" + name.replacing("\"", with: "\"\"") + "\""
}
