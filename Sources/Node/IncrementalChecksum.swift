// The checksum a database keeps of itself, in its own table `understudy_checksum`: the
// schema's sum, and per table its row count and sum (one row each). Whoever changes the
// database in a transaction moves it in the same transaction, by the delta of the rows it
// changed: the primary's writer from what it captured, the backup's updater, replay on
// open and file recovery from what they applied (`ChecksumTracker`). DDL recomputes it
// (rare, and it may change every row of a table); sqlite_sequence, which no hook sees, is
// re-read when it may have moved. Anything else that changes the database without a
// tracker invalidates it, and the next change or `DatabaseChecksum.current` recomputes it.

import Foundation
import SQLiteSupport

public enum IncrementalChecksum {
  static let table = "understudy_checksum"
  static let create = """
    CREATE TABLE IF NOT EXISTS understudy_checksum(
      kind TEXT NOT NULL,
      name TEXT NOT NULL,
      rows INTEGER NOT NULL,
      sum BLOB NOT NULL,
      PRIMARY KEY (kind, name)
    ) WITHOUT ROWID
    """

  /// Whether the database keeps one (the table exists and holds the schema's row). On
  /// every commit, so one cached lookup by key.
  public static func isKept(_ db: Connection) throws -> Bool {
    guard let lookup = try? db.cached("SELECT 1 FROM understudy_checksum WHERE kind = 'schema' AND name = ''") else {
      return false  // no such table: a database from before it was kept
    }
    defer { lookup.reset() }
    return try lookup.step()
  }

  static func exists(_ db: Connection) throws -> Bool {
    try db.scalarInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'understudy_checksum'") == 1
  }

  /// The kept checksum, nil when none is kept. A row that does not decode is an error
  /// naming it, never a silent recompute.
  public static func read(_ db: Connection) throws -> DatabaseChecksum? {
    guard try exists(db) else { return nil }
    var schema: SetChecksum?
    var tables: [String: (rows: Int, sum: SetChecksum)] = [:]
    for row in try db.query("SELECT kind, name, rows, sum FROM understudy_checksum") {
      guard case .text(let kind) = row[0], case .text(let name) = row[1], let (rows, sum) = entry(row[2], row[3]),
        rows >= 0
      else {
        throw SQLiteError(
          code: 11, message: "a row of understudy_checksum does not decode: \(row)", context: "read \(db.path)")
      }
      switch kind {
      case "schema": schema = sum
      case "table": tables[name] = (Int(rows), sum)
      default:
        throw SQLiteError(
          code: 11, message: "understudy_checksum has a row of unknown kind '\(kind)'", context: "read \(db.path)")
      }
    }
    guard let schema else { return nil }
    return DatabaseChecksum(schema: schema, tables: tables)
  }

  /// Replaces what is kept by a full scan, inside the caller's transaction.
  @discardableResult
  public static func recompute(on db: Connection) throws -> DatabaseChecksum {
    let full = try DatabaseChecksum.compute(db)
    try db.execute(create)
    try db.execute("DELETE FROM understudy_checksum")
    let insert = try db.cached("INSERT INTO understudy_checksum(kind, name, rows, sum) VALUES (?, ?, ?, ?)")
    try insert.bind([.text("schema"), .text(""), .integer(0), .blob(SetChecksum(hex: full.schema)!.bytes)])
    try insert.run()
    for (name, table) in full.tables {
      insert.reset()
      try insert.bind([
        .text("table"), .text(name), .integer(Int64(table.rows)), .blob(SetChecksum(hex: table.checksum)!.bytes),
      ])
      try insert.run()
    }
    insert.reset()
    return full
  }

