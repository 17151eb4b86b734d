// The link's messages and their payloads (Schemas/link-protocol.md). One place encodes
// and decodes each; a payload that does not decode exactly is a bad frame.

import AuditTrail
import Foundation
import Node

public enum Message: Sendable {
  /// Backup → primary, first: who it is and a fresh nonce.
  case hello(Hello)
  /// Primary → backup: who it is, its nonce, and its proof of the key.
  case challenge(Challenge)
  /// Backup → primary: its proof of the key.
  case auth(mac: [UInt8])
  /// Backup → primary: stream from `from`, where the backup's image trail ends. `lastCRC`
  /// is the checksum of the record before it, when the backup has that record.
  case start(from: MATPosition, lastCRC: UInt32?)
  /// Backup → primary: send a snapshot of the database first.
  case copyRequest
  /// Primary → backup: the stream enters this trail file (its 64-byte header and size).
  case fileStart(header: [UInt8], size: UInt64)
  /// Primary → backup: whole records, exactly as they lie in the MAT from `position`.
  case records(position: MATPosition, bytes: [UInt8])
  /// Primary → backup, every half second: where the primary's durable trail ends
  /// and the commit time of its newest record (for RTD).
  case heartbeat(trailEnd: MATPosition, newestCommitMicros: Int64, sentMicros: Int64)
  /// Backup → primary: the image trail is durable up to `acked`; the database holds up to `applied`.
  case ack(acked: MATPosition, applied: MATPosition)
  /// Either way, last: why the sender ends the link.
  case refusal(reason: String)
  /// Primary → backup: a snapshot of `size` bytes follows, holding every commit before `position`.
  case copyBegin(size: UInt64, position: MATPosition, checksum: String)
  case copyData(offset: UInt64, bytes: [UInt8])
  /// Primary → backup: the snapshot's SHA-256.
  case copyEnd(sha256: [UInt8])
  /// Backup → primary, optional, right after auth: where the backup serves once it is a
  /// primary. The primary remembers it to learn of a takeover (event 829).
  case listening(address: String, server: String? = nil)
  /// Backup → primary, instead of start: a node made the base of the primary's
  /// generation by file recovery asks to follow it. Its database ends at `priorEnd` of
  /// node `priorNode`'s MAT, after transaction `priorTxid`, with this logical checksum.
  case followRequest(FollowRequest)
  /// Primary → backup: the follower's database is the base of this generation, whose MAT
  /// starts at `matStart`; it may rebase and stream from there.
  case followAccept(matStart: MATPosition)
  /// Primary → backup, in a switchover the primary has committed to: the backup has
  /// applied the switchover record ending at `end`; it now becomes the primary of `generation`.
  case promote(generation: Generation, end: MATPosition)
  /// Backup → primary: done; its own MAT starts at `matStart`. The old primary follows it.
  case promoted(matStart: MATPosition)
  /// Prober → primary, instead of start: how did your generation begin? An old primary
  /// asks before it accepts being superseded. On the wire a follow-request with an empty
  /// payload (a real one never is), so no frame type is added.
  case baseQuery
  /// Primary → prober: the base of its generation. On the wire a follow-accept with the
  /// base after `matStart` (a plain follow-accept is exactly 12 bytes).
  case base(GenerationBase)
  /// Anyone authenticated → primary, instead of start: where do you stand in the
  /// context? The `rtdr` procedures ask the other server before they act.
  case contextQuery
  /// Primary → asker: its answer, as JSON (Schemas/context-answer.schema.json).
  case contextAnswer(ContextAnswer)
  /// The new primary → a backup of the primary it superseded, at the backup's listen
  /// address: generation `generation` began at `base` and serves at `address`; follow it
  /// if your database is exactly that base. Answered with a context answer.
  case followHint(FollowHint)

  /// How a generation began (the same value the primary keeps in its config).
  public typealias GenerationBase = NodeConfig.GenerationBase

  public struct FollowRequest: Sendable, Equatable {
    public var priorNode: NodeID
    public var priorTxid: TransactionID
    public var priorEnd: MATPosition
    public var checksum: String

    public init(priorNode: NodeID, priorTxid: TransactionID, priorEnd: MATPosition, checksum: String) {
      self.priorNode = priorNode
      self.priorTxid = priorTxid
      self.priorEnd = priorEnd
      self.checksum = checksum
    }
  }

  public struct Hello: Sendable, Equatable {
    public var protocolVersion: UInt16
    public var context: String
    public var nodeID: NodeID
    public var generation: Generation
    public var nonce: [UInt8]
  }

