// Follow: make a node recovered to the new primary's base its backup. The handshake
// proves the node's database is exactly what the new generation started from (the old
// MAT position, transaction id and checksum); then the database is tied to the new
// primary's MAT and `start` runs the node as a backup from there. A node that cannot
// prove it needs `--full-copy`: its database is set aside and the next start copies it.

import Apply
import AuditTrail
import Foundation
import Link
import Node
import Primary
import SQLiteSupport

public struct FollowResult: Sendable {
  public var primary: String
  public var primaryNode: NodeID
  public var generation: Generation
  /// Where streaming starts, when the database was kept; nil after `--full-copy`.
  public var from: MATPosition?
  public var setAside: String?

  public var json: JSON {
    .object([
      ("primary", .string(primary)), ("primaryNode", .string(primaryNode.description)),
      ("generation", .int(Int64(generation.rawValue))), ("from", from?.json ?? .null),
      ("fullCopy", .bool(from == nil)), ("setAside", setAside.map(JSON.string) ?? .null),
    ])
  }
}

public enum FollowError: Error, CustomStringConvertible {
  case notRecovered(node: String)
  case notNewer(address: String, generation: Generation, own: Generation)

  public var description: String {
    switch self {
    case .notRecovered(let node):
      "node \(node) has not been recovered to the new primary's base: run `understudy recover --node \(node) --to-mat SNO:RBA` with the new primary's 888 position first, or `understudy follow --full-copy` to copy its database anew"
    case .notNewer(let address, let generation, let own):
      "the node at \(address) is at generation \(generation), not newer than this node's \(own): it is not the primary that took over"
    }
  }
}

public enum Follow {
  public static func run(node: String, primary: String, secretFile: String, fullCopy: Bool) throws -> FollowResult {
    let layout = NodeLayout(root: node)
    let lock = try DaemonLock.acquire(layout)
    defer { withExtendedLifetime(lock) {} }
    return try follow(layout, primary: primary, key: try Secret.load(path: secretFile), fullCopy: fullCopy)
  }

  /// `run` without the daemon lock: also the old primary's last step of a switchover,
  /// inside its daemon.
  /// `prior`: a backup whose database holds exactly this much of its old primary's MAT
  /// (node, end, last transaction; a follow hint), instead of a node recovered in its own.
  static func follow(
    _ layout: NodeLayout, primary: String, key: [UInt8], fullCopy: Bool,
    prior: (node: NodeID, end: MATPosition, txid: TransactionID)? = nil
  ) throws -> FollowResult {
    let node = layout.root
    var config = try layout.loadConfig()
    let address = try HostPort(parsing: primary)
    let priorNode = prior?.node ?? config.nodeId
    let recovered =
      prior.map { ($0.end, $0.txid) }
      ?? config.superseded.flatMap { s in s.recoveredTo.map { ($0, s.recoveredTxid ?? TransactionID(0)) } }
    guard fullCopy || (config.role == .primary && recovered != nil) || (config.role == .backup && prior != nil) else {
      throw FollowError.notRecovered(node: node)
    }

    let link = Link.Connection(socket: try Socket.connect(to: address, timeout: 5), maxPayload: Frame.maxControlPayload)
    defer { link.socket.shutdown() }
    let peer = try Handshake.connect(
      link,
      as: LinkIdentity(config, key: key))
    guard peer.generation > config.generation || (fullCopy && config.role == .backup) else {
      link.refuse("follow: the follower is at generation \(config.generation), not older than this node's")
      throw FollowError.notNewer(address: primary, generation: peer.generation, own: config.generation)
    }
    if let listen = config.listen { try link.send(.listening(address: listen, server: config.server)) }

    var result = FollowResult(primary: primary, primaryNode: peer.nodeID, generation: peer.generation)
    if fullCopy {
      link.refuse("follow --full-copy: this node's next start asks for a copy")
      result.setAside = try setAside(config.database)
      config.base = nil
    } else {
      let (priorEnd, priorTxid) = recovered!
      let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
      try link.send(
        .followRequest(
          .init(priorNode: priorNode, priorTxid: priorTxid, priorEnd: priorEnd, checksum: checksum)))
      guard case .followAccept(let start) = try link.receive(timeout: Handshake.stepTimeout) else {
        throw link.refusingFrame("expected the primary's answer to a follow request")
      }
      // The old history's image trail goes before the database is tied to the new MAT:
      // a kill between the two must never leave old records where the new ones will lie.
      try clearImage(layout)
      try Promotion.rebase(database: config.database, from: priorNode, to: peer.nodeID, start: start)
      Failpoint.reached("follow-rebased")
      config.base = .init(position: start, checksum: checksum, empty: false)
      result.from = start
    }
    // The image trail of an earlier time as a backup belongs to another history.
    try clearImage(layout)
    try Secret.install(key + [0x0A], in: layout)
    config.role = .backup
    config.primary = primary
    config.generation = peer.generation
    config.superseded = nil
    config.generationBase = nil
    try layout.saveConfig(config)
    try WriteBlock.clear(layout)
    EventLog(layout: layout, node: config.nodeId.description).log(
      .followed,
      "now the backup of node \(peer.nodeID) at \(primary), generation \(peer.generation)"
        + (result.from.map { ", streaming from \($0)" } ?? "; the next start copies its database"),
      [("listen", .string(primary)), ("generation", .int(Int64(peer.generation.rawValue)))])
    return result
  }

  static func clearImage(_ layout: NodeLayout) throws {
    for sno in (try? layout.image.snos()) ?? [] { unlink(layout.image.filePath(sno: sno)) }
    unlink(layout.relayed)  // what next hops needed of it is gone with it
    FailoverRestore.forget(layout)  // nothing is set aside from a stream that starts afresh
    try FileManager.default.createDirectory(atPath: layout.image.path, withIntermediateDirectories: true)
  }

  /// Moves the database (and its WAL) aside for a full copy; returns where it went.
  static func setAside(_ database: String) throws -> String {
    guard FileManager.default.fileExists(atPath: database) else { return "" }
    let aside = database + ".before-full-copy-\(Clock.nowMicros())"
    for suffix in ["-wal", "-shm", ""] where FileManager.default.fileExists(atPath: database + suffix) {
      guard rename(database + suffix, aside + suffix) == 0 else {
        throw TrailError.io(operation: "rename to \(aside + suffix)", path: database + suffix, errno: errno)
      }
    }
    return aside
  }
}
