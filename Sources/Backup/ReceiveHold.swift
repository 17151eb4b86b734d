// A replica rolled back by a failover restore must not take again the records it set
// aside: the primary still has them and would send them at the next connection. Until
// the roles change (a takeover or a follow starts another generation), its daemon runs
// neither receiver nor updater (`state/receive-hold.json`).

import AuditTrail
import Foundation
import Node

public struct ReceiveHold: Codable, Sendable, Equatable {
  public var generation: Generation
  public var position: MATPosition
  public var reason: String

  public init(generation: Generation, position: MATPosition, reason: String) {
    self.generation = generation
    self.position = position
    self.reason = reason
  }

  static func path(_ layout: NodeLayout) -> String { layout.state + "/receive-hold.json" }

  public static func set(_ hold: ReceiveHold, _ layout: NodeLayout) throws {
    try StateFile.write(hold, to: path(layout))
  }

  public static func clear(_ layout: NodeLayout) { unlink(path(layout)) }

  /// The hold on this node in `generation`, if any. A file that cannot be read holds:
  /// receiving records a restore set aside would undo the restore.
  public static func current(_ layout: NodeLayout, generation: Generation) throws -> ReceiveHold? {
    guard let hold = try StateFile.read(ReceiveHold.self, at: path(layout)) else { return nil }
    return hold.generation == generation ? hold : nil
  }
}
