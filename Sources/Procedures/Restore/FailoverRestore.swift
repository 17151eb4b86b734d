// Failover restore (`scrt_ra -F`): the replica itself rolled back to a target, before a
// failover, when the primary's own damage was already replicated. The backup daemon is
// stopped first; the undo and the new position commit in ONE SQLite transaction; the
// image records past the target are set aside (`NODE/setaside/SNO-RBA/`), so that the
// updater, a takeover's drain or a restart never apply them again, and the daemon holds
// its receiver and updater (`ReceiveHold`) so that the primary does not send them again.
// The replica then holds a MAT prefix ending at the target: a takeover reports 888 there, and production's file
// recovery to it undoes the same transactions.
//
// Order, each step safe to repeat, as file recovery's: decide; hold; write the
// lost-transactions report and the journal (`state/failover-restore.json`); undo; set
// aside; move the safe position back; log 9094.

import Apply
import AuditTrail
import Backup
import Foundation
import Node
import SQLiteSupport

public struct FailoverRestoreResult: Codable, Sendable, Equatable {
  public var restoredTo: MATPosition
  public var target: String
  public var undone: Int
  public var lastTxid: TransactionID
  /// The commit time of the last record the replica holds now.
  public var micros: Int64?
  public var checksum: String
  public var report: String
  /// Where the set-aside records went (those applied and those only received).
  public var setAside: String
  public var setAsideEnd: MATPosition

  public var json: JSON {
    .object([
      ("restoredTo", restoredTo.json), ("target", .string(target)), ("undone", .int(Int64(undone))),
      ("lastTxid", .int(Int64(lastTxid.rawValue))), ("time", micros.map { .string(RestoreTime.text($0)) } ?? .null),
      ("checksum", .string(checksum)), ("report", .string(report)), ("setAside", .string(setAside)),
      ("setAsideEnd", setAsideEnd.json),
    ])
  }
}

public enum FailoverRestoreError: Error, CustomStringConvertible {
  case otherRestore(node: String, recorded: String)
  case takeoverUnfinished(node: String)
  case takeoverBehindRestore(node: String)

  public var description: String {
    switch self {
    case .takeoverUnfinished(let node):
      "node \(node) has a takeover decided and not finished (state/takeover.json); run `understudy takeover --node \(node)` (or `rtdr failover`) to finish it: a failover restore now would change what it promotes"
    case .takeoverBehindRestore(let node):
      "node \(node) has a failover restore decided and not finished (state/failover-restore.json); run the same `scrt_ra -F … -q` again to finish it before taking over, or the takeover would apply what the restore undoes"

    case .otherRestore(let node, let recorded):
      "node \(node) has a failover restore to \(recorded) decided and not finished (state/failover-restore.json); run the same `scrt_ra -F` again to finish it"
    }
  }
}

public enum FailoverRestore {
  struct Journal: Codable {
    var phase: String  // "decided", then "complete"
    var target: String
    var to: MATPosition
    /// The replica's applied end when decided, and the end of what its image trail held.
    var from: MATPosition
    var imageEnd: MATPosition
    var lastTxid: TransactionID
    var last: MATPosition?
    var micros: Int64?
    var undone: Int
    var report: String
    var generation: Generation
    var result: FailoverRestoreResult?
  }

  static func journalPath(_ layout: NodeLayout) -> String { layout.state + "/failover-restore.json" }
  static func setAsideRoot(_ layout: NodeLayout) -> String { layout.root + "/setaside" }

