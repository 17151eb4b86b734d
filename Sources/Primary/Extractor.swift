// The extractor: on the primary, one per connected backup. It keeps no restart state of
// its own: the receiver says where its image trail ends, and the extractor tails the MAT
// from there, shipping only records that are durable. A record the database has
// committed is durable (invariant 1: the MAT sync comes first), so the extractor asks
// the database's state row how far that is, rather than syncing the MAT itself: a sync
// per batch doubled the disk's work while a backup was attached. A record that stays
// beyond the committed end (its writer died between the MAT sync and the COMMIT, or its
// COMMIT failed) is synced and sent after a short grace, but only while the extractor
// holds SQLite's write lock: a writer at work holds it from before its MAT write until
// its COMMIT or the undo of an append that failed, so a record seen past the committed
// end under the lock stays, and every later writer takes it in. When idle it sends a
// heartbeat at least every half second.

import Apply
import AuditTrail
import Crypto
import Foundation
import Link
import Node
import SQLiteSupport

/// What the primary knows about one attached backup, from its acknowledgements.
public struct AttachedBackup: Codable, Sendable, Equatable {
  public var peer: String
  public var nodeID: NodeID
  public var acked: MATPosition?
  public var applied: MATPosition?
}

public final class Extractor {
  let layout: NodeLayout
  let link: Link.Connection
  let peer: LinkPeer
  let stop: StopFlag
  let events: EventLog
  let onAck: @Sendable (AttachedBackup) -> Void
  /// The backup has become the primary in a switchover; its MAT starts at the position.
  var onPromoted: @Sendable (MATPosition) -> Void = { _ in }

  /// A batch stops growing once it holds this many bytes of records.
  static let batchBytes = 1 << 20
  static let heartbeatInterval = 0.5
  /// How long a bad record may stay bad before it is corruption rather than a write in progress.
  static let corruptionGrace = 2.0
  /// How long a record may wait for its COMMIT before the extractor syncs it itself.
  static let commitGrace = 0.02
  /// How often to look for commits where the database's directory cannot be watched.
  static let pollInterval = 0.002
  /// See `ExtractorStateMachine.Timing.sendSpacing`: with none, a backup on the same
  /// disk cost a single writer about 45% of its rate (a backup fsync per commit).
  static let sendSpacing = 0.002

  init(
    layout: NodeLayout, link: Link.Connection, peer: LinkPeer, stop: StopFlag, events: EventLog,
    onAck: @escaping @Sendable (AttachedBackup) -> Void
  ) {
    self.layout = layout
    self.link = link
    self.peer = peer
    self.stop = stop
    self.events = events
    self.onAck = onAck
  }

  /// Serves a snapshot of the database for a backup's initial copy.
  func sendSnapshot(database: String) throws -> MATPosition {
    try DatabaseSnapshot.send(database: database, scratch: layout.state, on: link, stop: stop)
  }

  /// Streams records from `from` until the link drops or the daemon stops.
  func stream(from: MATPosition, lastCRC: UInt32?) throws {
    try ExtractorSession(self, from: from, lastCRC: lastCRC).run()
  }
}

/// One streaming session: the thread that carries out what `ExtractorStateMachine`
/// decides. Each turn reads what the database has committed, looks past the committed
/// end when a record waits there too long, ships the batch (or a heartbeat), hands over
/// in a switchover, and waits for the backup or a commit.
private final class ExtractorSession {
  let extractor: Extractor
  let link: Link.Connection
  let mat: TrailDirectory
  let reader: TrailReader
  var shipment: TrailShipment
  var machine: ExtractorStateMachine
  let database: SQLiteSupport.Connection
  let writeLock: WriteLockProbe
  let commits: DirectoryWatch?
  /// The MAT file last synced past the committed end, kept open for the next.
  var syncedFile: (sno: UInt32, handle: AuditTrail.FileHandle)?

  init(_ extractor: Extractor, from: MATPosition, lastCRC: UInt32?) throws {
    self.extractor = extractor
    link = extractor.link
    mat = extractor.layout.mat
    reader = try TrailShipment.reader(
      mat, from: from, lastCRC: lastCRC, on: link, mine: "this primary's MAT", theirs: "the backup")
    // Announce the starting file first, even if the next record lies in a later file:
    // the backup creates its image-trail files in order.
    shipment = TrailShipment(directory: mat)
    try link.send(try shipment.announce(sno: from.sno))
    machine = ExtractorStateMachine(
      from: from, lastCRC: lastCRC, now: Clock.monotonicSeconds(),
      timing: .init(
        corruptionGrace: Extractor.corruptionGrace, commitGrace: Extractor.commitGrace,
        pollInterval: Extractor.pollInterval, sendSpacing: Extractor.sendSpacing))
    let config = try extractor.layout.loadConfig()
    database = try SQLiteSupport.Connection(path: config.database, mode: .readOnly)
    writeLock = try WriteLockProbe(database: config.database)
    let directory = (config.database as NSString).deletingLastPathComponent
    commits = Failpoint.isArmed("no-inotify") ? nil : DirectoryWatch(directory: directory.isEmpty ? "." : directory)
  }

  /// A batch of records being gathered for one send.
  struct Batch {
    var records: [PositionedRecord] = []
    var bytes = 0
  }

  func run() throws {
    while !extractor.stop.isSet {
      commits?.drain()
      var batch = Batch()
      try readCommitted(into: &batch)
      if machine.shouldLookPastCommitted(batchIsEmpty: batch.records.isEmpty, now: Clock.monotonicSeconds()) {
        try takeStalledRecord(into: &batch)
      }
      if try shipment.send(
        batch.records, reaching: reader.position, on: link, heartbeatEvery: Extractor.heartbeatInterval)
      {
        try promoteIfDue()
      }
      if try awaitBackup(sent: !batch.records.isEmpty) { return }
    }
  }

