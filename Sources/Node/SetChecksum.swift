// The database checksum's arithmetic (Schemas/checksum.md): a set hash. Each row and each
// schema object has a 256-bit digest (SHA-256 of its canonical encoding); the checksum of
// a set of them is their sum, lane by lane, in four 64-bit lanes. Adding a row adds its
// digest and removing it subtracts it, so a transaction moves the checksum by what it
// changed, never by the size of the database.

import AuditTrail
import Crypto
import SQLiteSupport

public struct SetChecksum: Hashable, Sendable, CustomStringConvertible {
  public var lanes: (UInt64, UInt64, UInt64, UInt64)

  public static let zero = SetChecksum(lanes: (0, 0, 0, 0))

  public init(lanes: (UInt64, UInt64, UInt64, UInt64)) { self.lanes = lanes }

  /// From 32 bytes: four little-endian lanes.
  public init?(bytes: [UInt8]) {
    guard bytes.count == 32 else { return nil }
    func lane(_ i: Int) -> UInt64 {
      var v: UInt64 = 0
      for b in (0..<8).reversed() { v = v << 8 | UInt64(bytes[i * 8 + b]) }
      return v
    }
    lanes = (lane(0), lane(1), lane(2), lane(3))
  }

  /// From the text form: 64 lowercase hex digits.
  public init?(hex: String) {
    let utf8 = Array(hex.utf8)
    guard utf8.count == 64 else { return nil }
    var bytes: [UInt8] = []
    for i in stride(from: 0, to: 64, by: 2) {
      guard let b = UInt8(String(decoding: utf8[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
      bytes.append(b)
    }
    self.init(bytes: bytes)
  }

  public var bytes: [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(32)
    for lane in [lanes.0, lanes.1, lanes.2, lanes.3] {
      for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: lane >> UInt64(8 * b))) }
    }
    return out
  }

  /// The text form everywhere a checksum is printed: the 32 bytes in hex.
  public var description: String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  public static func + (a: SetChecksum, b: SetChecksum) -> SetChecksum {
    SetChecksum(
      lanes: (a.lanes.0 &+ b.lanes.0, a.lanes.1 &+ b.lanes.1, a.lanes.2 &+ b.lanes.2, a.lanes.3 &+ b.lanes.3))
  }

  public static func - (a: SetChecksum, b: SetChecksum) -> SetChecksum {
    SetChecksum(
      lanes: (a.lanes.0 &- b.lanes.0, a.lanes.1 &- b.lanes.1, a.lanes.2 &- b.lanes.2, a.lanes.3 &- b.lanes.3))
  }

  public static func += (a: inout SetChecksum, b: SetChecksum) { a = a + b }
  public static func -= (a: inout SetChecksum, b: SetChecksum) { a = a - b }

  public static func == (a: SetChecksum, b: SetChecksum) -> Bool {
    a.lanes.0 == b.lanes.0 && a.lanes.1 == b.lanes.1 && a.lanes.2 == b.lanes.2 && a.lanes.3 == b.lanes.3
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(lanes.0)
    hasher.combine(lanes.1)
    hasher.combine(lanes.2)
    hasher.combine(lanes.3)
  }

  /// The digest of 32 bytes of SHA-256, as a set element.
  static func element(_ encoding: [UInt8]) -> SetChecksum {
    var hasher = SHA256()
    hasher.update(data: encoding)
    return element(hasher)
  }

  static func element(_ hasher: SHA256) -> SetChecksum {
    hasher.finalize().withUnsafeBytes { raw in
      SetChecksum(
        lanes: (
          UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
          UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
          UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
          UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        ))
    }
  }

  /// One row of `table`: `values` are its `columns` values in the changeset encoding, in
  /// column order (`RowEncoding`, `ChangeCapture.forEachRow`). Hashed in place: this runs
  /// for every row a transaction changes, on the commit path.
  public static func row(table: String, columns: Int, values: ArraySlice<UInt8>) -> SetChecksum {
    var header = rowPrefix
    appendName(table, to: &header)
    appendLittleEndian(UInt32(columns), to: &header)
    var hasher = SHA256()
    hasher.update(data: header)
    values.withUnsafeBytes { hasher.update(bufferPointer: $0) }
    return element(hasher)
  }

  public static func row(table: String, columns: Int, values: [UInt8]) -> SetChecksum {
    row(table: table, columns: columns, values: values[...])
  }

  /// One entry of sqlite_schema: type, name, table name and SQL, as `sqlite_schema` holds them.
  public static func schemaObject(_ values: [SQLiteValue]) -> SetChecksum {
    var encoding = schemaPrefix
    appendLittleEndian(UInt32(values.count), to: &encoding)
    for value in values { RowEncoding.append(value, to: &encoding) }
    return element(encoding)
  }

  static let rowPrefix = Array("understudy-checksum-1 row\0".utf8)
  static let schemaPrefix = Array("understudy-checksum-1 schema\0".utf8)