  public static func run(node: String, to target: RestoreTarget, progress: (String) -> Void = { _ in }) throws
    -> FailoverRestoreResult
  {
    let layout = NodeLayout(root: node)
    _ = try layout.loadConfig()
    // Not while a takeover runs or is decided and unfinished: stopping "the daemon" would
    // signal the takeover (it holds the daemon lock), and a decided takeover promotes at
    // the position it journaled, whatever this restore undid since.
    let exclusive = try TakeoverLock.acquire(layout, timeout: 10, waiting: progress)
    defer { withExtendedLifetime(exclusive) {} }
    var config = try layout.loadConfig()
    if try Takeover.unfinished(layout, config) != nil {
      throw FailoverRestoreError.takeoverUnfinished(node: node)
    }
    guard config.role == .backup else {
      throw RestoreError.notAReplica(
        node: node, reason: "it is the \(config.role) (a failover restore rolls back a recovery server's replica)")
    }
    if let pid = try DaemonLock.stopIfRunning(layout) { progress("stopped the backup daemon (pid \(pid))") }
    let lock = try DaemonLock.acquire(layout)
    defer { withExtendedLifetime(lock) {} }
    config = try layout.loadConfig()
    let events = EventLog(layout: layout, node: config.nodeId.description)
    let db = try Connection(path: config.database)

    var journal: Journal
    let recorded = try StateFile.read(Journal.self, at: journalPath(layout))
    let hold = try ReceiveHold.current(layout, generation: config.generation)
    if let recorded, recorded.generation == config.generation, recorded.phase != "complete" {
      guard recorded.target == target.description else {
        throw FailoverRestoreError.otherRestore(node: node, recorded: recorded.target)
      }
      journal = recorded
      try setHold(layout, journal)  // written before the journal; again, should it be gone
    } else if let recorded, recorded.generation == config.generation, let result = recorded.result,
      recorded.target == target.description, hold?.position == recorded.to,
      try CommitState.read(db).end == recorded.to
    {
      return result  // run again after it finished: the same answer
    } else {
      let window = try RestoreWindow.find(layout, database: config.database, withMarkers: target.isMarker)
      let state = try CommitState.read(db)
      let cut = try RestoreCut.resolve(target, in: window, image: layout.image, state: state)
      journal = Journal(
        phase: "decided", target: target.description, to: cut.position, from: state.end,
        imageEnd: try receivedEnd(layout.image, after: state.end), lastTxid: cut.lastTxid, last: cut.last,
        micros: cut.lastMicros, undone: cut.undone,
        report: layout.state + "/lost-transactions-restore-\(cut.position.sno)-\(cut.position.rba).jsonl",
        generation: config.generation)
      // Held before the decision is written: a daemon started before the restore is run
      // again to its end must neither apply nor receive past the target.
      try setHold(layout, journal)
      try FileRecovery.writeReport(cut.records, to: journal.report)
      try StateFile.write(journal, to: journalPath(layout))
      events.log(
        .failoverRestoreDecided,
        "failover restore to \(target) (MAT position \(cut.position)): undoing \(cut.undone) transactions, listed in \(journal.report)",
        [("position", cut.position.json), ("count", .int(Int64(cut.undone))), ("report", .string(journal.report))])
    }
    // No restore pin: the daemon, and so its purger, is stopped while this runs.
    Failpoint.reached("failover-restore-step")
    try db.execute("BEGIN IMMEDIATE")
    do {
      let state = try CommitState.read(db)
      if state.end == journal.from {
        // Not undone yet: the records from the target to the replica's end, read again.
        let window = try RestoreWindow.find(layout, config: config, state: state, withMarkers: false)
        let cut = try RestoreCut.resolve(.position(journal.to), in: window, image: layout.image, state: state)
        progress("undoing \(cut.undone) transactions on the replica, newest first, back to \(journal.to)")
        do {
          try FileRecovery.undoKeepingChecksum(cut.records, on: db)
        } catch let refused as UndoError {
          // Nothing changed: the replica goes on as a backup, neither held nor journaled.
          try? db.execute("ROLLBACK")
          unlink(journalPath(layout))
          ReceiveHold.clear(layout)
          throw RestoreError.cannotUndo(
            target: journal.target, reason: refused, replica: "the replica goes on as a backup")
        }
        try cut.state(from: state).save(db)
      } else if state.end != journal.to {
        throw RestoreError.imageTrail(
          position: state.end,
          reason:
            "the replica stands neither where the restore began (\(journal.from)) nor at its target (\(journal.to))")
      }
      try db.execute("COMMIT")
    } catch {
      if !db.isAutocommit { try? db.execute("ROLLBACK") }
      throw error
    }
    Failpoint.reached("failover-restore-step")
    if journal.to < journal.imageEnd {
      try FileRecovery.setAside(
        layout.image, into: setAsideRoot(layout), from: journal.to, trailEnd: journal.imageEnd, before: UInt32.max)
    }
    // The safe position is what the replica holds: `status`, and rtdr's comparison of the
    // recovery servers, must not see the end it had before.
    try SafePosition.record(journal.to, layout)
    Failpoint.reached("failover-restore-step")
    let checksum = try DatabaseChecksum.current(db).checksum
    let result = FailoverRestoreResult(
      restoredTo: journal.to, target: journal.target, undone: journal.undone, lastTxid: journal.lastTxid,
      micros: journal.micros, checksum: checksum, report: journal.report,
      setAside: setAsideRoot(layout) + "/\(journal.to.sno)-\(journal.to.rba)", setAsideEnd: journal.imageEnd)
    if journal.phase != "complete" {
      events.log(
        .failoverRestoreComplete,
        "failover restore complete: the replica holds the MAT up to \(journal.to) (\(journal.undone) transactions undone); checksum \(checksum). Its receiver holds until failover",
        [
          ("position", journal.to.json), ("count", .int(Int64(journal.undone))), ("checksum", .string(checksum)),
          ("report", .string(journal.report)),
        ])
    }
    journal.phase = "complete"
    journal.result = result
    try StateFile.write(journal, to: journalPath(layout))
    return result
  }

  static func setHold(_ layout: NodeLayout, _ journal: Journal) throws {
    try ReceiveHold.set(
      ReceiveHold(
        generation: journal.generation, position: journal.to,
        reason:
          "the replica was rolled back to \(journal.to) by a failover restore (\(journal.target)); the primary would send the records set aside again. Fail over (`rtdr failover`, 888 at \(journal.to)), or make it a backup again with `understudy follow --full-copy` (which copies the primary's database, past the restore)"
      ), layout)
  }

  /// A decided restore not yet run to its end, in the node's current generation: a
  /// takeover must not promote past it or around it.
  static func unfinished(_ layout: NodeLayout, _ config: NodeConfig) throws -> Journal? {
    guard let journal = try StateFile.read(Journal.self, at: journalPath(layout)),
      journal.generation == config.generation, journal.phase != "complete"
    else { return nil }
    return journal
  }

  /// `follow` makes the node a backup afresh (its image trail cleared): no hold, and the
  /// journal kept beside for the record.
  static func forget(_ layout: NodeLayout) {
    ReceiveHold.clear(layout)
    let path = journalPath(layout)
    if FileManager.default.fileExists(atPath: path) { rename(path, path + ".followed-\(Clock.nowMicros())") }
  }

  /// The end of the whole records the image trail holds from `position`.
  static func receivedEnd(_ image: TrailDirectory, after position: MATPosition) throws -> MATPosition {
    guard image.fileExists(sno: position.sno) else { return position }
    let reader = try TrailReader(directory: image, from: position)
    var end = position
    while case .record(let r) = try reader.next() { end = r.end }
    return end
  }
}
