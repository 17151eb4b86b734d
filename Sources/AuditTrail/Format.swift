// Audit trail format v3 (and v1 and v2, which it reads), byte for byte as in Schemas/audit-trail.md.
// Everything is little-endian. This file is the only place that knows offsets.

import Foundation

public enum TrailFormat {
  public static let magic: [UInt8] = Array("UNDSTMAT".utf8)
  /// What this build writes: 2 adds the checksum item to commit payloads, 3 the event
  /// marker record.
  public static let version: UInt16 = 3
  /// What it reads.
  public static let readableVersions: ClosedRange<UInt16> = 1...3
  public static let fileHeaderSize = 64
  public static let recordHeaderSize = 32
  /// Records start and end on 8-byte boundaries, so a length field never straddles a sector.
  public static let alignment = 8
  /// Refuse to decode anything larger: a flipped high bit in a length must not allocate gigabytes.
  public static let maxPayload = 1 << 30
  public static let defaultFileSize = 64 << 20
  public static let firstRBA = UInt64(fileHeaderSize)

  /// `AA00000001`, `AA00000002`, …
  public static func fileName(sno: UInt32) -> String {
    let digits = String(sno)
    return "AA" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
  }

  public static func sno(fileName: String) -> UInt32? {
    guard fileName.count == 10, fileName.hasPrefix("AA") else { return nil }
    let digits = fileName.dropFirst(2)
    guard digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
    return UInt32(digits)
  }

  public static func recordSize(payloadCount: Int) -> Int {
    recordHeaderSize + aligned(payloadCount)
  }

  static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}

/// What a record is. Unknown types are refused by name, never skipped.
public enum RecordType: UInt8, Sendable, Codable, CustomStringConvertible {
  /// One committed transaction: its DDL and row changes, in execution order.
  case commit = 1
  /// A planned switchover: the primary writes nothing after it; the backup that applies
  /// it becomes the primary of the generation it names. Carries the current txid.
  case switchover = 2
  /// A switchover abandoned because the backup did not confirm in time; writes resume.
  case switchoverCancelled = 3
  /// Format 3: a named event marker (`rtmark`), a point a replica can be restored to.
  /// Carries the current txid.
  case marker = 4

  public var description: String {
    switch self {
    case .commit: "commit"
    case .switchover: "switchover"
    case .switchoverCancelled: "switchover-cancelled"
    case .marker: "marker"
    }
  }

  /// The transaction id a record of this type carries after transaction `last`: a
  /// commit the next one, a control record the current one (it commits nothing).
  public func expectedTxid(after last: TransactionID) -> TransactionID {
    self == .commit ? last.next : last
  }
}

/// The payload of a switchover record: the generation that begins and its primary.
public struct SwitchoverPayload: Equatable, Sendable {
  public var generation: Generation
  public var newPrimary: NodeID

  public init(generation: Generation, newPrimary: NodeID) {
    self.generation = generation
    self.newPrimary = newPrimary
  }

  public func encoded() -> [UInt8] {
    var b: [UInt8] = []
    b.appendLE(generation.rawValue)
    b.append(contentsOf: newPrimary.bytes)
    return b
  }

  public init?(decoding b: [UInt8]) {
    guard b.count == 24 else { return nil }
    generation = Generation(b.readLE(UInt64.self, at: 0))
    newPrimary = NodeID(bytes: b[8..<24])
  }
}

/// The payload of a marker record: its name, UTF-8, 1 to 200 bytes, printable, and not
/// all digits (`scrt_ra -S` reads digits as a time).
public struct MarkerPayload: Equatable, Sendable {
  public var name: String

  public static let maxBytes = 200

  /// Why `name` cannot name a marker, or nil when it can.
  public static func problem(with name: String) -> String? {
    let bytes = name.utf8.count
    if bytes == 0 { return "a marker name cannot be empty" }
    if bytes > maxBytes { return "a marker name is at most \(maxBytes) bytes (this one is \(bytes))" }
    if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
      return "a marker name cannot hold control characters"
    }
    if name.first?.isWhitespace == true || name.last?.isWhitespace == true {
      return "a marker name cannot start or end with a space"
    }
    if name.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
      return "a marker name cannot be all digits: `scrt_ra -S \(name)` would read it as a time in unix seconds"
    }
    return nil
  }

  public init?(name: String) {
    guard Self.problem(with: name) == nil else { return nil }
    self.name = name
  }

  public func encoded() -> [UInt8] { Array(name.utf8) }

  public init?(decoding b: [UInt8]) {
    guard let name = String(validating: b, as: UTF8.self), Self.problem(with: name) == nil else { return nil }
    self.name = name
  }
}

