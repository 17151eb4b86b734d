// Applies a commit record to a database: its DDL and changesets, in order, with
// triggers off (their effects are already in the changesets). Any conflict stops the
// replay: changesets carry before images, so a mismatch means divergence. The backup's
// updater, the primary's recovery on open and `rebuild` all apply with it.

import AuditTrail
import Node
import SQLiteSupport

public enum Replay {
  /// Applies `record` inside the caller's open transaction. `tracker` keeps the
  /// database checksum (its caller commits it); without one, the kept checksum is
  /// invalidated.
  public static func apply(_ record: PositionedRecord, to db: Connection, tracker: ChecksumTracker? = nil) throws {
    do {
      try applyJoined([record], to: db, tracker: tracker)
    } catch let error as SQLiteError where db.isAutocommit || error.isResourceFailure {
      throw error  // the database could not be written (a full disk): not this record's fault
    } catch let divergence as Divergence {
      throw ApplyError.diverged(
        txid: record.record.txid, position: record.position, table: divergence.table,
        primary: "\(divergence.primary)", here: "\(divergence.here)")
    } catch {
      throw ApplyError.replayFailed(txid: record.record.txid, position: record.position, reason: "\(error)")
    }
  }

  /// Applies consecutive records inside the caller's open transaction, as `apply` would
  /// one by one, but with their changesets joined into one apply per run between DDL
  /// statements: `sqlite3changeset_apply` reads the table's columns and compiles its
  /// statements on every call, and a call per transaction was most of the updater's
  /// work. The changes keep the primary's order, so the joined apply meets the same
  /// rows in the same states. A failure of the joined apply names no transaction, so it
  /// is rolled back and the records are applied one by one to say which one fails.
  /// Returns why the joined apply failed if the records then applied one by one (which
  /// would be a bug here, not in the data), else nil.
  @discardableResult
  public static func apply(_ records: [PositionedRecord], to db: Connection, tracker: ChecksumTracker? = nil) throws
    -> String?
  {
    guard records.count > 1 else {
      if let record = records.first { try apply(record, to: db, tracker: tracker) }
      return nil
    }
    let saved = tracker?.saved
    try db.execute("SAVEPOINT understudy_replay")
    do {
      try applyJoined(records, to: db, tracker: tracker)
      if Failpoint.isArmed("joined-apply-fails") { throw Failpoint.Triggered("joined-apply-fails") }
      try db.execute("RELEASE understudy_replay")
      return nil
    } catch {
      // A full disk or an I/O error is not the joining's fault, and SQLite may have rolled
      // back the caller's whole transaction, savepoint and all: hand it up as it is.
      if db.isAutocommit { throw error }
      if let sqlite = error as? SQLiteError, sqlite.isResourceFailure {
        try? db.execute("ROLLBACK TO understudy_replay")
        throw error
      }
      try db.execute("ROLLBACK TO understudy_replay")
      try db.execute("RELEASE understudy_replay")
      if let saved { tracker?.restore(saved) }
      for record in records { try apply(record, to: db, tracker: tracker) }
      return "\(error)"
    }
  }

  /// The rows applied here moved a table's checksum other than the records say they
  /// moved the primary's.
  struct Divergence: Error, CustomStringConvertible {
    var table: String
    var primary: ChecksumDelta.Entry
    var here: ChecksumDelta.Entry
    var description: String {
      "table \(table) moved by \(here) here and by \(primary) on the primary: the rows differ"
    }
  }

  private static func applyJoined(_ records: [PositionedRecord], to db: Connection, tracker: ChecksumTracker?)
    throws
  {
    if tracker == nil { try IncrementalChecksum.invalidate(on: db) }
    // What the records say they did to the primary's checksum, when every one says it
    // (format 2, no DDL): the rows changed here must move this node's the same way.
    var said = RecordedChecksum()
    let before = tracker?.saved
    try db.withTriggersDisabled {
      var joined: [UInt8] = []
      // sqlite_sequence items wait for the joined apply (which only raises sequences) and
      // then run in order: the run ends with the sequences the primary had, and they
      // do not split the join at every AUTOINCREMENT insert.
      var sequences: [String] = []
      func flush() throws {
        if let tracker {
          try tracker.track { try Changeset.apply(joined, to: db) }
          if !sequences.isEmpty { tracker.noteSequence() }
        } else {
          try Changeset.apply(joined, to: db)
        }
        joined.removeAll(keepingCapacity: true)
        for sql in sequences { try db.execute(sql) }
        sequences.removeAll()
      }
      for record in records where record.record.type == .commit {
        let items = try CommitPayload.decode(record.record.payload)
        said.add(items)
        for item in items {
          switch item {
          case .checksum: break
          case .ddl(let sql) where SequenceItem.isItem(sql):
            sequences.append(sql)
          case .ddl(let sql):
            try flush()
            let version = try db.scalarInt("PRAGMA schema_version")
            try AddedColumnDefaults.executeDDL(on: db) { try db.execute(sql) }
            if try db.scalarInt("PRAGMA schema_version") != version { tracker?.noteSchemaChange() }
          case .changes(let changeset, _):
            joined += changeset
          }
        }
      }
      try flush()
    }
    if let tracker, let said = said.delta, let before,
      let (table, here, primary) = tracker.delta.subtracting(before).firstDifference(from: said)
    {
      throw Divergence(table: table, primary: primary, here: here)
    }
  }
}

extension Replay {
  /// Builds a new database from a whole trail on an empty base: the reference a
  /// primary's database must equal. Stops at a torn tail, like recovery.
  /// `upTo`: stop before the first record at or after it (an oracle for restores).
  public static func rebuild(trail: TrailDirectory, into path: String, upTo: MATPosition? = nil) throws -> (
    transactions: Int, end: MATPosition
  ) {
    guard let first = try trail.snos().first else {
      throw TrailError.badFile(file: trail.path, reason: "no trail files")
    }
    guard first == 1 else {
      throw TrailError.badFile(
        file: trail.path,
        reason:
          "it starts at \(TrailFormat.fileName(sno: first)): the files before it were removed (MAT retention, or a later generation's segment), and a rebuild needs the whole trail from \(TrailFormat.fileName(sno: 1))"
      )
    }
    let db = try Connection(path: path, mode: .readWriteCreate)
    try db.execute("PRAGMA journal_mode = WAL")
    let reader = try TrailReader(directory: trail, from: MATPosition(sno: first, rba: TrailFormat.firstRBA))
    var count = 0
    // It keeps its checksum as it goes, like any node: the rebuilt database's kept
    // checksum and a full scan of it must agree.
    let tracker = ChecksumTracker(connection: db)
    try db.execute("BEGIN IMMEDIATE")
    do {
      try IncrementalChecksum.recompute(on: db)
      while true {
        switch try reader.next() {
        case .record(let r) where upTo.map({ r.position < $0 }) ?? true:
          try apply(r, to: db, tracker: tracker)
          count += 1
        case .record(let r):
          try tracker.commit()
          try db.execute("COMMIT")
          return (count, r.position)
        case .end(let end), .tornTail(let end, _):
          try tracker.commit()
          try db.execute("COMMIT")
          return (count, end)
        }
      }
    } catch {
      try? db.execute("ROLLBACK")
      throw error
    }
  }
}
