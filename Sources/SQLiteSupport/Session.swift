// The session extension: capture a connection's row changes as a changeset, read a
// changeset row by row, invert it, and apply it stopping at the first conflict.

import CUnderstudySQLite

/// Records the changes made through one connection to the tables its filter accepts.
/// Must be released before its connection (it holds the connection alive).
public final class Session {
  let handle: OpaquePointer
  let connection: Connection
  private let filterBox: Unmanaged<FilterBox>

  final class FilterBox {
    let accept: (String) -> Bool
    var touched: [String] = []
    init(_ accept: @escaping (String) -> Bool) { self.accept = accept }
  }

  /// Attaches to every table of `main` that `accept` allows, as each is first changed.
  public init(connection: Connection, accept: @escaping (String) -> Bool) throws {
    var s: OpaquePointer?
    try connection.check(sqlite3session_create(connection.handle, "main", &s), "create session")
    guard let s else { throw SQLiteError(code: SQLITE_NOMEM, message: "no session", context: "create session") }
    handle = s
    self.connection = connection
    filterBox = Unmanaged.passRetained(FilterBox(accept))
    sqlite3session_table_filter(
      s,
      { context, table in
        let box = Unmanaged<FilterBox>.fromOpaque(context!).takeUnretainedValue()
        let name = String(cString: table!)
        guard box.accept(name) else { return 0 }
        box.touched.append(name)
        return 1
      }, filterBox.toOpaque())
    try connection.check(sqlite3session_attach(s, nil), "attach session")
  }

  deinit {
    sqlite3session_delete(handle)
    filterBox.release()
  }

  /// Tables the filter accepted so far, in the order they were first changed.
  public var touchedTables: [String] { filterBox.takeUnretainedValue().touched }

  public var isEmpty: Bool { sqlite3session_isempty(handle) != 0 }

  public func changeset() throws -> [UInt8] {
    var n: Int32 = 0
    var p: UnsafeMutableRawPointer?
    try connection.check(sqlite3session_changeset(handle, &n, &p), "generate changeset")
    defer { sqlite3_free(p) }
    guard let p, n > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: Int(n)))
  }
}

/// One row change read from a changeset. `old`/`new` hold nil for columns a change
/// does not carry (the unchanged columns of an update).
public struct RowChange: Equatable, Sendable {
  public enum Operation: String, Sendable { case insert, update, delete }
  public var table: String
  public var operation: Operation
  public var primaryKey: [Bool]
  public var old: [SQLiteValue?]
  public var new: [SQLiteValue?]

  /// The primary-key values (from the old image for deletes and updates).
  public var key: [SQLiteValue] {
    let image = operation == .insert ? new : old
    return zip(primaryKey, image).compactMap { $0 ? ($1 ?? .null) : nil }
  }
}

public enum Changeset {
  /// Decodes every change; a malformed changeset is an error, never a partial list.
  public static func changes(_ bytes: [UInt8]) throws -> [RowChange] {
    var out: [RowChange] = []
    try withIterator(bytes) { iterator in
      out.append(read(iterator))
    }
    return out
  }

  static func withIterator(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> Void) throws {
    guard !bytes.isEmpty else { return }
    var bytes = bytes
    try bytes.withUnsafeMutableBytes { buffer in
      var it: OpaquePointer?
      var rc = sqlite3changeset_start(&it, Int32(buffer.count), buffer.baseAddress)
      guard rc == SQLITE_OK, let it else {
        throw SQLiteError(code: rc, message: "cannot read changeset", context: "decode changeset")
      }
      defer { sqlite3changeset_finalize(it) }
      while true {
        rc = sqlite3changeset_next(it)
        if rc != SQLITE_ROW { break }
        try body(it)
      }
      guard rc == SQLITE_DONE else {
        throw SQLiteError(code: rc, message: "changeset is malformed", context: "decode changeset")
      }
    }
  }

