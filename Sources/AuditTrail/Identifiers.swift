// Value types for the things the audit trail addresses: positions, transactions,
// generations and nodes. Each has one text form, parsed in one place.

import Foundation

/// A point in a Master Audit Trail: file sequence number and relative byte address.
///
/// Ordered by `(sno, rba)`. Written `3:81920` in text and `{"sno":3,"rba":81920}` in JSON.
public struct MATPosition: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  public var sno: UInt32
  public var rba: UInt64

  public init(sno: UInt32, rba: UInt64) {
    self.sno = sno
    self.rba = rba
  }

  public static func < (a: MATPosition, b: MATPosition) -> Bool {
    (a.sno, a.rba) < (b.sno, b.rba)
  }

  public var description: String { "\(sno):\(rba)" }

  /// Parses `SNO:RBA`, both decimal, `SNO` at least 1.
  public init(parsing text: String) throws {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let sno = UInt32(parts[0]), let rba = UInt64(parts[1]) else {
      throw PositionSyntaxError(text: text, reason: "expected SNO:RBA, two decimal numbers such as 3:81920")
    }
    guard sno >= 1 else {
      throw PositionSyntaxError(text: text, reason: "file sequence numbers start at 1")
    }
    self.init(sno: sno, rba: rba)
  }
}

public struct PositionSyntaxError: Error, CustomStringConvertible {
  public var text: String
  public var reason: String
  public var description: String { "invalid MAT position '\(text)': \(reason)" }
}

/// A committed transaction's id on its primary: 1, 2, 3, … in commit order.
public struct TransactionID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(_ rawValue: UInt64) { self.rawValue = rawValue }
  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
  public var description: String { String(rawValue) }
  public var next: TransactionID { TransactionID(rawValue + 1) }

  public init(from decoder: Decoder) throws {
    rawValue = try decoder.singleValueContainer().decode(UInt64.self)
  }
  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(rawValue)
  }
}

/// Grows at every takeover and switchover; a node never accepts a stream from an older one.
public struct Generation: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(_ rawValue: UInt64) { self.rawValue = rawValue }
  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
  public var description: String { String(rawValue) }
  public var next: Generation { Generation(rawValue + 1) }

  public init(from decoder: Decoder) throws {
    rawValue = try decoder.singleValueContainer().decode(UInt64.self)
  }
  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(rawValue)
  }
}

/// A node's identity, stamped into every trail file header it writes.
public struct NodeID: Hashable, Sendable, Codable, CustomStringConvertible {
  public var uuid: UUID
  public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
  /// Lowercase 8-4-4-4-12 hex, written directly: every commit stores it in the state
  /// row, and `uuidString.lowercased()` cost two string passes there.
  public var description: String {
    let hex = Array("0123456789abcdef".utf8)
    return String(unsafeUninitializedCapacity: 36) { out in
      var i = 0
      for (n, byte) in bytes.enumerated() {
        if n == 4 || n == 6 || n == 8 || n == 10 {
          out[i] = UInt8(ascii: "-")
          i += 1
        }
        out[i] = hex[Int(byte >> 4)]
        out[i + 1] = hex[Int(byte & 0xF)]
        i += 2
      }
      return i
    }
  }

  public init?(_ text: String) {
    guard let uuid = UUID(uuidString: text) else { return nil }
    self.uuid = uuid
  }

  public var bytes: [UInt8] {
    withUnsafeBytes(of: uuid.uuid) { Array($0) }
  }

  public init(bytes: ArraySlice<UInt8>) {
    precondition(bytes.count == 16)
    var raw: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
    uuid = UUID(uuid: raw)
  }

  public init(from decoder: Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let id = NodeID(text) else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "not a node id: \(text)"))
    }
    self = id
  }
  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}
