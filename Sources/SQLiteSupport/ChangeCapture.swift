// A connection's row changes, captured with SQLite's preupdate hook and written in the
// session extension's changeset format, so everything downstream (apply, invert,
// decode) is SQLite's own.
//
// Why not a session (sqlite3session):
// - A session compiles SQL twice per transaction (PRAGMA table_info when it first meets
//   a table, a SELECT per table when the changeset is made): the largest CPU cost of an
//   audited commit. The hook is handed old and new values as rows change; nothing is
//   compiled.
// - A session keeps one net change per row, in hash order. Applied in that order, a
//   transaction that moves a UNIQUE value from one row to another (INSERT OR REPLACE,
//   UPDATE … SET u = u + 1) can collide on the backup and stop its updater. The hook
//   sees the rows in the order the primary changed them, and that order is kept: what
//   the primary did row by row, the backup can do. (Like TMF's audit trail: every change,
//   in order.) The changeset format allows a table's header to come back, so it does
//   whenever the table changes.

import CUnderstudySQLite
import Glibc

public final class ChangeCapture {
  /// What the changeset needs to know of a table, in column order.
  public struct TableShape {
    public let columns: [String]
    /// Per column: 0, or its 1-based place in the primary key (as PRAGMA table_info says).
    public let primaryKey: [UInt8]
    /// Per column, from its declared type (PRAGMA table_info's `type`): REAL affinity.
    /// SQLite may store 2.0 there as the integer 2, and the hook's new values are the
    /// stored ones, so they are turned back into reals.
    let real: [Bool]
    /// Whether a key column may hold NULL: SQLite allows it (a legacy quirk) in a
    /// PRIMARY KEY that is neither the rowid (`INTEGER PRIMARY KEY`), NOT NULL, nor in
    /// a WITHOUT ROWID table. A changeset cannot address such a row, so it is refused.
    let keyMayBeNull: Bool

    /// `notNull`: per column, whether it is declared NOT NULL (PRAGMA table_info's
    /// `notnull`); unknown (nil) means every key is checked for NULL.
    public init(columns: [String], primaryKey: [UInt8], declaredTypes: [String], notNull: [Bool]? = nil) {
      self.columns = columns
      self.primaryKey = primaryKey
      real = declaredTypes.map(Self.hasRealAffinity)
      let keyColumns = primaryKey.indices.filter { primaryKey[$0] != 0 }
      let rowidAlias = keyColumns.count == 1 && declaredTypes[keyColumns[0]].uppercased() == "INTEGER"
      keyMayBeNull = !rowidAlias && keyColumns.contains { !(notNull?[$0] ?? false) }
    }