  /// Moves what is kept by `delta`, inside the caller's transaction (which made the
  /// changes). Recomputes when none is kept yet or DDL ran.
  public static func apply(_ delta: ChecksumDelta, on db: Connection) throws {
    guard !delta.isEmpty else { return }
    guard !delta.schemaChanged, try isKept(db) else {
      try recompute(on: db)
      return
    }
    let select = try db.cached("SELECT rows, sum FROM understudy_checksum WHERE kind = 'table' AND name = ?")
    let upsert = try db.cached(
      "INSERT OR REPLACE INTO understudy_checksum(kind, name, rows, sum) VALUES ('table', ?, ?, ?)")
    func store(_ name: String, rows: Int64, sum: SetChecksum) throws {
      try upsert.bind([.text(name), .integer(rows), .blob(sum.bytes)])
      try upsert.run()
      upsert.reset()
    }
    for (name, change) in delta.tables {
      try select.bind([.text(name)])
      var rows: Int64 = 0
      var sum = SetChecksum.zero
      if try select.step() {
        guard let (r, s) = entry(select.column(0), select.column(1)) else {
          select.reset()
          throw SQLiteError(
            code: 11, message: "the row of table \(name) in understudy_checksum does not decode",
            context: "update \(db.path)")
        }
        (rows, sum) = (r, s)
      }
      select.reset()
      try store(name, rows: rows + change.rows, sum: sum + change.sum)
    }
    if delta.sequenceMoved {
      if let sequence = try DatabaseChecksum.sequenceTable(db) {
        try store(DatabaseChecksum.sequenceTable, rows: Int64(sequence.rows), sum: sequence.sum)
      }
    }
  }

  /// A row's `rows` and `sum` columns, nil when they do not decode.
  private static func entry(_ rows: SQLiteValue, _ sum: SQLiteValue) -> (Int64, SetChecksum)? {
    guard case .integer(let count) = rows, case .blob(let bytes) = sum, let value = SetChecksum(bytes: bytes) else {
      return nil
    }
    return (count, value)
  }

  /// Forgets what is kept, inside the caller's transaction: it changed the database in a
  /// way no tracker saw. The next change, or the next `current`, recomputes it.
  public static func invalidate(on db: Connection) throws {
    guard try exists(db) else { return }
    try db.execute("DELETE FROM understudy_checksum")
  }
}

/// Keeps the checksum up to date on a connection that applies changesets (the backup's
/// updater, replay on open, file recovery): the preupdate hook sees the rows this node
/// actually changes, before and after, and their digests make the delta.
public final class ChecksumTracker {
  public let connection: Connection
  public let capture: ChangeCapture
  private var shapes: [String: ChangeCapture.TableShape] = [:]
  public private(set) var delta = ChecksumDelta()

  /// `capture`: the connection's own, when it has one already (one hook per connection).
  public init(connection: Connection, capture: ChangeCapture? = nil) {
    self.connection = connection
    self.capture = capture ?? ChangeCapture(connection: connection, accept: ObjectNames.isUser)
  }

  /// Runs `body`, adding the row changes it makes to `delta`.
  public func track<T>(_ body: () throws -> T) throws -> T {
    let was = capture.isRecording
    capture.discard()
    capture.isRecording = true
    defer {
      capture.isRecording = was
      capture.discard()
    }
    let result = try body()
    try delta.add(from: capture, shape: shape)
    return result
  }

  /// DDL ran (the next `commit` recomputes; table shapes are read again).
  public func noteSchemaChange() {
    delta.schemaChanged = true
    shapes.removeAll()
  }

  public func noteSequence() { delta.sequenceMoved = true }

  /// To undo what a rolled-back attempt added: `restore(saved)`.
  public var saved: ChecksumDelta { delta }
  /// Also forgets the table shapes read since: a rolled-back DDL takes its columns with it.
  public func restore(_ saved: ChecksumDelta) {
    delta = saved
    shapes.removeAll()
  }

  /// Moves the kept checksum by the delta (inside the caller's transaction), and starts over.
  public func commit() throws {
    try IncrementalChecksum.apply(delta, on: connection)
    delta = ChecksumDelta()
  }

  /// Starts over, table shapes too (another connection may have changed the schema).
  public func reset() {
    delta = ChecksumDelta()
    shapes.removeAll()
  }

  private func shape(_ table: String) throws -> ChangeCapture.TableShape {
    if let known = shapes[table] { return known }
    let info = try connection.query(
      "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid", [.text(table)])
    let shape = ChangeCapture.TableShape(
      columns: info.map { if case .text(let n) = $0[0] { n } else { "" } },
      primaryKey: info.map { if case .integer(let pk) = $0[3] { UInt8(clamping: pk) } else { 0 } },
      declaredTypes: info.map { if case .text(let t) = $0[1] { t } else { "" } },
      notNull: info.map { if case .integer(let n) = $0[2] { n != 0 } else { false } })
    shapes[table] = shape
    return shape
  }
}