  func take(_ r: PositionedRecord, into batch: inout Batch) throws {
    if case .refuse(let reason) = machine.read(r) { throw link.refusing(reason) }
    batch.records.append(r)
    batch.bytes += r.record.size
  }

  /// A reader can see a write in progress; damage that stays is corruption.
  func damaged(_ error: TrailError) throws {
    if machine.damaged(now: Clock.monotonicSeconds()) {
      extractor.events.log(.fileError, "the extractor stopped: \(error)", [("peer", .string(link.peer))])
      link.refuse("the primary's MAT is damaged: \(error)")
      throw error
    }
  }

  /// What the database has committed is durable and may travel: reading only that far,
  /// the extractor never meets a record still being written.
  func readCommitted(into batch: inout Batch) throws {
    machine.committed(try CommitState.committedEnd(database), now: Clock.monotonicSeconds())
    let durable = machine.durable
    reader.readAheadLimit = durable
    while batch.bytes < Extractor.batchBytes && reader.position < durable {
      do {
        switch try reader.next() {
        case .record(let r):
          try take(r, into: &batch)
        case .end, .tornTail:
          try damaged(
            .corrupt(
              file: mat.filePath(sno: reader.position.sno), position: reader.position,
              reason: "the database has committed up to \(durable), but the trail ends here"))
          return
        }
      } catch let error as TrailError {
        try damaged(error)
        return
      }
    }
  }

  /// A record beyond the committed end whose COMMIT does not follow within the grace:
  /// its writer died between the MAT sync and the COMMIT. It is in the MAT, so it is
  /// committed (recovery on open replays it); sync it here and send it.
  func takeStalledRecord(into batch: inout Batch) throws {
    // The lock only when there is something to decide: a writer waits while it is held.
    guard try reader.somethingFollows() else { return }
    try writeLock.whileHeld { db in
      // Committed meanwhile: the next turn reads it the usual way.
      if let committed = try CommitState.committedEnd(db), committed > machine.durable { return }
      guard case .record(let r)? = try? reader.next() else { return }
      // Earlier files were synced by the writer before it rolled over.
      let sno = r.position.sno
      if syncedFile?.sno != sno {
        syncedFile = (sno, try AuditTrail.FileHandle(path: mat.filePath(sno: sno), flags: O_RDONLY))
      }
      try syncedFile!.handle.syncData()
      machine.syncedPastCommitted(end: r.end)
      try take(r, into: &batch)
    }
  }

  /// A committed switchover to this backup, whose record it has applied: hand over.
  func promoteIfDue() throws {
    guard !machine.promoteSent, let plan = try SwitchoverJournal.read(extractor.layout), plan.phase == .committed,
      plan.target == extractor.peer.nodeID, let end = plan.end, machine.shouldPromote(end: end)
    else { return }
    try link.send(.promote(generation: plan.generation, end: end))
    extractor.events.log(
      .switchoverCommitted,
      "switchover: told backup \(extractor.peer.nodeID) at \(link.peer) to become the primary of generation \(plan.generation)",
      [("peer", .string(link.peer)), ("position", end.json)])
  }

  /// Drains acknowledgements. When nothing was sent, waits for one, for a commit, or for
  /// the next look past the committed end. After a send, no wait: batching follows the
  /// load, as what committed while this batch was read and sent is the next one (a fixed
  /// 5 ms gather put 5 ms on every commit's lag). True once the backup has become the
  /// primary: the stream ends.
  func awaitBackup(sent: Bool) throws -> Bool {
    var wait = machine.wait(sent: sent, watchingCommits: commits != nil)
    var watched: Int32?
    if let commits, !sent {
      // A watch set only now missed any commit since the look above: look once more.
      if commits.arm(), let committed = try CommitState.committedEnd(database), committed > machine.durable {
        wait = 0
      }
      watched = commits.fd
    } else {
      commits?.disarm()  // busy anyway: spare the writer an event per write
    }
    // Acks are taken as they come, but do not cut the wait short.
    let until = Clock.monotonicSeconds() + wait
    while try link.socket.waitReadable(timeout: wait, orAlso: watched).socket {
      wait = max(0, until - Clock.monotonicSeconds())
      switch machine.received(try link.receive(timeout: 5)) {
      case .acked(let acked, let applied):
        extractor.onAck(
          AttachedBackup(peer: link.peer, nodeID: extractor.peer.nodeID, acked: acked, applied: applied))
      case .promoted(let start):
        extractor.onPromoted(start)
        return true
      case .refuse(let reason):
        throw link.refusingFrame(reason)
      }
    }
    return false
  }
}

/// SQLite's write lock on the primary's database, taken only if free. A writer holds it
/// from before its MAT write until after its COMMIT, or until it has undone an append
/// that failed; while it is held here, nothing past the committed end can be undone.
final class WriteLockProbe {
  private let connection: SQLiteSupport.Connection

  init(database: String) throws {
    connection = try SQLiteSupport.Connection(path: database)
    connection.setBusyTimeout(milliseconds: 0)
  }

  /// Runs `body` holding the lock; does nothing while a writer holds it.
  func whileHeld(_ body: (SQLiteSupport.Connection) throws -> Void) throws {
    do {
      try connection.execute("BEGIN IMMEDIATE")
    } catch let error as SQLiteError where error.isBusy {
      return
    }
    defer { try? connection.execute("ROLLBACK") }
    try body(connection)
  }
}
