// `scconfig -M`: the acting production, its context fully stopped, marks its statemap
// dirty, so that the next resync of its follower is a complete copy (region recovery).

import AuditTrail
import Foundation
import Node

public enum StatemapMark {
  public static func markDirty(_ home: ServerHome, _ config: ContextConfig) throws -> Statemap {
    let layout = NodeLayout(root: config.node)
    let node = try layout.loadConfig()
    guard node.role == .primary, node.superseded == nil else { throw MIMIXError.statemapOnBackup(context: config.id) }
    let primary = config.reverseOf ?? config.id
    // A revived production's node still says primary: only the server the context failed
    // over to has a follower whose next resync reads this mark.
    guard try home.state(primary).active != primary else {
      throw MIMIXError.notActingProduction(context: primary)
    }
    guard try home.state(primary).fullStop, !DaemonLock.isHeld(layout) else {
      throw MIMIXError.notFullyStopped(context: config.id)
    }
    let why = "marked by scconfig -M on server \(config.server) at \(isoTime(micros: Clock.nowMicros()))"
    let statemap = try Statemap.markDirty(layout, why: why)
    EventLog(layout: layout, node: node.nodeId.description).log(
      .statemapDirty, "statemap of context \(config.id) marked dirty: the next resync is a full copy",
      [("context", .int(Int64(config.id.rawValue)))])
    return statemap
  }
}