    /// SQLite's affinity rules (datatype3.html, 3.1), in their order.
    static func hasRealAffinity(_ declared: String) -> Bool {
      let type = declared.uppercased()
      if type.contains("INT") || type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") {
        return false
      }
      if type.contains("BLOB") || type.isEmpty { return false }
      return type.contains("REAL") || type.contains("FLOA") || type.contains("DOUB")
    }
  }

  public enum CaptureError: Error, CustomStringConvertible {
    case columnCount(table: String, declared: Int, stored: Int)
    case noPrimaryKey(table: String)
    case nullPrimaryKey(table: String, column: String, existingRow: Bool)

    public var description: String {
      switch self {
      case .nullPrimaryKey(let table, let column, let existing):
        (existing
          ? "table \(table): this transaction changes a row whose PRIMARY KEY column \(column) is NULL"
          : "table \(table): this transaction gives a row NULL in PRIMARY KEY column \(column)")
          + "; SQLite allows NULL there (a legacy quirk), but a changeset cannot address such a row, so the backup would diverge. Give the row a key (and declare \(column) NOT NULL)"

      case .columnCount(let table, let declared, let stored):
        "table \(table) stores \(stored) columns but declares \(declared): generated columns cannot be replicated"
      case .noPrimaryKey(let table):
        "table \(table) has no PRIMARY KEY, so its rows cannot be identified on the backup"
      }
    }
  }

  /// One change as the hook saw it: every column's value, encoded, in `Log.values`.
  struct Change {
    var table: Int
    var op: Int32
    var indirect: Bool
    var columns: Int
    var old: Range<Int>
    var new: Range<Int>
  }

  final class Log {
    let accept: (String) -> Bool
    var recording = false
    var tables: [String] = []
    var tableNames: [[CChar]] = []
    var refused: [[CChar]] = []
    var changes: [Change] = []
    var values: [UInt8] = []

    init(_ accept: @escaping (String) -> Bool) { self.accept = accept }

    /// The table's index, or nil if the filter refuses it. Most transactions touch one
    /// table, so the last one found is tried first.
    func tableIndex(_ name: UnsafePointer<CChar>) -> Int? {
      if let last = changes.last?.table, strcmp(tableNames[last], name) == 0 { return last }
      if let i = tableNames.firstIndex(where: { strcmp($0, name) == 0 }) { return i }
      if refused.contains(where: { strcmp($0, name) == 0 }) { return nil }
      let string = String(cString: name)
      let cString = Array(string.utf8CString)
      guard accept(string) else {
        refused.append(cString)
        return nil
      }
      tables.append(string)
      tableNames.append(cString)
      return tables.count - 1
    }

    func clear() {
      changes.removeAll(keepingCapacity: changes.capacity < 4096)
      values.removeAll(keepingCapacity: values.capacity < 1 << 20)
      tables.removeAll(keepingCapacity: true)
      tableNames.removeAll(keepingCapacity: true)
    }
  }

  private let connection: Connection
  private let log: Unmanaged<Log>

  /// Installs the hook on `connection` (replacing any other preupdate hook, such as a
  /// session's) for changes to tables of `main` that `accept` allows. Nothing is
  /// recorded until `isRecording` is set.
  public init(connection: Connection, accept: @escaping (String) -> Bool) {
    self.connection = connection
    log = Unmanaged.passRetained(Log(accept))
    sqlite3_preupdate_hook(
      connection.handle,
      { context, db, op, database, table, _, _ in
        let log = Unmanaged<Log>.fromOpaque(context!).takeUnretainedValue()
        guard log.recording, let db, let database, let table, strcmp(database, "main") == 0,
          let index = log.tableIndex(table)
        else { return }
        let columns = sqlite3_preupdate_count(db)
        var value: OpaquePointer?
        let oldStart = log.values.count
        if op != SQLITE_INSERT {
          for i in 0..<columns {
            sqlite3_preupdate_old(db, i, &value)
            ChangesetFormat.append(value, to: &log.values)
          }
        }
        let newStart = log.values.count
        if op != SQLITE_DELETE {
          for i in 0..<columns {
            sqlite3_preupdate_new(db, i, &value)
            ChangesetFormat.append(value, to: &log.values)
          }
        }
        log.changes.append(
          Change(
            table: index, op: op, indirect: sqlite3_preupdate_depth(db) > 0, columns: Int(columns),
            old: oldStart..<newStart, new: newStart..<log.values.count))
      }, log.toOpaque())
  }

  deinit {
    sqlite3_preupdate_hook(connection.handle, nil, nil)
    log.release()
  }

  public var isRecording: Bool {
    get { log.takeUnretainedValue().recording }
    set { log.takeUnretainedValue().recording = newValue }
  }

  /// How many changes are logged: a mark to reconcile a failed statement from.
  public var count: Int { log.takeUnretainedValue().changes.count }

  public var isEmpty: Bool { count == 0 }

  /// Tables changed since the last changeset, in the order they were first changed.
  public var touchedTables: [String] {
    let log = log.takeUnretainedValue()
    var seen = Set<Int>()
    return log.changes.compactMap { seen.insert($0.table).inserted ? log.tables[$0.table] : nil }
  }

  /// Forgets everything logged (the transaction rolled back).
  public func discard() { log.takeUnretainedValue().clear() }

  /// Forgets the changes logged since `mark` (`count` then): they were rolled back to a savepoint.
  public func forget(since mark: Int) {
    let log = log.takeUnretainedValue()
    if mark < log.changes.count { log.changes.removeSubrange(mark...) }
  }

  /// The changes logged so far as one changeset, in the order they were made (empty if
  /// none changed anything), and an empty log.
  public func changeset(shape: (String) throws -> TableShape) throws -> [UInt8] {
    let log = log.takeUnretainedValue()
    defer { log.clear() }
    guard !log.changes.isEmpty else { return [] }
    var shapes: [TableShape?] = Array(repeating: nil, count: log.tables.count)
    var out: [UInt8] = []
    var headerTable = -1
    for change in log.changes {
      let table = try shapeOf(change, log: log, shapes: &shapes, shape: shape)
      if table.keyMayBeNull { try refuseNullKey(change, table: table, log: log) }
      var new = log.values[change.new]
      if table.real.contains(true), !new.isEmpty {
        new = ArraySlice(ChangesetFormat.realified(new, real: table.real))
      }
      var body: [UInt8] = []
      ChangesetFormat.appendChange(
        change, old: log.values[change.old], new: new, primaryKey: table.primaryKey, to: &body)
      guard !body.isEmpty else { continue }  // an update that changed nothing
      if headerTable != change.table {
        ChangesetFormat.appendTableHeader(name: log.tables[change.table], primaryKey: table.primaryKey, to: &out)
        headerTable = change.table
      }
      out.append(contentsOf: body)
    }
    return out
  }

  /// Every change logged so far as its whole rows, before (nil for an insert) and after
  /// (nil for a delete), each value in the changeset encoding with REAL-affinity values
  /// as reals: what `SELECT *` reads back. The log is kept (a changeset is made after).
  /// The database checksum is kept up to date from these.
  public func forEachRow(
    shape: (String) throws -> TableShape,
    _ body: (_ table: String, _ columns: Int, _ old: ArraySlice<UInt8>?, _ new: ArraySlice<UInt8>?) throws -> Void
  ) throws {
    let log = log.takeUnretainedValue()
    var shapes: [TableShape?] = Array(repeating: nil, count: log.tables.count)
    for change in log.changes {
      let table = try shapeOf(change, log: log, shapes: &shapes, shape: shape)
      func image(_ range: Range<Int>) -> ArraySlice<UInt8> {
        let values = log.values[range]
        return table.real.contains(true) ? ArraySlice(ChangesetFormat.realified(values, real: table.real)) : values
      }
      try body(
        log.tables[change.table], change.columns, change.op == SQLITE_INSERT ? nil : image(change.old),
        change.op == SQLITE_DELETE ? nil : image(change.new))
    }
  }

  /// After a statement failed: SQLite undid what it changed (all of it, or with ON
  /// CONFLICT FAIL the rows before the failing one are kept), but the hook saw it all.
  /// Replaces the changes logged since `mark` by what the rows they touched now hold,
  /// read back from the database.
  public func reconcile(since mark: Int, shape: (String) throws -> TableShape) throws {
    let log = log.takeUnretainedValue()
    guard mark < log.changes.count else { return }
    let wasRecording = log.recording
    log.recording = false
    defer { log.recording = wasRecording }
    var shapes: [TableShape?] = Array(repeating: nil, count: log.tables.count)
    // Each touched row, by table and key, with what it held before the statement (nil: absent).
    var before: [RowKey: [UInt8]?] = [:]
    var order: [RowKey] = []
    for change in log.changes[mark...] {
      let table = try shapeOf(change, log: log, shapes: &shapes, shape: shape)
      for (range, image) in [(change.old, true), (change.new, false)] where !range.isEmpty {
        let values = Array(log.values[range])
        let key = RowKey(table: change.table, key: ChangesetFormat.key(values, primaryKey: table.primaryKey))
        if before[key] == nil {
          before[key] = .some(image ? values : nil)
          order.append(key)
        }
      }
    }
    log.changes.removeSubrange(mark...)
    for key in order {
      let table = shapes[key.table]!
      let now = try currentRow(table: log.tables[key.table], shape: table, key: key.key)
      let start = log.values.count
      switch (before[key]!, now) {
      case (nil, nil):
        continue
      case (nil, let now?):
        log.values.append(contentsOf: now)
        log.changes.append(
          Change(
            table: key.table, op: SQLITE_INSERT, indirect: false, columns: table.columns.count, old: start..<start,
            new: start..<log.values.count))
      case (let old?, nil):
        log.values.append(contentsOf: old)
        log.changes.append(
          Change(
            table: key.table, op: SQLITE_DELETE, indirect: false, columns: table.columns.count,
            old: start..<log.values.count, new: log.values.count..<log.values.count))
      case (let old?, let now?):
        log.values.append(contentsOf: old)
        let middle = log.values.count
        log.values.append(contentsOf: now)
        log.changes.append(
          Change(
            table: key.table, op: SQLITE_UPDATE, indirect: false, columns: table.columns.count,
            old: start..<middle, new: middle..<log.values.count))
      }
    }
  }

  /// Refuses a change whose old or new row has NULL in a key column.
  private func refuseNullKey(_ change: Change, table: TableShape, log: Log) throws {
    for (range, existing) in [(change.old, true), (change.new, false)] where !range.isEmpty {
      if let column = ChangesetFormat.nullKeyColumn(log.values[range], primaryKey: table.primaryKey) {
        throw CaptureError.nullPrimaryKey(
          table: log.tables[change.table], column: table.columns[column], existingRow: existing)
      }
    }
  }

  struct RowKey: Hashable {
    var table: Int
    var key: [UInt8]
  }

  private func shapeOf(_ change: Change, log: Log, shapes: inout [TableShape?], shape: (String) throws -> TableShape)
    throws -> TableShape
  {
    if let known = shapes[change.table] {
      guard known.columns.count == change.columns else {
        throw CaptureError.columnCount(
          table: log.tables[change.table], declared: known.columns.count, stored: change.columns)
      }
      return known
    }
    let name = log.tables[change.table]
    let table = try shape(name)
    guard table.primaryKey.contains(where: { $0 != 0 }) else { throw CaptureError.noPrimaryKey(table: name) }
    guard table.columns.count == change.columns else {
      throw CaptureError.columnCount(table: name, declared: table.columns.count, stored: change.columns)
    }
    shapes[change.table] = table
    return table
  }

  /// The row's encoded values now, or nil if there is none with that key.
  private func currentRow(table: String, shape: TableShape, key: [UInt8]) throws -> [UInt8]? {
    let keyColumns = shape.primaryKey.enumerated().filter { $0.element != 0 }.sorted { $0.element < $1.element }
    let sql =
      "SELECT \(shape.columns.map(quoteIdentifier).joined(separator: ", ")) FROM main.\(quoteIdentifier(table)) WHERE "
      + keyColumns.map { "\(quoteIdentifier(shape.columns[$0.offset])) IS ?" }.joined(separator: " AND ")
    let statement = try connection.prepare(sql)
    var at = 0
    for i in 1...keyColumns.count {
      let end = ChangesetFormat.valueEnd(key, at: at)
      try ChangesetFormat.bind(Array(key[at..<end]), to: statement, index: Int32(i))
      at = end
    }
    guard try statement.step() else { return nil }
    var row: [UInt8] = []
    for i in 0..<shape.columns.count {
      ChangesetFormat.append(sqlite3_column_value(statement.handle, Int32(i)), to: &row)
    }
    return row
  }
}

