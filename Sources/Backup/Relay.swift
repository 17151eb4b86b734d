// A cascade: a backup passes on what it received to a next hop, the same bytes at the same
// `sno:rba`, in the same generation, so that the next hop's positions are its primary's.
// It serves on its listen address what a primary serves on its own: an initial copy (of
// its database, whose state row holds the primary's position) and the stream, from its
// image trail, of only what it has synced (acknowledged upstream), so the next hop never
// holds a record this backup could lose. Its challenge names the primary it relays
// (`origin`), so the next hop checks that its database follows that node.
//
// What the next hops have acknowledged is kept in `state/relayed.json`, written before a
// file is removed on its account: the purger keeps the image trail they still need.

import Apply
import AuditTrail
import Foundation
import Link
import Node

/// A next hop this backup keeps image trail for, from `needs` on.
struct RelayedHop: Codable, Sendable, Equatable {
  var node: NodeID
  /// Where its image trail ends (its last acknowledgement, or where it started).
  var needs: MATPosition
  var updatedMicros: Int64
}

final class Relay: @unchecked Sendable {
  // @unchecked: `needs` and `written` are read and written under `lock`; the rest is set once.
  let layout: NodeLayout
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress
  private let lock = NSLock()
  private var needs: [NodeID: RelayedHop]
  private var written: [RelayedHop]

  static let heartbeatInterval = 0.5
  static let batchBytes = 1 << 20

  init(layout: NodeLayout, events: EventLog, stop: StopFlag, progress: BackupProgress) throws {
    self.layout = layout
    self.events = events
    self.stop = stop
    self.progress = progress
    written = try Self.registered(layout)
    needs = Dictionary(written.map { ($0.node, $0) }, uniquingKeysWith: { $1 })
  }

  static func path(_ layout: NodeLayout) -> String { layout.relayed }

  /// The next hops and where their image trails end, as last recorded. No file: none yet.
  static func registered(_ layout: NodeLayout) throws -> [RelayedHop] {
    try StateFile.read([RelayedHop].self, at: path(layout)) ?? []
  }

  /// Records where a next hop's image trail ends; `durably` before anything it needs could go.
  func note(_ node: NodeID, needs position: MATPosition, durably: Bool = false) throws {
    lock.lock()
    needs[node] = RelayedHop(node: node, needs: position, updatedMicros: Clock.nowMicros())
    lock.unlock()
    if durably { _ = try record() }
  }

  /// Writes the registry when it changed; returns the earliest position a next hop needs.
  func record() throws -> MATPosition? {
    lock.lock()
    defer { lock.unlock() }
    let now = needs.values.sorted { $0.node.description < $1.node.description }
    if now.map(\.needs) != written.map(\.needs) || now.map(\.node) != written.map(\.node) {
      try StateFile.write(now, to: Self.path(layout))
      written = now
    }
    return now.map(\.needs).min()
  }

  /// A next hop asked for a copy of this backup's database, then for the stream.
  func sendCopy(to peer: LinkPeer, on link: Link.Connection, config: NodeConfig) throws {
    events.log(
      .initialCopyStarted, "relaying a copy of \(config.database) to \(link.peer) (next hop \(peer.nodeID))",
      [("peer", .string(link.peer))])
    // Kept from the applied end on, so nothing the copy needs after it goes meanwhile.
    if let applied = progress.snapshot.applied { try note(peer.nodeID, needs: applied, durably: true) }
    let position = try DatabaseSnapshot.send(database: config.database, scratch: layout.state, on: link, stop: stop)
    try note(peer.nodeID, needs: position, durably: true)
    events.log(
      .initialCopyComplete, "copy relayed to \(link.peer), consistent with MAT position \(position)",
      [("peer", .string(link.peer)), ("position", position.json)])
  }

  /// Streams the image trail from `from` until the link drops or the daemon stops: only
  /// what is synced, heartbeats at least every half second, acknowledgements recorded.
  func stream(to peer: LinkPeer, from: MATPosition, lastCRC: UInt32?, on link: Link.Connection) throws {
    let image = layout.image
    let reader = try TrailShipment.reader(
      image, from: from, lastCRC: lastCRC, on: link, mine: "this relay's image trail", theirs: "the next hop")
    var expectedPrev = lastCRC
    try note(peer.nodeID, needs: from, durably: true)
    events.log(
      .extractorSynchronized, "relaying the image trail from SNO \(from.sno) RBA \(from.rba) to \(link.peer)",
      [("peer", .string(link.peer)), ("position", from.json)])
    var shipment = TrailShipment(directory: image)
    try link.send(try shipment.announce(sno: from.sno))
    while !stop.isSet {
      let synced = progress.snapshot.acked ?? from
      reader.readAheadLimit = synced
      var batch: [PositionedRecord] = []
      var bytes = 0
      while bytes < Self.batchBytes && reader.position < synced {
        // Synced and acknowledged upstream, so whole: anything else is damage.
        guard case .record(let r) = try reader.next() else {
          throw link.refusing("this relay's image trail ends at \(reader.position), before its synced end \(synced)")
        }
        if let prev = expectedPrev, r.record.prevCRC != prev {
          throw link.refusing(
            "the next hop's image trail does not match this relay's before \(r.position); it needs a full copy")
        }
        expectedPrev = nil
        batch.append(r)
        bytes += r.record.size
      }
      _ = try shipment.send(batch, reaching: reader.position, on: link, heartbeatEvery: Self.heartbeatInterval)
      // Wait for more to be synced here (the receiver wakes us), then take the acks.
      if batch.isEmpty { _ = progress.waitForAcked(beyond: reader.position, timeout: 0.05) }
      while try link.socket.waitReadable(timeout: 0) {
        switch try link.receive(timeout: 5) {
        case .ack(let acked, _): try note(peer.nodeID, needs: acked)
        case let other: throw link.refusingFrame("unexpected \(other.type) frame while relaying")
        }
      }
    }
  }
}