// MARK: - Little-endian helpers

// Inlinable: called per field of every record and frame from other modules, where an
// unspecialized generic call showed in the receiver's and extractor's profiles.
extension Array where Element == UInt8 {
  @inlinable
  public mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }
}

extension Collection where Element == UInt8, Index == Int {
  @inlinable
  public func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
    var v: T = 0
    for i in 0..<MemoryLayout<T>.size {
      v |= T(truncatingIfNeeded: self[startIndex + offset + i]) << (8 * i)
    }
    return v
  }
}

// MARK: - File header

/// The 64 bytes at rba 0 of every trail file.
public struct FileHeader: Equatable, Sendable {
  public var sno: UInt32
  public var nodeID: NodeID
  public var generation: Generation
  public var createdMicros: Int64
  /// The CRC of the last record of the previous file (0 in the first file), so that a
  /// record lost at a file boundary breaks the chain.
  public var chainSeed: UInt32

  public init(sno: UInt32, nodeID: NodeID, generation: Generation, createdMicros: Int64, chainSeed: UInt32) {
    self.sno = sno
    self.nodeID = nodeID
    self.generation = generation
    self.createdMicros = createdMicros
    self.chainSeed = chainSeed
  }

  public func encoded() -> [UInt8] {
    var b = [UInt8]()
    b.reserveCapacity(TrailFormat.fileHeaderSize)
    b.append(contentsOf: TrailFormat.magic)
    b.appendLE(TrailFormat.version)
    b.appendLE(UInt16(TrailFormat.fileHeaderSize))
    b.appendLE(sno)
    b.append(contentsOf: nodeID.bytes)
    b.appendLE(generation.rawValue)
    b.appendLE(createdMicros)
    b.appendLE(chainSeed)
    b.append(contentsOf: [UInt8](repeating: 0, count: 8))
    b.appendLE(CRC32C.checksum(b))
    assert(b.count == TrailFormat.fileHeaderSize)
    return b
  }

  /// Decodes and checks a header; the error says which field is wrong.
  public static func decode(_ b: [UInt8]) -> Result<FileHeader, HeaderProblem> {
    guard b.count >= TrailFormat.fileHeaderSize else { return .failure(.short(b.count)) }
    guard Array(b[0..<8]) == TrailFormat.magic else { return .failure(.badMagic) }
    let version = b.readLE(UInt16.self, at: 8)
    guard TrailFormat.readableVersions.contains(version) else { return .failure(.unsupportedVersion(version)) }
    let size = b.readLE(UInt16.self, at: 10)
    guard size == TrailFormat.fileHeaderSize else { return .failure(.badHeaderSize(size)) }
    let stored = b.readLE(UInt32.self, at: 60)
    let computed = CRC32C.checksum(b[0..<60])
    guard stored == computed else { return .failure(.checksum(stored: stored, computed: computed)) }
    guard b[52..<60].allSatisfy({ $0 == 0 }) else { return .failure(.reservedNotZero) }
    return .success(
      FileHeader(
        sno: b.readLE(UInt32.self, at: 12),
        nodeID: NodeID(bytes: b[16..<32]),
        generation: Generation(b.readLE(UInt64.self, at: 32)),
        createdMicros: b.readLE(Int64.self, at: 40),
        chainSeed: b.readLE(UInt32.self, at: 48)))
  }

  public enum HeaderProblem: Error, CustomStringConvertible {
    case short(Int)
    case badMagic
    case unsupportedVersion(UInt16)
    case badHeaderSize(UInt16)
    case checksum(stored: UInt32, computed: UInt32)
    case reservedNotZero

    public var description: String {
      switch self {
      case .reservedNotZero: "reserved header bytes 52..<60 are not zero"
      case .short(let n): "file header is \(n) bytes, expected \(TrailFormat.fileHeaderSize)"
      case .badMagic: "not an Understudy audit trail file (bad magic)"
      case .unsupportedVersion(let v):
        "format version \(v) is not supported by this build (it reads versions \(TrailFormat.readableVersions.lowerBound) to \(TrailFormat.readableVersions.upperBound))"
      case .badHeaderSize(let s): "header size field is \(s), expected \(TrailFormat.fileHeaderSize)"
      case .checksum(let s, let c): "file header checksum mismatch (stored \(hex(s)), computed \(hex(c)))"
      }
    }
  }
}