  public struct Challenge: Sendable, Equatable {
    public var protocolVersion: UInt16
    public var context: String
    public var nodeID: NodeID
    public var generation: Generation
    public var nonce: [UInt8]
    /// Set by a backup that relays its image trail to a next hop (a cascade): the node
    /// whose MAT the positions belong to. Covered by the MACs like the rest.
    public var origin: NodeID? = nil
    public var mac: [UInt8]
  }

  public var type: FrameType {
    switch self {
    case .hello: .hello
    case .challenge: .challenge
    case .auth: .auth
    case .start: .start
    case .copyRequest: .copyRequest
    case .fileStart: .fileStart
    case .records: .records
    case .heartbeat: .heartbeat
    case .ack: .ack
    case .refusal: .refusal
    case .copyBegin: .copyBegin
    case .copyData: .copyData
    case .copyEnd: .copyEnd
    case .listening: .listening
    case .followRequest: .followRequest
    case .followAccept: .followAccept
    case .promote: .promote
    case .promoted: .promoted
    case .baseQuery: .followRequest
    case .base: .followAccept
    case .contextQuery: .contextQuery
    case .contextAnswer: .contextAnswer
    case .followHint: .followHint
    }
  }

  public var frame: Frame {
    var w = ByteWriter()
    switch self {
    case .hello(let h):
      w.u16(h.protocolVersion)
      w.string(h.context)
      w.raw(h.nodeID.bytes)
      w.u64(h.generation.rawValue)
      w.raw(h.nonce)
    case .challenge(let c):
      w.raw(Self.challengeBody(c))
      w.raw(c.mac)
    case .auth(let mac): w.raw(mac)
    case .start(let from, let crc):
      w.position(from)
      w.u8(crc == nil ? 0 : 1)
      w.u32(crc ?? 0)
    case .copyRequest: break
    case .fileStart(let header, let size):
      w.raw(header)
      w.u64(size)
    case .records(let position, let bytes):
      w.position(position)
      w.raw(bytes)
    case .heartbeat(let end, let newest, let sent):
      w.position(end)
      w.i64(newest)
      w.i64(sent)
    case .ack(let acked, let applied):
      w.position(acked)
      w.position(applied)
    case .refusal(let reason): w.string(reason)
    case .copyBegin(let size, let position, let checksum):
      w.u64(size)
      w.position(position)
      w.string(checksum)
    case .copyData(let offset, let bytes):
      w.u64(offset)
      w.raw(bytes)
    case .copyEnd(let digest): w.raw(digest)
    case .listening(let address, let server):
      w.string(address)
      if let server { w.string(server) }
    case .followRequest(let f):
      w.raw(f.priorNode.bytes)
      w.u64(f.priorTxid.rawValue)
      w.position(f.priorEnd)
      w.string(f.checksum)
    case .followAccept(let start): w.position(start)
    case .promote(let generation, let end):
      w.u64(generation.rawValue)
      w.position(end)
    case .promoted(let start): w.position(start)
    case .baseQuery: break
    case .base(let b):
      w.position(b.matStart)
      w.u64(b.generation.rawValue)
      w.raw(b.priorNode.bytes)
      w.u64(b.priorTxid.rawValue)
      w.position(b.priorEnd)
      w.string(b.checksum)
    case .contextQuery: break
    case .contextAnswer(let answer): w.raw(ControlJSON.encode(answer))
    case .followHint(let hint): w.raw(ControlJSON.encode(hint))
    }
    return Frame(type, w.bytes)
  }

  /// The challenge without its MAC: what the MACs cover, with the hello.
  static func challengeBody(_ c: Challenge) -> [UInt8] {
    var w = ByteWriter()
    w.u16(c.protocolVersion)
    w.string(c.context)
    w.raw(c.nodeID.bytes)
    w.u64(c.generation.rawValue)
    w.raw(c.nonce)
    if let origin = c.origin { w.raw(origin.bytes) }
    return w.bytes
  }

  public static let nonceSize = 32
  public static let macSize = 32