/// The session extension's changeset bytes (sqlite3session.c): per table a header
/// ('T', column count, primary-key flags, name), then its changes (operation, indirect
/// flag, old and/or new record). A record is one value per column: a type byte (0 not
/// given, 1 integer, 2 real, 3 text, 4 blob, 5 null), then 8 big-endian bytes for numbers
/// or a varint length and the bytes for text and blobs.
enum ChangesetFormat {
  static func append(_ value: OpaquePointer?, to out: inout [UInt8]) {
    switch sqlite3_value_type(value) {
    case SQLITE_INTEGER:
      out.append(1)
      appendBigEndian(UInt64(bitPattern: sqlite3_value_int64(value)), to: &out)
    case SQLITE_FLOAT:
      out.append(2)
      appendBigEndian(sqlite3_value_double(value).bitPattern, to: &out)
    case SQLITE_TEXT:
      out.append(3)
      let text = sqlite3_value_text(value)
      appendBytes(UnsafeRawPointer(text), count: Int(sqlite3_value_bytes(value)), to: &out)
    case SQLITE_BLOB:
      out.append(4)
      let blob = sqlite3_value_blob(value)
      appendBytes(blob, count: Int(sqlite3_value_bytes(value)), to: &out)
    default:
      out.append(5)
    }
  }

