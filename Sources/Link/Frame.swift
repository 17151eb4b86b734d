// Frames, byte for byte as in Schemas/link-protocol.md: a 9-byte header (payload length
// u32, CRC-32C u32 over the type byte and the payload, type u8) and the payload. The
// length is checked against the reader's limit for that type as soon as the header is
// in, and the payload buffer grows only as its bytes arrive: a length field is a claim,
// not a promise, and must not cost memory or minutes of waiting.

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
  case contextQuery = 19
  case contextAnswer = 20
  case followHint = 21

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
    case .contextQuery: "context-query"
    case .contextAnswer: "context-answer"
    case .followHint: "follow-hint"
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
  /// The extractor's batch stops growing once it holds this many bytes of records
  /// (`Extractor.batchBytes`; a test keeps the two equal).
  public static let extractorBatchBytes = 1 << 20
  /// The largest records frame a primary sends: the position, a batch one byte short of
  /// full (records are 8-aligned, so 8 short), and then the largest record.
  public static let maxRecordsPayload =
    12 + (extractorBatchBytes - TrailFormat.alignment) + TrailFormat.recordHeaderSize + TrailFormat.maxPayload
  /// What a backup accepts from its primary: the largest legitimate frame, a records
  /// frame (copy-data chunks are 256 KiB). Anything longer is refused on its header.
  public static let maxStreamPayload = maxRecordsPayload
  /// Once a frame's header is in, a wait for more of its payload that sees no byte for
  /// this long is a stalled link.
  public static let progressTimeout = 5.0
  /// And the whole payload has at most 5 s plus 1 s per million bytes, never more than
  /// this: a length field that lies cannot hold the link for minutes, whatever trickles in.
  public static let maxPayloadSeconds = 60.0

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

  /// How long the payload of a frame of `length` bytes may take once its header is in.
  public static func payloadSeconds(length: Int) -> Double { min(5 + Double(length) / 1_000_000, maxPayloadSeconds) }

  /// Reads one frame; every problem names the peer and says what was wrong. `limit` bounds
  /// the payload of each type further (nil: only `maxPayload`); it returns nil for a type
  /// that is not accepted at all.
  public static func read(
    from socket: Socket, maxPayload: Int, deadline: Double, limit: ((FrameType) -> Int?)? = nil
  ) throws -> Frame {
    var decoder = FrameDecoder(peer: socket.peer, maxPayload: maxPayload, limit: limit)
    var buffer: [UInt8] = []
    var payloadDeadline: Double?
    while true {
      let wanted = decoder.wanted
      let waitUntil: Double
      let what: String
      if let end = payloadDeadline {
        // No byte for `progressTimeout`, or the whole payload late: stalled either way.
        waitUntil = min(end, Clock.monotonicSeconds() + progressTimeout)
        what = "more of a \(decoder.type!) frame's payload (stalled at \(decoder.received) of \(decoder.length!) bytes)"
      } else {
        waitUntil = deadline
        what = "frame"
      }
      buffer.removeAll(keepingCapacity: true)
      try socket.receive(
        upTo: min(wanted, FrameDecoder.chunk), appendingTo: &buffer, deadline: waitUntil, waitingFor: what)
      if let frame = try decoder.feed(buffer[...]) { return frame }
      if payloadDeadline == nil, let length = decoder.length {
        payloadDeadline = max(deadline, Clock.monotonicSeconds() + payloadSeconds(length: length))
      }
    }
  }
}

/// What a backup accepts from its primary while streaming, judged on a frame's header
/// (a plain function of the receiver's state, for `Connection.receive(limit:)`): the
/// fixed-size frames at their size, a refusal at most its capped reason, records at most
/// their position plus the room left in the image trail file they must extend
/// (`roomInFile`, nil while no file is open), and no other type.
public enum StreamLimits {
  public static let heartbeatPayload = 28
  public static let fileStartPayload = TrailFormat.fileHeaderSize + 8
  public static let promotePayload = 20
  /// A string as encoded: its count and at most 4096 bytes.
  public static let refusalPayload = 2 + 4096