  static func read(_ it: OpaquePointer) -> RowChange {
    var table: UnsafePointer<CChar>?
    var columns: Int32 = 0
    var op: Int32 = 0
    var indirect: Int32 = 0
    sqlite3changeset_op(it, &table, &columns, &op, &indirect)
    var pk: UnsafeMutablePointer<UInt8>?
    var pkColumns: Int32 = 0
    sqlite3changeset_pk(it, &pk, &pkColumns)
    let operation: RowChange.Operation =
      switch op {
      case SQLITE_INSERT: .insert
      case SQLITE_DELETE: .delete
      default: .update
      }
    func image(_ get: (OpaquePointer, Int32, UnsafeMutablePointer<OpaquePointer?>) -> Int32) -> [SQLiteValue?] {
      (0..<columns).map { i in
        var v: OpaquePointer?
        guard get(it, i, &v) == SQLITE_OK, let v else { return nil }
        return SQLiteValue(v)
      }
    }
    let none = [SQLiteValue?](repeating: nil, count: Int(columns))
    return RowChange(
      table: table.map { String(cString: $0) } ?? "",
      operation: operation,
      primaryKey: (0..<Int(pkColumns)).map { pk![$0] != 0 },
      old: operation == .insert ? none : image { sqlite3changeset_old($0, $1, $2) },
      new: operation == .delete ? none : image { sqlite3changeset_new($0, $1, $2) })
  }

  /// The changeset that undoes `bytes`: each change inverted, newest first.
  public static func invert(_ bytes: [UInt8]) throws -> [UInt8] {
    try ChangesetFormat.reversed(invertEach(bytes))
  }

  private static func invertEach(_ bytes: [UInt8]) throws -> [UInt8] {
    guard !bytes.isEmpty else { return [] }
    var n: Int32 = 0
    var p: UnsafeMutableRawPointer?
    let rc = bytes.withUnsafeBytes { sqlite3changeset_invert(Int32($0.count), $0.baseAddress, &n, &p) }
    defer { sqlite3_free(p) }
    guard rc == SQLITE_OK else {
      throw SQLiteError(code: rc, message: "cannot invert changeset", context: "invert changeset")
    }
    guard let p, n > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: Int(n)))
  }

  /// A conflict met while applying: the change that could not be applied as recorded.
  public struct Conflict: Error, CustomStringConvertible {
    public var kind: String
    public var change: RowChange
    public var description: String {
      "\(kind) on table \(change.table) key (\(change.key.map(\.description).joined(separator: ", ")))"
    }
  }

  final class ApplyContext {
    var conflict: Conflict?
  }

  /// Applies `bytes` inside the caller's transaction. Any conflict aborts the whole
  /// apply and is thrown: a changeset carries before images, so a mismatch means the
  /// target is not what the source was, and skipping it would hide divergence.
  public static func apply(_ bytes: [UInt8], to connection: Connection) throws {
    guard !bytes.isEmpty else { return }
    let context = ApplyContext()
    let unmanaged = Unmanaged.passRetained(context)
    defer { unmanaged.release() }
    var bytes = bytes
    let rc = bytes.withUnsafeMutableBytes { buffer in
      sqlite3changeset_apply_v2(
        connection.handle, Int32(buffer.count), buffer.baseAddress,
        nil,
        { context, reason, iterator in
          let box = Unmanaged<ApplyContext>.fromOpaque(context!).takeUnretainedValue()
          let kind: String =
            switch reason {
            case SQLITE_CHANGESET_DATA: "row differs from the recorded old values"
            case SQLITE_CHANGESET_NOTFOUND: "row not found"
            case SQLITE_CHANGESET_CONFLICT: "row already exists"
            case SQLITE_CHANGESET_CONSTRAINT: "constraint violation"
            case SQLITE_CHANGESET_FOREIGN_KEY: "foreign key violation"
            default: "conflict \(reason)"
            }
          if box.conflict == nil {
            let change =
              reason == SQLITE_CHANGESET_FOREIGN_KEY
              ? RowChange(table: "", operation: .update, primaryKey: [], old: [], new: [])
              : Changeset.read(iterator!)
            box.conflict = Conflict(kind: kind, change: change)
          }
          return SQLITE_CHANGESET_ABORT
        },
        unmanaged.toOpaque(), nil, nil, 0)
    }
    if let conflict = context.conflict { throw conflict }
    try connection.check(rc, "apply changeset")
  }
}
