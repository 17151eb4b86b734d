// A backup that a new primary told of its generation (a follow hint, taken in by the
// backup's daemon): once it has applied every whole transaction its image trail holds,
// a database that is exactly the new generation's base (node, position, transaction and,
// checked by the new primary, checksum) follows the new primary without a copy. Any
// other stays as it was and says what it needs (9085): it holds more than the new
// primary (RDF's triple contingency) or less, and a full copy brings it back either way.

import Apply
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
      let base = hint.base
      // Killed after the database was tied to the new primary's MAT, before the config
      // said so (the old image trail is gone by then): the follow is finished the same
      // way, the new primary checking it again. Nothing is applied first.
      let tied = try CommitState.read(databaseAt: config.database)
      if tied.nodeID == hint.node, tied.end == base.matStart {
        _ = try Follow.follow(
          layout, primary: hint.address, key: try Secret.load(path: layout.secretKey), fullCopy: false,
          prior: (base.priorNode, base.priorEnd, base.priorTxid))
        return true
      }
      var (_, state) = try Updater.drain(image: layout.image, database: config.database, events: events)
      // Less than the new primary had: it sends what is missing from its image trail.
      if state.nodeID == base.priorNode, state.end < base.priorEnd {
        try catchUp(layout, config, from: hint, state: state)
        state = try Updater.drain(image: layout.image, database: config.database, events: events).state
      }
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

  /// Streams the records between this backup's image trail end and the new primary's
  /// base from the new primary's image trail into its own, checked and synced as the
  /// receiver writes them; the new primary ends the link once it has sent them all.
  static func catchUp(_ layout: NodeLayout, _ config: NodeConfig, from hint: FollowHint, state: CommitState) throws {
    let (writer, _) = try ImageTrailWriter.open(directory: layout.image, last: state.last, applied: state.end)
    let key = try Secret.load(path: layout.secretKey)
    let link = Link.Connection(
      socket: try Socket.connect(to: try HostPort(parsing: hint.address), timeout: 5),
      maxPayload: Frame.maxStreamPayload)
    defer { link.socket.shutdown() }
    _ = try Handshake.connect(
      link,
      as: LinkIdentity(config, key: key))
    try link.send(.start(from: writer.end, lastCRC: writer.lastCRC))
    do {
      while writer.end < hint.base.priorEnd {
        switch try link.receive(timeout: 30) {
        case .fileStart(let header, let size): try writer.beginFile(header: header, size: Int(size))
        case .records(let position, let bytes): _ = try writer.append(position: position, bytes: bytes)
        case .heartbeat: continue
        default: throw link.refusingFrame("expected the old generation's records")
        }
      }
    } catch LinkError.refusedByPeer {
      // Its last word: caught up (or why not; the drain and the check say which).
    }
    try writer.sync()
  }

  static func refuse(_ hint: FollowHint, _ layout: NodeLayout, _ events: EventLog, _ why: String) {
    events.log(
      .followHintRefused,
      "not following the primary of generation \(hint.generation) at \(hint.address): \(why). It needs a full copy: `understudy stop --node \(layout.root)`, `understudy follow --node \(layout.root) --full-copy --primary \(hint.address) --secret-file \(layout.secretKey)`, then start it",
      [("listen", .string(hint.address)), ("generation", .int(Int64(hint.generation.rawValue)))])
  }
}