  public static func receiving(_ type: FrameType, roomInFile: Int?) -> Int? {
    switch type {
    case .heartbeat: heartbeatPayload
    case .fileStart: fileStartPayload
    case .promote: promotePayload
    case .refusal: refusalPayload  // the primary's reason for ending the link
    case .records: roomInFile.map { 12 + min($0, Frame.maxRecordsPayload - 12) } ?? Frame.maxRecordsPayload
    default: nil
    }
  }
}

/// Decodes one frame from bytes fed as they arrive, in pieces of any size (at most
/// `wanted` at a time, so nothing of the next frame is taken). The header is judged as
/// soon as it is whole: the length against the overall limit and the type's own, the type
/// known. The payload is kept as it comes, never allocated ahead of it.
public struct FrameDecoder {
  /// The most read (and allocated) ahead of the bytes in one step.
  public static let chunk = 256 << 10

  let peer: String
  let maxPayload: Int
  let limit: ((FrameType) -> Int?)?
  private var header: [UInt8] = []
  private var payload: [UInt8] = []
  /// The payload's length and type, once the header is whole and accepted.
  public private(set) var length: Int?
  public private(set) var type: FrameType?
  private var crc: UInt32 = 0

  public init(peer: String, maxPayload: Int, limit: ((FrameType) -> Int?)? = nil) {
    self.peer = peer
    self.maxPayload = maxPayload
    self.limit = limit
  }

  /// Payload bytes received so far.
  public var received: Int { payload.count }

  /// How many more bytes belong to this frame.
  public var wanted: Int {
    guard let length else { return Frame.headerSize - header.count }
    return length - payload.count
  }

  /// Takes the next bytes of the frame (at most `wanted`); returns the frame once whole.
  public mutating func feed(_ bytes: ArraySlice<UInt8>) throws -> Frame? {
    precondition(bytes.count <= wanted, "fed past the end of a frame")
    var rest = bytes
    if length == nil {
      let take = rest.prefix(Frame.headerSize - header.count)
      header.append(contentsOf: take)
      rest = rest.dropFirst(take.count)
      guard header.count == Frame.headerSize else { return nil }
      try acceptHeader()
    }
    payload.append(contentsOf: rest)
    guard payload.count == length, let type else { return nil }
    let computed = Frame.checksum(type: type.rawValue, payload: payload)
    guard computed == crc else {
      throw LinkError.badFrame(
        peer: peer,
        reason:
          "\(type) frame checksum mismatch (stored \(String(crc, radix: 16)), computed \(String(computed, radix: 16)))")
    }
    return Frame(type, payload)
  }

  private mutating func acceptHeader() throws {
    let length = Int(header.readLE(UInt32.self, at: 0))
    guard length <= maxPayload else {
      throw LinkError.badFrame(
        peer: peer, reason: "frame of \(length) bytes is over the limit of \(maxPayload); refused on its header")
    }
    guard let type = FrameType(rawValue: header[8]) else {
      throw LinkError.badFrame(peer: peer, reason: "unknown frame type \(header[8]) (frame of \(length) bytes)")
    }
    if let limit {
      guard let max = limit(type) else {
        throw LinkError.badFrame(peer: peer, reason: "unexpected \(type) frame (of \(length) bytes) here")
      }
      guard length <= max else {
        throw LinkError.badFrame(
          peer: peer,
          reason:
            "\(type) frame of \(length) bytes is longer than a legitimate one can be here (at most \(max)); refused on its header"
        )
      }
    }
    crc = header.readLE(UInt32.self, at: 4)
    self.length = length
    self.type = type
    payload.reserveCapacity(min(length, Self.chunk))
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
  var atEnd: Bool { offset == bytes.count }
  var remaining: Int { bytes.count - offset }
  func finish() throws {
    guard offset == bytes.count else {
      throw LinkError.badFrame(
        peer: peer, reason: "\(what) frame has \(bytes.count - offset) unexpected trailing bytes")
    }
  }
}
