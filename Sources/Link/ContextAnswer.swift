// What a primary (or, briefly, a backup) tells an `rtdr` procedure on the other server about where it stands:
// its role and generation, how the generation began (and, when it began with a takeover,
// the 888 position or the 858 reason), its durable end, its statemap and the backups it
// serves. A control message, rare and small, so its payload is JSON
// (Schemas/context-answer.schema.json); it must decode exactly, like every other frame.

import AuditTrail
import Foundation
import Node

public struct ContextAnswer: Codable, Sendable, Equatable {
  public var server: String?
  public var node: NodeID
  public var role: Role
  public var generation: Generation
  public var durableEnd: MATPosition
  /// How this generation began, when it began with a takeover or a switchover.
  public var base: NodeConfig.GenerationBase?
  /// When it began with a takeover: the 888 position, or nil and the 858 reason.
  public var fileRecovery: MATPosition?
  public var noFileRecovery: String?
  public var statemap: Statemap
  public var backups: [Backup]
  /// A backup's answer: what its database holds (`durableEnd` is what its image trail
  /// holds), and the primary it follows.
  public var applied: MATPosition?
  public var primary: String?

  public struct Backup: Codable, Sendable, Equatable {
    public var node: NodeID
    public var server: String?
    public var listen: String?
    /// Attached now, with what it acknowledged and applied.
    public var attached: Bool
    public var acked: MATPosition?
    public var applied: MATPosition?

    public init(
      node: NodeID, server: String?, listen: String?, attached: Bool, acked: MATPosition?, applied: MATPosition?
    ) {
      self.node = node
      self.server = server
      self.listen = listen
      self.attached = attached
      self.acked = acked
      self.applied = applied
    }
  }

  public init(
    server: String?, node: NodeID, role: Role, generation: Generation, durableEnd: MATPosition,
    base: NodeConfig.GenerationBase?, fileRecovery: MATPosition?, noFileRecovery: String?, statemap: Statemap,
    backups: [Backup], applied: MATPosition? = nil, primary: String? = nil
  ) {
    self.applied = applied
    self.primary = primary
    self.server = server
    self.node = node
    self.role = role
    self.generation = generation
    self.durableEnd = durableEnd
    self.base = base
    self.fileRecovery = fileRecovery
    self.noFileRecovery = noFileRecovery
    self.statemap = statemap
    self.backups = backups
  }
}

/// A new primary's word to the other backups of the primary it superseded (see
/// `Message.followHint`).
public struct FollowHint: Codable, Sendable, Equatable {
  public var address: String
  /// The new primary's node id.
  public var node: NodeID
  public var generation: Generation
  public var base: NodeConfig.GenerationBase

  public init(address: String, node: NodeID, generation: Generation, base: NodeConfig.GenerationBase) {
    self.address = address
    self.node = node
    self.generation = generation
    self.base = base
  }
}

/// The JSON payloads of the rare control frames: sorted keys, decoded exactly.
enum ControlJSON {
  static func encode<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
  }

  static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], peer: String) throws -> T {
    do {
      return try JSONDecoder().decode(T.self, from: Data(bytes))
    } catch {
      throw LinkError.badFrame(peer: peer, reason: "\(T.self) frame is not the JSON it must be: \(error)")
    }
  }
}

extension Handshake {
  /// Tells the backup at `address` that a new generation began (a `follow-hint`); returns
  /// its answer (where it stands as it takes the hint).
  public static func sendFollowHint(_ hint: FollowHint, to address: HostPort, as me: LinkIdentity, timeout: Double = 3)
    throws -> ContextAnswer
  {
    let socket = try Socket.connect(to: address, timeout: timeout)
    let link = Connection(socket: socket, maxPayload: Frame.maxControlPayload)
    defer { socket.shutdown() }
    _ = try connect(link, as: me, timeout: timeout)
    try link.send(.followHint(hint))
    guard case .contextAnswer(let answer) = try link.receive(timeout: max(timeout, 2)) else {
      throw link.refusingFrame("expected a context answer to the follow hint")
    }
    return answer
  }

  /// The primary that the node at `address` is, or receives from through relays (a
  /// cascade: each backup's context answer names where it receives from), with its
  /// answer; nil when a node on the way does not answer, or after `hops` of them.
  public static func findPrimary(from address: String, as me: LinkIdentity, timeout: Double = 3, hops: Int = 8)
    -> (address: String, answer: ContextAnswer)?
  {
    var next: String? = address
    for _ in 0..<hops {
      guard let at = next, let host = try? HostPort(parsing: at),
        let answer = try? queryContext(host, as: me, timeout: timeout).1
      else { return nil }
      if answer.role == .primary { return (at, answer) }
      next = answer.primary
    }
    return nil
  }

  /// Asks the primary at `address` where it stands in the context (a `context-query`).
  public static func queryContext(_ address: HostPort, as me: LinkIdentity, timeout: Double = 5) throws -> (
    LinkPeer, ContextAnswer
  ) {
    let socket = try Socket.connect(to: address, timeout: timeout)
    let link = Connection(socket: socket, maxPayload: Frame.maxControlPayload)
    defer { socket.shutdown() }
    let peer = try connect(link, as: me, timeout: timeout)
    try link.send(.contextQuery)
    guard case .contextAnswer(let answer) = try link.receive(timeout: max(timeout, 2)) else {
      throw link.refusingFrame("expected a context answer")
    }
    return (peer, answer)
  }
}
