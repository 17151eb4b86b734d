// Fencing an old primary (invariant 3): a node never serves or writes once a newer
// generation exists. The primary remembers where each backup it served would serve as
// a primary (`state/backups.json`); while no backup is attached it asks them, with the
// authenticated handshake, at which generation they stand. A newer one means this node
// was taken over: it logs 829, blocks writes, and stops extracting. File recovery asks
// the same question before it undoes anything.

import AuditTrail
import Foundation
import Link
import Node

public struct KnownBackup: Codable, Sendable, Equatable {
  public var node: NodeID
  /// Where it serves once it is a primary (its `--listen`).
  public var listen: String
}

public enum Fencing {
  static func knownPath(_ layout: NodeLayout) -> String { layout.state + "/backups.json" }

  /// The backups to ask. No file: this primary has served no backup that said where it
  /// would serve. A file that cannot be read stops fencing, so it is an error naming it.
  public static func knownBackups(_ layout: NodeLayout) throws -> [KnownBackup] {
    do {
      return try StateFile.read([KnownBackup].self, at: knownPath(layout)) ?? []
    } catch let error as StateFileError {
      throw FencingError.unreadableBackups(node: layout.root, error)
    }
  }

  /// Remembers a backup's listen address (durably, only when it is new or moved).
  static func remember(_ backup: KnownBackup, _ layout: NodeLayout) throws {
    var known = try knownBackups(layout)
    guard !known.contains(backup) else { return }
    known.removeAll { $0.node == backup.node }
    known.append(backup)
    try StateFile.write(known, to: knownPath(layout))
  }

  /// The first known backup that now answers as a primary of a newer generation.
  public static func findNewerGeneration(_ layout: NodeLayout, _ config: NodeConfig) throws -> (LinkPeer, String)? {
    let key = try Secret.load(path: layout.secretKey)
    let me = LinkIdentity(context: config.contextName, nodeID: config.nodeId, generation: config.generation, key: key)
    for (index, backup) in try knownBackups(layout).enumerated() {
      guard let address = try? HostPort(parsing: backup.listen) else {
        throw FencingError.unreadableBackups(
          node: layout.root,
          StateFileError(path: knownPath(layout), reason: "entry \(index): '\(backup.listen)' is not HOST:PORT"))
      }
      // Not answering is no news: the backup may be down or not serve yet.
      guard
        let peer = try? Handshake.probe(
          address, as: me, reason: "generation check by the primary of generation \(config.generation)", timeout: 1),
        peer.generation > config.generation
      else { continue }
      return (peer, backup.listen)
    }
    return nil
  }

  /// Records that generation `generation` (node `by`, at `address`) replaced this
  /// primary: blocks writes, logs 829. Returns the updated config.
  @discardableResult
  public static func supersede(
    _ layout: NodeLayout, generation: Generation, by: NodeID?, address: String?, events: EventLog
  ) throws -> NodeConfig {
    var config = try layout.loadConfig()
    let where_ = address.map { " at \($0)" } ?? ""
    let reason =
      "generation \(generation) took over from this primary (generation \(config.generation))\(where_). Run file recovery to the 888 position the new primary reported: `understudy recover --node \(layout.root) --to-mat SNO:RBA`, then `understudy follow`"
    try WriteBlock.set(layout, reason: reason)
    if config.superseded == nil {
      config.superseded = .init(generation: generation, by: by, address: address, learnedMicros: Clock.nowMicros())
      try layout.saveConfig(config)
      events.log(
        .superseded, "this primary was taken over: \(reason)",
        [("generation", .int(Int64(generation.rawValue))), ("listen", .string(address ?? ""))])
    }
    return config
  }
}