func hex(_ v: UInt32) -> String {
  let s = String(v, radix: 16)
  return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

// MARK: - Records

/// One record as it lies in the trail.
public struct Record: Equatable, Sendable {
  public var type: RecordType
  public var txid: TransactionID
  public var commitMicros: Int64
  public var payload: [UInt8]
  /// The CRC of the record before this one in the trail.
  public var prevCRC: UInt32

  public init(type: RecordType, txid: TransactionID, commitMicros: Int64, payload: [UInt8], prevCRC: UInt32) {
    self.type = type
    self.txid = txid
    self.commitMicros = commitMicros
    self.payload = payload
    self.prevCRC = prevCRC
  }

  public var size: Int { TrailFormat.recordSize(payloadCount: payload.count) }

  /// Past a point in time: stamped after it, whatever its type. A restore to a time and an
  /// updater stopped at one both cut before the first such record, so that what they hold
  /// ends with a record stamped at or before the time.
  public func isStamped(after micros: Int64) -> Bool { commitMicros > micros }

  /// The exact bytes, padding included; the CRC at offset 4 covers offsets 0..<4 and 8 to the end.
  public func encoded() -> [UInt8] {
    var b = [UInt8]()
    b.reserveCapacity(size)
    b.appendLE(UInt32(payload.count))
    b.appendLE(UInt32(0))
    b.appendLE(prevCRC)
    b.append(type.rawValue)
    b.append(contentsOf: [0, 0, 0])
    b.appendLE(txid.rawValue)
    b.appendLE(commitMicros)
    b.append(contentsOf: payload)
    b.append(contentsOf: [UInt8](repeating: 0, count: size - b.count))
    let crc = Self.checksum(b, size: size)
    b.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self) }
    return b
  }

  /// The record CRC: bytes 0..<4 (the length) and 8..<size (everything after the CRC
  /// field, padding included). The length must be covered: a flip that keeps the aligned
  /// size would otherwise turn a padding byte into payload unnoticed.
  static func checksum(_ b: [UInt8], size: Int) -> UInt32 {
    b.withUnsafeBytes {
      CRC32C.checksum(
        UnsafeRawBufferPointer(rebasing: $0[8..<size]),
        continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4])))
    }
  }

  /// The payload length a record header claims, or nil if the header is all zero (unwritten space).
  static func claimedPayloadLength(header: [UInt8]) -> Int? {
    header.allSatisfy({ $0 == 0 }) ? nil : Int(header.readLE(UInt32.self, at: 0))
  }

  /// Decodes a whole record (header, payload, padding) and checks it in isolation.
  public static func decode(_ b: [UInt8]) -> Result<(Record, crc: UInt32), RecordProblem> {
    guard b.count >= TrailFormat.recordHeaderSize else { return .failure(.incomplete) }
    let length = Int(b.readLE(UInt32.self, at: 0))
    guard length <= TrailFormat.maxPayload else { return .failure(.implausibleLength(length)) }
    let size = TrailFormat.recordSize(payloadCount: length)
    guard b.count >= size else { return .failure(.incomplete) }
    let stored = b.readLE(UInt32.self, at: 4)
    let computed = checksum(b, size: size)
    guard stored == computed else { return .failure(.checksum(stored: stored, computed: computed)) }
    guard b[(32 + length)..<size].allSatisfy({ $0 == 0 }) else { return .failure(.reservedNotZero) }
    guard let type = RecordType(rawValue: b[12]) else { return .failure(.unknownType(b[12])) }
    guard b[13] == 0, b[14] == 0, b[15] == 0 else { return .failure(.reservedNotZero) }
    let record = Record(
      type: type,
      txid: TransactionID(b.readLE(UInt64.self, at: 16)),
      commitMicros: b.readLE(Int64.self, at: 24),
      payload: Array(b[32..<(32 + length)]),
      prevCRC: b.readLE(UInt32.self, at: 8))
    return .success((record, stored))
  }

  public enum RecordProblem: Error, CustomStringConvertible, Equatable {
    case incomplete
    case implausibleLength(Int)
    case checksum(stored: UInt32, computed: UInt32)
    case unknownType(UInt8)
    case reservedNotZero

    public var description: String {
      switch self {
      case .incomplete: "record is incomplete"
      case .implausibleLength(let n): "record length \(n) is implausible"
      case .checksum(let s, let c): "record checksum mismatch (stored \(hex(s)), computed \(hex(c)))"
      case .unknownType(let t): "unknown record type \(t) (written by a newer version?)"
      case .reservedNotZero: "reserved header bytes or padding are not zero"
      }
    }
  }
}