  public init(decoding frame: Frame, peer: String) throws {
    var r = ByteReader(frame, peer: peer)
    switch frame.type {
    case .hello:
      self = .hello(
        Hello(
          protocolVersion: try r.u16(), context: try r.string(), nodeID: NodeID(bytes: try r.raw(16)[...]),
          generation: Generation(try r.u64()), nonce: try r.raw(Self.nonceSize)))
    case .challenge:
      let (version, context, node) = (try r.u16(), try r.string(), NodeID(bytes: try r.raw(16)[...]))
      let (generation, nonce) = (Generation(try r.u64()), try r.raw(Self.nonceSize))
      let origin = r.remaining == Self.macSize + 16 ? NodeID(bytes: try r.raw(16)[...]) : nil
      self = .challenge(
        Challenge(
          protocolVersion: version, context: context, nodeID: node, generation: generation, nonce: nonce,
          origin: origin, mac: try r.raw(Self.macSize)))
    case .auth: self = .auth(mac: try r.raw(Self.macSize))
    case .start:
      let from = try r.position()
      let hasCRC = try r.u8()
      let crc = try r.u32()
      guard hasCRC <= 1 else {
        throw LinkError.badFrame(peer: peer, reason: "start frame flag \(hasCRC) is not 0 or 1")
      }
      self = .start(from: from, lastCRC: hasCRC == 1 ? crc : nil)
    case .copyRequest: self = .copyRequest
    case .fileStart: self = .fileStart(header: try r.raw(TrailFormat.fileHeaderSize), size: try r.u64())
    case .records: self = .records(position: try r.position(), bytes: r.rest())
    case .heartbeat:
      self = .heartbeat(trailEnd: try r.position(), newestCommitMicros: try r.i64(), sentMicros: try r.i64())
    case .ack: self = .ack(acked: try r.position(), applied: try r.position())
    case .refusal: self = .refusal(reason: try r.string())
    case .copyBegin: self = .copyBegin(size: try r.u64(), position: try r.position(), checksum: try r.string())
    case .copyData: self = .copyData(offset: try r.u64(), bytes: r.rest())
    case .copyEnd: self = .copyEnd(sha256: try r.raw(32))
    case .listening:
      let address = try r.string()
      self = .listening(address: address, server: r.atEnd ? nil : try r.string())
    case .followRequest where frame.payload.isEmpty: self = .baseQuery
    case .followRequest:
      self = .followRequest(
        FollowRequest(
          priorNode: NodeID(bytes: try r.raw(16)[...]), priorTxid: TransactionID(try r.u64()),
          priorEnd: try r.position(), checksum: try r.string()))
    case .followAccept where frame.payload.count == 12: self = .followAccept(matStart: try r.position())
    case .followAccept:
      let matStart = try r.position()
      self = .base(
        GenerationBase(
          generation: Generation(try r.u64()), matStart: matStart, priorNode: NodeID(bytes: try r.raw(16)[...]),
          priorTxid: TransactionID(try r.u64()), priorEnd: try r.position(), checksum: try r.string()))
    case .promote: self = .promote(generation: Generation(try r.u64()), end: try r.position())
    case .promoted: self = .promoted(matStart: try r.position())
    case .contextQuery: self = .contextQuery
    case .contextAnswer: self = .contextAnswer(try ControlJSON.decode(ContextAnswer.self, r.rest(), peer: peer))
    case .followHint: self = .followHint(try ControlJSON.decode(FollowHint.self, r.rest(), peer: peer))
    }
    try r.finish()
  }
}

/// One end of an established link: sends and receives whole messages.
public final class Connection: @unchecked Sendable {
  public let socket: Socket
  /// The largest frame payload this end accepts.
  public let maxPayload: Int
  public var peer: String { socket.peer }

  public init(socket: Socket, maxPayload: Int) {
    self.socket = socket
    self.maxPayload = maxPayload
  }

  public func send(_ message: Message) throws { try socket.send(message.frame.encoded()) }

  /// Sends several messages in one write.
  public func send(_ messages: [Message]) throws {
    var bytes: [UInt8] = []
    for m in messages { bytes.append(contentsOf: m.frame.encoded()) }
    try socket.send(bytes)
  }

  /// The next message; a refusal from the peer is thrown as `refusedByPeer`. `limit`
  /// bounds each type's payload further, on the header (see `Frame.read`).
  public func receive(timeout: Double, limit: ((FrameType) -> Int?)? = nil) throws -> Message {
    let frame = try Frame.read(
      from: socket, maxPayload: maxPayload, deadline: Clock.monotonicSeconds() + timeout, limit: limit)
    let message = try Message(decoding: frame, peer: socket.peer)
    if case .refusal(let reason) = message { throw LinkError.refusedByPeer(peer: socket.peer, reason: reason) }
    return message
  }

  /// Tells the peer why, then closes (best effort: the peer may be gone).
  public func refuse(_ reason: String) {
    try? send(.refusal(reason: reason))
    socket.shutdown()
  }

  /// Refuses the peer and returns the error to throw: `throw link.refusing(reason)`.
  /// `told` is what the peer hears, when it should differ from what this side logs.
  public func refusing(_ reason: String, told: String? = nil) -> LinkError {
    refuse(told ?? reason)
    return .refused(peer: peer, reason: reason)
  }

  /// As `refusing`, for a frame the protocol does not allow at this point.
  public func refusingFrame(_ reason: String) -> LinkError {
    refuse(reason)
    return .badFrame(peer: peer, reason: reason)
  }
}
