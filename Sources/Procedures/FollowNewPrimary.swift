// A backup that a new primary told of its generation (a follow hint, taken in by the
// backup's daemon): once it has applied every whole transaction its image trail holds,
// a database that is exactly the new generation's base (node, position, transaction and,
// checked by the new primary, checksum) follows the new primary without a copy. Any
// other stays as it was and says what it needs (9085): it holds more than the new
// primary (RDF's triple contingency) or less, and a full copy brings it back either way.

import AuditTrail
import Backup
import Foundation
import Link
import Node
import Primary

public enum FollowNewPrimary {
  /// Acts on a pending hint, once; true when the node now follows the new primary.
  /// Never throws for the hint's sake: the backup goes on either way.
  public static func takeHint(_ layout: NodeLayout, events: EventLog) -> Bool {
    guard let hint = try? FollowHintFile.read(layout) else { return false }
    defer { FollowHintFile.remove(layout) }
    do {
      let config = try layout.loadConfig()
      guard config.role == .backup, config.generation < hint.generation,
        FileManager.default.fileExists(atPath: config.database)
      else { return false }
      let (_, state) = try Updater.drain(image: layout.image, database: config.database, events: events)
      let base = hint.base
      guard state.nodeID == base.priorNode, state.end == base.priorEnd, state.lastTxid == base.priorTxid else {
        let relation =
          state.nodeID != base.priorNode
          ? "follows another history"
          : state.end > base.priorEnd
            ? "holds more than the new primary (it received transactions the new primary never had)"
            : "holds less than the new primary"
        refuse(
          hint, layout, events,
          "generation \(hint.generation) began after transaction \(base.priorTxid) at \(base.priorEnd) of node \(base.priorNode); this backup holds node \(state.nodeID) at \(state.end) after transaction \(state.lastTxid): it \(relation)"
        )
        return false
      }
      _ = try Follow.follow(
        layout, primary: hint.address, key: try Secret.load(path: layout.secretKey), fullCopy: false,
        prior: (state.nodeID, state.end, state.lastTxid))
      return true
    } catch {
      refuse(hint, layout, events, "\(error)")
      return false
    }
  }

  static func refuse(_ hint: FollowHint, _ layout: NodeLayout, _ events: EventLog, _ why: String) {
    events.log(
      .followHintRefused,
      "not following the primary of generation \(hint.generation) at \(hint.address): \(why). It needs a full copy: `understudy stop --node \(layout.root)`, `understudy follow --node \(layout.root) --full-copy --primary \(hint.address) --secret-file \(layout.secretKey)`, then start it",
      [("listen", .string(hint.address)), ("generation", .int(Int64(hint.generation.rawValue)))])
  }
}
