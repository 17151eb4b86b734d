// The updater: applies committed transactions from the image trail to the backup
// database in MAT order, exactly once. The applied position is the database's own
// state table, saved in the same SQLite transaction as the changes, so a kill at any
// moment leaves either all of a batch or none of it. Behind, it applies many commits per
// SQLite transaction. It reads only what the receiver has synced. A conflict means the
// backup was changed by someone else: it stops and says where, never skips.

import Apply
import AuditTrail
import Foundation
import Node
import SQLiteSupport

public final class Updater: @unchecked Sendable {
  let layout: NodeLayout
  let database: String
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress

  static let maxBatch = 5000
  static let maxBatchSeconds = 0.1

  init(layout: NodeLayout, database: String, events: EventLog, stop: StopFlag, progress: BackupProgress) {
    self.layout = layout
    self.database = database
    self.events = events
    self.stop = stop
    self.progress = progress
  }

  func run() {
    events.log(.updaterStarted, "updater started for \(database)")
    do {
      try applyLoop()
    } catch let error as ApplyError {
      guard case .diverged(let txid, let position, let table, _, _) = error else { return stopped(error) }
      let message = "updater stopped: \(error)"
      progress.update { $0.updaterStopped = message }
      events.log(
        .updaterDiverged, message,
        [("txid", .int(Int64(txid.rawValue))), ("position", position.json), ("table", .string(table))])
    } catch {
      stopped(error)
    }
  }

  private func stopped(_ error: Error) {
    switch error {
    case ApplyError.replayFailed(let txid, let position, let reason):
      let message =
        "updater stopped: transaction \(txid) at \(position) does not apply to the backup database: \(reason). The backup was changed outside replication; nothing after it is applied"
      progress.update { $0.updaterStopped = message }
      events.log(.updaterConflict, message, [("txid", .int(Int64(txid.rawValue))), ("position", position.json)])
    default:
      progress.update { $0.updaterStopped = "\(error)" }
      events.log(.updaterStoppedUnexpectedly, "updater stopped unexpectedly: \(error)")
    }
  }

  /// Backoff between attempts while the database cannot be written.
  static let retryFirst = 0.5
  static let retryMost = 5.0

  /// A batch that failed because the database could not be written (a full disk, an
  /// I/O error), not because of what it holds: rolled back, and worth trying again.
  struct Blocked: Error, CustomStringConvertible {
    var database: String
    /// The first record not applied; nil if the database's own position was not read yet.
    var position: MATPosition?
    var underlying: Error
    var description: String {
      "the updater cannot write the backup database \(database)\(position.map { " at \($0)" } ?? ""): "
        + ((underlying as? SQLiteError).map { "\($0.meaning) (\($0))" } ?? "\(underlying)")
    }
  }

  /// A database that cannot be written right now (`SQLiteError.isResourceFailure`: a
  /// full disk is SQLITE_FULL, an ENOSPC on the WAL an SQLITE_IOERR_WRITE).
  static func isResourceFailure(_ error: Error) -> Bool { (error as? SQLiteError)?.isResourceFailure == true }

  /// Applies until stopped. A blocked batch leaves nothing behind (the connection is
  /// closed, whatever SQLite had already rolled back); it is tried again with backoff from
  /// the database's own position, and `status` shows why meanwhile (`updaterWaiting`).
  private func applyLoop() throws {
    var backoff = Self.retryFirst
    var blockedSince: Blocked?
    while !stop.isSet {
      do {
        try applyConnected {
          // A batch went in: the database takes writes again.
          guard let blocked = blockedSince else { return }
          blockedSince = nil
          backoff = Self.retryFirst
          self.progress.update { $0.updaterWaiting = nil }
          self.events.log(
            .updaterStarted,
            "updater resumed: the backup database \(self.database) takes writes again (it was blocked\(blocked.position.map { " at \($0)" } ?? ""))"
          )
        }
        return
      } catch let blocked as Blocked {
        let message =
          "\(blocked); rolled back. It retries by itself (backing off from \(Self.retryFirst) s to \(Int(Self.retryMost)) s) and goes on once the database can be written: free space there"
        progress.update { $0.updaterWaiting = message }
        if blockedSince == nil {
          events.log(.fileError, message, blocked.position.map { [("position", $0.json)] } ?? [])
        }
        blockedSince = blocked
        stop.sleep(backoff)
        backoff = min(backoff * 2, Self.retryMost)
      }
    }
  }

  private func applyConnected(applied: () -> Void) throws {
    while !FileManager.default.fileExists(atPath: database) {  // the initial copy is running
      if stop.isSet { return }
      stop.sleep(0.1)
    }
    var state = CommitState?.none
    do {
      try applyConnected(state: &state, applied: applied)
    } catch let error where Self.isResourceFailure(error) {
      throw Blocked(
        database: database, position: state?.end ?? progress.snapshot.applied, underlying: error)
    }
  }

