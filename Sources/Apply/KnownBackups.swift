// The backups a node has served and where each would serve as a primary
// (`state/backups.json`): fencing (invariant 3) asks them whether this node was taken
// over. The primary remembers its backups; a relaying backup remembers its next hops.
// Fencing's errors live here too, as one type.

import AuditTrail
import Node

public struct KnownBackup: Codable, Sendable, Equatable {
  public var node: NodeID
  /// Where it serves once it is a primary (its `--listen`).
  public var listen: String
  /// Its server name in the MIMIX context, when it told one.
  public var server: String?

  public init(node: NodeID, listen: String, server: String? = nil) {
    self.node = node
    self.listen = listen
    self.server = server
  }
}

public enum Fencing {
  package static func knownPath(_ layout: NodeLayout) -> String { layout.state + "/backups.json" }

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
  public static func remember(_ backup: KnownBackup, _ layout: NodeLayout) throws {
    var known = try knownBackups(layout)
    guard !known.contains(backup) else { return }
    // In place: the order is the order backups first came (`rtdr -s` defaults to the first).
    if let index = known.firstIndex(where: { $0.node == backup.node }) {
      known[index] = backup
    } else {
      known.append(backup)
    }
    try StateFile.write(known, to: knownPath(layout))
  }
}

public enum FencingError: Error, CustomStringConvertible {
  case superseded(node: String, NodeConfig.Superseded)
  /// `state/backups.json` cannot be read: this node cannot ask whether it was taken over.
  case unreadableBackups(node: String, StateFileError)

  public var description: String {
    switch self {
    case .superseded(let node, let s):
      if let to = s.recoveredTo {
        "node \(node) was recovered to \(to) after a takeover; it must not serve as a primary. Make it the backup of the new primary: `understudy follow --node \(node) --primary HOST:PORT --secret-file F`"
      } else {
        "node \(node) was taken over by generation \(s.generation.map(\.description) ?? "?")\(s.address.map { " at \($0)" } ?? "") (event 829); it must not serve. Run file recovery to the 888 position: `understudy recover --node \(node) --to-mat SNO:RBA`, then `understudy follow`"
      }
    case .unreadableBackups(let node, let error):
      "cannot read \(error.path) (\(error.reason)): it lists where the backups of node \(node) serve once they take over, so without it this primary cannot tell whether one did and must not serve. Repair it (a JSON array of {\"node\": ID, \"listen\": \"HOST:PORT\"}, one per backup) or, only if no backup of this node has taken over, remove it: each backup adds itself again when it connects"
    }
  }
}