  static func appendName(_ name: String, to out: inout [UInt8]) {
    let utf8 = Array(name.utf8)
    appendLittleEndian(UInt32(utf8.count), to: &out)
    out.append(contentsOf: utf8)
  }

  static func appendLittleEndian(_ v: UInt32, to out: inout [UInt8]) {
    for b in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> UInt32(8 * b))) }
  }
}

/// What a transaction (or a run of them) did to the checksum: per table the rows it added
/// less those it removed, and the sum of the digests it added less those it removed.
/// DDL and sqlite_sequence are not deltas: they are recomputed (`IncrementalChecksum.apply`).
public struct ChecksumDelta: Sendable, Equatable {
  public struct Entry: Sendable, Equatable, CustomStringConvertible {
    public var rows: Int64 = 0
    public var sum: SetChecksum = .zero
    public var description: String { "rows \(rows >= 0 ? "+" : "")\(rows), sum \(sum)" }
  }

  public var tables: [String: Entry] = [:]
  /// DDL ran: the schema, and perhaps every row of a table, changed.
  public var schemaChanged = false
  /// sqlite_sequence may have moved.
  public var sequenceMoved = false

  public init() {}

  public var isEmpty: Bool { tables.isEmpty && !schemaChanged && !sequenceMoved }

  /// Adds every change `capture` has logged so far (its log is kept).
  public mutating func add(from capture: ChangeCapture, shape: (String) throws -> ChangeCapture.TableShape) throws {
    try capture.forEachRow(shape: shape) { table, columns, old, new in
      var entry = tables[table] ?? Entry()
      if let old {
        entry.rows -= 1
        entry.sum -= SetChecksum.row(table: table, columns: columns, values: old)
      }
      if let new {
        entry.rows += 1
        entry.sum += SetChecksum.row(table: table, columns: columns, values: new)
      }
      tables[table] = entry
    }
  }

  /// The tables whose rows moved the checksum, by name: a table whose changes cancel
  /// out (an update that changed nothing) is not one.
  public var moved: [String: Entry] { tables.filter { $0.value != Entry() } }

  /// As a commit record carries it (format 2), sorted by table.
  public var digests: [TableDigest] {
    moved.sorted { $0.key < $1.key }.map { TableDigest(table: $0.key, rows: $0.value.rows, sum: $0.value.sum.bytes) }
  }

  /// What a commit record's checksum item says; nil when a digest is not 32 bytes.
  public init?(digests: [TableDigest]) {
    for d in digests {
      guard let sum = SetChecksum(bytes: d.sum) else { return nil }
      var entry = tables[d.table] ?? Entry()
      entry.rows += d.rows
      entry.sum += sum
      tables[d.table] = entry
    }
  }

  /// The first table (by name) whose movement differs between `self` and `other`.
  public func firstDifference(from other: ChecksumDelta) -> (table: String, mine: Entry, theirs: Entry)? {
    let (a, b) = (moved, other.moved)
    for name in Set(a.keys).union(b.keys).sorted() where a[name] != b[name] {
      return (name, a[name] ?? Entry(), b[name] ?? Entry())
    }
    return nil
  }

  /// The opposite movement (an undo's, of a forward one).
  public var negated: ChecksumDelta {
    var result = ChecksumDelta()
    result.tables = tables.mapValues { Entry(rows: -$0.rows, sum: .zero - $0.sum) }
    result.schemaChanged = schemaChanged
    result.sequenceMoved = sequenceMoved
    return result
  }

  /// What `self` holds beyond `earlier` (a delta it grew from).
  public func subtracting(_ earlier: ChecksumDelta) -> ChecksumDelta {
    var result = self
    for (name, entry) in earlier.tables {
      var mine = result.tables[name] ?? Entry()
      mine.rows -= entry.rows
      mine.sum -= entry.sum
      result.tables[name] = mine
    }
    return result
  }

  public mutating func merge(_ other: ChecksumDelta) {
    for (name, entry) in other.tables {
      var mine = tables[name] ?? Entry()
      mine.rows += entry.rows
      mine.sum += entry.sum
      tables[name] = mine
    }
    schemaChanged = schemaChanged || other.schemaChanged
    sequenceMoved = sequenceMoved || other.sequenceMoved
  }
}

/// What a run of commit records says it did to the primary's checksum (format 2): the sum
/// of their checksum items; nil once one of them carries none (format 1, or DDL).
public struct RecordedChecksum: Sendable {
  public private(set) var delta: ChecksumDelta? = ChecksumDelta()

  public init() {}

  /// Adds one commit record's items.
  public mutating func add(_ items: [CommitItem]) {
    for case .checksum(let tables) in items {
      if let recorded = ChecksumDelta(digests: tables) {
        delta?.merge(recorded)
        return
      }
    }
    delta = nil
  }
}