  private func applyConnected(state current: inout CommitState?, applied: () -> Void) throws {
    let db = try Connection(path: database)
    try db.execute("PRAGMA journal_mode = WAL")
    // The image trail is synced before the updater sees it, so losing the database's
    // tail to a power cut only means applying those records again.
    try db.execute("PRAGMA synchronous = NORMAL")
    let tracker = ChecksumTracker(connection: db)
    try db.execute("BEGIN")
    var state = try CommitState.read(db)
    try db.execute("COMMIT")
    current = state
    progress.update { $0.applied = state.end }
    var reader: TrailReader?
    let stops = UpdaterStopWatch(layout: layout, events: events, progress: progress)
    // Read, but past the stop point: the first record of a later batch.
    var held: PositionedRecord?

    while !stop.isSet {
      // Before every batch, so that once the stop's id is acknowledged no batch passes it.
      guard case .apply(let point) = stops.decide() else {
        stop.sleep(0.2)
        continue
      }
      guard let acked = progress.waitForAcked(beyond: state.end, timeout: 0.2), acked > state.end else { continue }
      if reader == nil {
        guard layout.image.fileExists(sno: state.end.sno) else { continue }
        reader = try TrailReader(directory: layout.image, from: state.end)
      }
      let started = Clock.monotonicSeconds()
      var taken = 0
      var haltedBefore: PositionedRecord?
      let (records, batch) = try Self.applyBatch(db, tracker: tracker, after: state, events: events) {
        guard haltedBefore == nil, taken < Self.maxBatch, Clock.monotonicSeconds() - started < Self.maxBatchSeconds
        else { return nil }
        let next: PositionedRecord
        if let record = held {
          held = nil
          next = record
        } else {
          // Only as far as the receiver has synced: beyond it a record may be half written.
          guard reader!.position < acked else { return nil }
          switch try reader!.next() {
          case .record(let record): next = record
          case .end(let end) where end >= acked:
            // The synced end is the start of a file announced with nothing in it yet (the
            // primary died between the file's announcement and its records).
            return nil
          case .end, .tornTail:
            throw TrailError.corrupt(
              file: layout.image.filePath(sno: reader!.position.sno), position: reader!.position,
              reason: "the receiver has synced the image trail up to \(acked), but no whole record starts here")
          }
        }
        if let point, point.halts(before: next) {
          held = next
          haltedBefore = next
          return nil
        }
        taken += 1
        return next
      }
      if let newest = records.last?.record.commitMicros {
        state = batch
        current = state
        progress.update {
          $0.applied = batch.end
          $0.appliedCommitMicros = newest
        }
        applied()
      }
      // Reported once the batch up to it has committed.
      if let point, let next = haltedBefore { stops.reach(point, appliedTo: state, before: next) }
    }
  }

  /// Applies the records `next` hands out (until it returns nil) in one SQLite transaction,
  /// with the position after them: all of them or none. Returns them and that position.
  /// `tracker` keeps the database checksum from the rows this backup changes.
  static func applyBatch(
    _ db: Connection, tracker: ChecksumTracker, after state: CommitState, events: EventLog?,
    next: () throws -> PositionedRecord?
  ) throws -> (records: [PositionedRecord], state: CommitState) {
    var batch = state
    var records: [PositionedRecord] = []
    tracker.reset()
    try db.execute("BEGIN IMMEDIATE")
    do {
      while let record = try next() {
        try admit(record, after: &batch)
        records.append(record)
      }
      if !records.isEmpty {
        if let reason = try Replay.apply(records, to: db, tracker: tracker) {
          events?.log(
            .batchAppliedOneByOne,
            "the batch \(records[0].position) to \(batch.end) applied one transaction at a time; joined it failed: \(reason)"
          )
        }
        try tracker.commit()
        try batch.save(db)
      }
      try db.execute("COMMIT")
    } catch {
      // On a full disk or an I/O error SQLite may already have rolled the transaction
      // back by itself; then there is nothing to roll back.
      if !db.isAutocommit { try? db.execute("ROLLBACK") }
      tracker.reset()
      throw error
    }
    return (records, batch)
  }

  /// Checks that `record` is the next in MAT order after `state`, and advances `state`.
  static func admit(_ record: PositionedRecord, after state: inout CommitState) throws {
    let expected = record.record.type.expectedTxid(after: state.lastTxid)
    guard record.record.txid == expected else {
      throw ApplyError.replayFailed(
        txid: record.record.txid, position: record.position,
        reason: "expected transaction \(expected) next in the image trail")
    }
    state.advance(txid: record.record.txid, position: record.position, end: record.end)
  }

  /// Applies every whole record the image trail holds beyond the database's position, in
  /// batches that each commit with the position (so a kill loses nothing done). For
  /// takeover, which holds the node's daemon lock: nothing more will be acknowledged, so
  /// what is on disk and whole is what the backup has. A torn last record is not a
  /// transaction the backup holds.
  public static func drain(image: TrailDirectory, database: String, events: EventLog? = nil) throws -> (
    applied: Int, state: CommitState
  ) {
    let db = try Connection(path: database)
    try db.execute("PRAGMA journal_mode = WAL")
    let tracker = ChecksumTracker(connection: db)
    var state = try CommitState.read(databaseAt: database)
    guard image.fileExists(sno: state.end.sno) else { return (0, state) }
    let reader = try TrailReader(directory: image, from: state.end)
    var applied = 0
    var done = false
    while !done {
      var taken = 0
      let (records, batch) = try applyBatch(db, tracker: tracker, after: state, events: events) {
        guard taken < maxBatch else { return nil }
        guard case .record(let record) = try reader.next() else {
          done = true
          return nil
        }
        taken += 1
        return record
      }
      state = batch
      applied += records.count
    }
    return (applied, state)
  }
}