  private static func appendBytes(_ pointer: UnsafeRawPointer?, count: Int, to out: inout [UInt8]) {
    appendVarint(UInt64(count), to: &out)
    if let pointer, count > 0 { out.append(contentsOf: UnsafeRawBufferPointer(start: pointer, count: count)) }
  }

  static func appendInteger(_ v: UInt64, to out: inout [UInt8]) { appendBigEndian(v, to: &out) }

  private static func appendBigEndian(_ v: UInt64, to out: inout [UInt8]) {
    for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
  }

  /// SQLite's varint (lengths here stay far below the 9-byte form).
  static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
    if v < 0x80 {
      out.append(UInt8(v))
      return
    }
    var groups: [UInt8] = []
    var rest = v
    while rest > 0 {
      groups.append(UInt8(rest & 0x7F))
      rest >>= 7
    }
    for (i, group) in groups.reversed().enumerated() { out.append(i == groups.count - 1 ? group : group | 0x80) }
  }

  static func readVarint<C: RandomAccessCollection<UInt8>>(_ bytes: C, at start: Int) -> (value: Int, end: Int)
  where C.Index == Int {
    var value = 0
    var i = start
    while i < bytes.endIndex {
      let byte = bytes[i]
      value = value << 7 | Int(byte & 0x7F)
      i += 1
      if byte & 0x80 == 0 { break }
    }
    return (value, i)
  }

  /// Where the value starting at `start` ends.
  static func valueEnd<C: RandomAccessCollection<UInt8>>(_ bytes: C, at start: C.Index) -> Int where C.Index == Int {
    switch bytes[start] {
    case 1, 2: return start + 9
    case 3, 4:
      let (length, end) = readVarint(bytes, at: start + 1)
      return end + length
    default: return start + 1
    }
  }

  /// Each column's value range within one record.
  static func split(_ bytes: ArraySlice<UInt8>, columns: Int) -> [Range<Int>] {
    var out: [Range<Int>] = []
    out.reserveCapacity(columns)
    var at = bytes.startIndex
    for _ in 0..<columns {
      let end = valueEnd(bytes, at: at)
      out.append(at..<end)
      at = end
    }
    return out
  }

  /// The primary-key values of a record, in key order, encoded.
  static func key(_ record: [UInt8], primaryKey: [UInt8]) -> [UInt8] {
    let ranges = split(record[...], columns: primaryKey.count)
    var out: [UInt8] = []
    for place in primaryKey.filter({ $0 != 0 }).sorted() {
      out.append(contentsOf: record[ranges[primaryKey.firstIndex(of: place)!]])
    }
    return out
  }

  /// The first key column whose value in `record` is NULL, if any.
  static func nullKeyColumn(_ record: ArraySlice<UInt8>, primaryKey: [UInt8]) -> Int? {
    guard let last = primaryKey.lastIndex(where: { $0 != 0 }) else { return nil }
    var at = record.startIndex
    for i in 0...last {
      if primaryKey[i] != 0, record[at] == 5 { return i }
      at = valueEnd(record, at: at)
    }
    return nil
  }

  static func appendTableHeader(name: String, primaryKey: [UInt8], to out: inout [UInt8]) {
    out.append(UInt8(ascii: "T"))
    appendVarint(UInt64(primaryKey.count), to: &out)
    out.append(contentsOf: primaryKey)
    out.append(contentsOf: name.utf8)
    out.append(0)
  }

  /// One hook-level change as a session writes it: an update lists the key and the
  /// changed columns in its old record and only the changed ones in its new record;
  /// an update that changes the key is a delete and an insert; one that changes
  /// nothing is left out.
  static func appendChange(
    _ change: ChangeCapture.Change, old: ArraySlice<UInt8>, new: ArraySlice<UInt8>, primaryKey: [UInt8],
    to out: inout [UInt8]
  ) {
    let indirect: UInt8 = change.indirect ? 1 : 0
    switch change.op {
    case SQLITE_INSERT:
      out.append(contentsOf: [UInt8(SQLITE_INSERT), indirect])
      out.append(contentsOf: new)
    case SQLITE_DELETE:
      out.append(contentsOf: [UInt8(SQLITE_DELETE), indirect])
      out.append(contentsOf: old)
    default:
      let oldValues = split(old, columns: change.columns)
      let newValues = split(new, columns: change.columns)
      var changed = [Bool](repeating: false, count: change.columns)
      for i in 0..<change.columns { changed[i] = !sameValue(old[oldValues[i]], new[newValues[i]]) }
      if (0..<change.columns).contains(where: { primaryKey[$0] != 0 && changed[$0] }) {
        out.append(contentsOf: [UInt8(SQLITE_DELETE), indirect])
        out.append(contentsOf: old)
        out.append(contentsOf: [UInt8(SQLITE_INSERT), indirect])
        out.append(contentsOf: new)
        return
      }
      guard changed.contains(true) else { return }
      out.append(contentsOf: [UInt8(SQLITE_UPDATE), indirect])
      for i in 0..<change.columns {
        if changed[i] || primaryKey[i] != 0 { out.append(contentsOf: old[oldValues[i]]) } else { out.append(0) }
      }
      for i in 0..<change.columns {
        if changed[i] { out.append(contentsOf: new[newValues[i]]) } else { out.append(0) }
      }
    }
  }

  /// The record with integers in REAL columns written as reals (what a read returns).
  static func realified(_ record: ArraySlice<UInt8>, real: [Bool]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(record.count)
    for (i, range) in split(record, columns: real.count).enumerated() {
      guard real[i], record[range.lowerBound] == 1 else {
        out.append(contentsOf: record[range])
        continue
      }
      out.append(2)
      let integer = Int64(bitPattern: bigEndian(record, at: range.lowerBound + 1))
      appendBigEndian(Double(integer).bitPattern, to: &out)
    }
    return out
  }

  /// By type and bytes. A session compares reals by value and so drops an update of 0.0
  /// to -0.0, leaving the backup with the other zero; this keeps it.
  static func sameValue(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool { a.elementsEqual(b) }

  /// The 8 big-endian bytes of a number's value, from `start`.
  private static func bigEndian<C: RandomAccessCollection<UInt8>>(_ bytes: C, at start: Int) -> UInt64
  where C.Index == Int {
    var bits: UInt64 = 0
    for i in 0..<8 { bits = bits << 8 | UInt64(bytes[start + i]) }
    return bits
  }

  static func bind(_ value: [UInt8], to statement: Statement, index: Int32) throws {
    let handle = statement.handle
    let rc: Int32
    switch value[0] {
    case 1:
      rc = sqlite3_bind_int64(handle, index, Int64(bitPattern: bigEndian(value, at: 1)))
    case 2:
      rc = sqlite3_bind_double(handle, index, Double(bitPattern: bigEndian(value, at: 1)))
    case 3, 4:
      let (length, start) = readVarint(value, at: 1)
      rc = value.withUnsafeBytes { buffer in
        value[0] == 3
          ? sqlite3_bind_text(
            handle, index, buffer.baseAddress!.advanced(by: start).assumingMemoryBound(to: CChar.self),
            Int32(length), understudy_sqlite_transient())
          : sqlite3_bind_blob(
            handle, index, buffer.baseAddress!.advanced(by: start), Int32(length), understudy_sqlite_transient())
      }
    default:
      rc = sqlite3_bind_null(handle, index)
    }
    try statement.connection.check(rc, "bind key value")
  }

  /// The changeset with its changes in the opposite order, each under its table's
  /// header: what undoes a sequence of changes is their inverses, newest first.
  static func reversed(_ bytes: [UInt8]) throws -> [UInt8] {
    var units: [(header: Range<Int>, change: Range<Int>)] = []
    var header: Range<Int>?
    var columns = 0
    var at = 0
    func need(_ n: Int) throws {
      guard at + n <= bytes.count else {
        throw SQLiteError(
          code: SQLITE_CORRUPT, message: "changeset ends early at byte \(at)", context: "reverse changeset")
      }
    }
    func skipRecord() throws {
      for _ in 0..<columns {
        try need(1)
        let end = valueEnd(bytes, at: at)
        guard end <= bytes.count else {
          throw SQLiteError(
            code: SQLITE_CORRUPT, message: "value past the end at byte \(at)", context: "reverse changeset")
        }
        at = end
      }
    }
    while at < bytes.count {
      let start = at
      switch Int32(bytes[at]) {
      case Int32(UInt8(ascii: "T")):
        let (count, afterCount) = readVarint(bytes, at: at + 1)
        at = afterCount + count
        try need(0)
        guard let nul = bytes[at...].firstIndex(of: 0) else {
          throw SQLiteError(code: SQLITE_CORRUPT, message: "table name not ended", context: "reverse changeset")
        }
        at = nul + 1
        header = start..<at
        columns = count
      case SQLITE_INSERT, SQLITE_DELETE, SQLITE_UPDATE:
        guard let header else {
          throw SQLiteError(code: SQLITE_CORRUPT, message: "change before any table", context: "reverse changeset")
        }
        let records = bytes[at] == UInt8(SQLITE_UPDATE) ? 2 : 1
        at += 2
        for _ in 0..<records { try skipRecord() }
        units.append((header, start..<at))
      default:
        throw SQLiteError(
          code: SQLITE_CORRUPT, message: "unknown changeset entry \(bytes[at]) at byte \(at)",
          context: "reverse changeset")
      }
    }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var lastHeader: ArraySlice<UInt8>?
    for unit in units.reversed() {
      let header = bytes[unit.header]
      if lastHeader.map({ !$0.elementsEqual(header) }) ?? true {
        out.append(contentsOf: header)
        lastHeader = header
      }
      out.append(contentsOf: bytes[unit.change])
    }
    return out
  }
}

/// Rows read by a query, in the changeset encoding of values (the checksum's canonical
/// form, Schemas/checksum.md): what `forEachRow` hands over for a captured change.
public enum RowEncoding {
  /// Appends the statement's current row, all `count` columns.
  public static func appendRow(of statement: Statement, count: Int, to out: inout [UInt8]) {
    for i in 0..<count { ChangesetFormat.append(sqlite3_column_value(statement.handle, Int32(i)), to: &out) }
  }

  /// Appends one value.
  public static func append(_ value: SQLiteValue, to out: inout [UInt8]) {
    switch value {
    case .null: out.append(5)
    case .integer(let v):
      out.append(1)
      ChangesetFormat.appendInteger(UInt64(bitPattern: v), to: &out)
    case .real(let v):
      out.append(2)
      ChangesetFormat.appendInteger(v.bitPattern, to: &out)
    case .text(let s):
      out.append(3)
      let bytes = Array(s.utf8)
      ChangesetFormat.appendVarint(UInt64(bytes.count), to: &out)
      out.append(contentsOf: bytes)
    case .blob(let b):
      out.append(4)
      ChangesetFormat.appendVarint(UInt64(b.count), to: &out)
      out.append(contentsOf: b)
    }
  }
}
