// Frames, byte for byte as in Schemas/link-protocol.md: a 9-byte header (payload length
// u32, CRC-32C u32 over the type byte and the payload, type u8) and the payload. The
// length is checked against the reader's limit before anything is allocated.

import AuditTrail
import Foundation

public enum FrameType: UInt8, Sendable, CustomStringConvertible {
  case hello = 1
  case challenge = 2
  case auth = 3
  case start = 4
  case copyRequest = 5
  case fileStart = 6
  case records = 7
  case heartbeat = 8
  case ack = 9
  case refusal = 10
  case copyBegin = 11
  case copyData = 12
  case copyEnd = 13
  case listening = 14
  case followRequest = 15
  case followAccept = 16
  case promote = 17
  case promoted = 18

  public var description: String {
    switch self {
    case .hello: "hello"
    case .challenge: "challenge"
    case .auth: "auth"
    case .start: "start"
    case .listening: "listening"
    case .followRequest: "follow-request"
    case .followAccept: "follow-accept"
    case .promote: "promote"
    case .promoted: "promoted"
    case .copyRequest: "copy-request"
    case .fileStart: "file-start"
    case .records: "records"
    case .heartbeat: "heartbeat"
    case .ack: "ack"
    case .refusal: "refusal"
    case .copyBegin: "copy-begin"
    case .copyData: "copy-data"
    case .copyEnd: "copy-end"
    }
  }
}

public struct Frame: Sendable {
  public static let headerSize = 9
  /// What a primary accepts from a backup: only small control frames travel that way.
  public static let maxControlPayload = 64 << 10
  /// What a backup accepts from its primary: the largest record, plus room for framing.
  /// (A batch stops growing past 1 MiB, so a frame holds at most that plus one record.)
  public static let maxStreamPayload = TrailFormat.maxPayload + (4 << 20)

  public var type: FrameType
  public var payload: [UInt8]

  public init(_ type: FrameType, _ payload: [UInt8]) {
    self.type = type
    self.payload = payload
  }

  public func encoded() -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(Self.headerSize + payload.count)
    out.appendLE(UInt32(payload.count))
    out.appendLE(Self.checksum(type: type.rawValue, payload: payload))
    out.append(type.rawValue)
    out.append(contentsOf: payload)
    return out
  }

  static func checksum(type: UInt8, payload: [UInt8]) -> UInt32 {
    CRC32C.checksum(payload, continuing: CRC32C.checksum([type]))
  }

  /// Reads one frame; every problem names the peer and says what was wrong.
  public static func read(from socket: Socket, maxPayload: Int, deadline: Double) throws -> Frame {
    let header = try socket.receive(exactly: headerSize, deadline: deadline, waitingFor: "frame")
    let length = Int(header.readLE(UInt32.self, at: 0))
    let crc = header.readLE(UInt32.self, at: 4)
    guard length <= maxPayload else {
      throw LinkError.badFrame(peer: socket.peer, reason: "frame of \(length) bytes is over the limit of \(maxPayload)")
    }
    guard let type = FrameType(rawValue: header[8]) else {
      throw LinkError.badFrame(peer: socket.peer, reason: "unknown frame type \(header[8])")
    }
    // Once a frame has started, its payload gets time in proportion to its size (at
    // least 1 MB/s), so a slow link is not mistaken for a dead one.
    let payloadDeadline = max(deadline, Clock.monotonicSeconds() + 5 + Double(length) / 1_000_000)
    let payload = try socket.receive(exactly: length, deadline: payloadDeadline, waitingFor: "\(type) frame payload")
    let computed = checksum(type: header[8], payload: payload)
    guard computed == crc else {
      throw LinkError.badFrame(
        peer: socket.peer,
        reason:
          "\(type) frame checksum mismatch (stored \(String(crc, radix: 16)), computed \(String(computed, radix: 16)))")
    }
    return Frame(type, payload)
  }
}

/// Builds a payload.
struct ByteWriter {
  var bytes: [UInt8] = []
  mutating func u8(_ v: UInt8) { bytes.append(v) }
  mutating func u16(_ v: UInt16) { bytes.appendLE(v) }
  mutating func u32(_ v: UInt32) { bytes.appendLE(v) }
  mutating func u64(_ v: UInt64) { bytes.appendLE(v) }
  mutating func i64(_ v: Int64) { bytes.appendLE(v) }
  mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
  /// Text is capped at 4 KiB, cut on a character boundary.
  mutating func string(_ s: String) {
    var text = Substring(s)
    while text.utf8.count > 4096 { text = text.dropLast() }
    let utf8 = Array(text.utf8)
    u16(UInt16(utf8.count))
    raw(utf8)
  }
  mutating func position(_ p: MATPosition) {
    u32(p.sno)
    u64(p.rba)
  }
}

/// Reads a payload; running out of bytes or leaving some over is a bad frame.
struct ByteReader {
  let bytes: [UInt8]
  let what: String
  let peer: String
  var offset = 0

  init(_ frame: Frame, peer: String) {
    bytes = frame.payload
    what = "\(frame.type)"
    self.peer = peer
  }

  private mutating func take(_ n: Int) throws -> Range<Int> {
    guard n >= 0, offset + n <= bytes.count else {
      throw LinkError.badFrame(peer: peer, reason: "\(what) frame is truncated (\(bytes.count) bytes)")
    }
    defer { offset += n }
    return offset..<(offset + n)
  }
  mutating func u8() throws -> UInt8 { bytes[try take(1).lowerBound] }
  mutating func u16() throws -> UInt16 { bytes.readLE(UInt16.self, at: try take(2).lowerBound) }
  mutating func u32() throws -> UInt32 { bytes.readLE(UInt32.self, at: try take(4).lowerBound) }
  mutating func u64() throws -> UInt64 { bytes.readLE(UInt64.self, at: try take(8).lowerBound) }
  mutating func i64() throws -> Int64 { bytes.readLE(Int64.self, at: try take(8).lowerBound) }
  mutating func raw(_ n: Int) throws -> [UInt8] { Array(bytes[try take(n)]) }
  mutating func rest() -> [UInt8] {
    defer { offset = bytes.count }
    return Array(bytes[offset...])
  }
  mutating func string() throws -> String {
    let n = Int(try u16())
    guard let s = String(validating: try raw(n), as: UTF8.self) else {
      throw LinkError.badFrame(peer: peer, reason: "\(what) frame holds text that is not UTF-8")
    }
    return s
  }
  mutating func position() throws -> MATPosition { MATPosition(sno: try u32(), rba: try u64()) }
  func finish() throws {
    guard offset == bytes.count else {
      throw LinkError.badFrame(
        peer: peer, reason: "\(what) frame has \(bytes.count - offset) unexpected trailing bytes")
    }
  }
}
