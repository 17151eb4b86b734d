// File recovery to a MAT position (TMF's RECOVER FILES … TOMATPOSITION): on the old
// primary after a takeover, undo every transaction whose commit record lies at or after
// P, so the database equals the new primary's at takeover, and list each one undone.
//
// Order, each step safe to repeat: replay the node's own MAT; check P; write the
// decision (`state/recovery.json`) and the lost-transactions report; undo newest first
// and tie the database to a fresh MAT file in ONE SQLite transaction; fence the undone
// records out of the MAT (copied to `fenced/SNO-RBA/`, zeroed or moved away); record the
// recovery in the config; log 400.

import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport

public struct FileRecoveryResult: Codable, Sendable, Equatable {
  public var recoveredTo: MATPosition
  public var undone: Int
  public var checksum: String
  public var report: String
  /// Where the node's next MAT records would go: a fresh file, past every undone record.
  public var freshStart: MATPosition
  public var lastTxid: TransactionID
  /// Seconds spent in each step of this run (`probe`, `replay`, `decide`, `undo`,
  /// `fence`, `checksum`), for the benchmark and the curious.
  public var timings: [String: Double] = [:]

  public var json: JSON {
    .object([
      ("recoveredTo", recoveredTo.json), ("undone", .int(Int64(undone))), ("checksum", .string(checksum)),
      ("report", .string(report)), ("freshStart", freshStart.json), ("lastTxid", .int(Int64(lastTxid.rawValue))),
    ])
  }
}

public enum FileRecoveryError: Error, CustomStringConvertible {
  case notABoundary(MATPosition, reason: String)
  case beyondEnd(MATPosition, trailEnd: MATPosition)
  case anotherNode(MATPosition, file: String, writtenBy: NodeID, node: NodeID)
  case anotherGeneration(MATPosition, file: String, generation: Generation, current: Generation)
  case beforeSegment(MATPosition, segmentStart: MATPosition)
  case stillPrimary(node: String, generation: Generation, asked: [String])
  case purged(MATPosition, oldestKept: MATPosition)
  case otherRecovery(node: String, recorded: MATPosition)

  public var description: String {
    switch self {
    case .notABoundary(let p, let reason):
      "\(p) is not a record boundary of this node's MAT: \(reason). Use the position of an 888 event"
    case .beyondEnd(let p, let end):
      "\(p) lies beyond the end of this node's MAT (\(end)); it is not a position of this node's history"
    case .anotherNode(let p, let file, let writer, let node):
      "\(p) is in \(file), written by node \(writer), not this node \(node)"
    case .anotherGeneration(let p, let file, let generation, let current):
      "\(p) is in \(file) of generation \(generation); this node's current generation is \(current)"
    case .beforeSegment(let p, let start):
      "\(p) lies before this node's current MAT segment, which starts at \(start) (an earlier generation or an earlier recovery)"
    case .purged(let p, let oldest):
      "\(p) lies in a MAT file this node removed (its MAT now starts at \(oldest)): the backup that took over had been dropped from retention (event 9042), so no file recovery can reach its position. Make this node a backup with a full copy: `understudy follow --node NODE --full-copy --primary HOST:PORT --secret-file FILE`"
    case .stillPrimary(let node, let generation, let asked):
      "node \(node) is still the primary of generation \(generation): no newer generation is known (no 829). \(asked.isEmpty ? "It has served no backup that could have taken over" : "Asked \(asked.joined(separator: ", ")): none answers as a newer primary"). Start the new primary's daemon and try again; file recovery on a live primary would discard committed work"
    case .otherRecovery(let node, let recorded):
      "node \(node) has a file recovery to \(recorded) recorded (state/recovery.json); run `understudy recover --node \(node) --to-mat \(recorded)` to finish it"
    }
  }
}

public enum FileRecovery {
  /// Undoes `records` and moves the database checksum by the rows the undo changed
  /// (the preupdate hook sees them), in O(changes). A DDL among them may change a table's
  /// columns midway, so then the checksum is recomputed instead.
  static func undoKeepingChecksum(_ records: [PositionedRecord], on db: Connection) throws {
    var ddl = false
    var sequence = false
    // What the records say they did to the checksum (format 2), when every one says it:
    // undoing them must move it back by exactly that.
    var said = RecordedChecksum()
    for record in records where record.record.type == .commit {
      let items = try CommitPayload.decode(record.record.payload)
      said.add(items)
      for case .ddl(let sql) in items {
        if SequenceItem.isItem(sql) { sequence = true } else { ddl = true }
      }
    }
    guard !ddl else {
      try Undo.undo(records, on: db)
      try IncrementalChecksum.recompute(on: db)
      return
    }
    let tracker = ChecksumTracker(connection: db)
    try tracker.track { try Undo.undo(records, on: db, capture: tracker.capture) }
    // A row changed outside Understudy in a column no changeset names still undoes, but
    // its digest is not the one the primary had: the database is not what its MAT says.
    if let said = said.delta, let (table, undone, primary) = tracker.delta.negated.firstDifference(from: said) {
      throw UndoError.diverged(table: table, undone: "\(undone)", recorded: "\(primary)")
    }
    if sequence { tracker.noteSequence() }
    try tracker.commit()
  }

  struct Journal: Codable {
    var phase: String  // "decided", then "complete"
    var to: MATPosition
    var trailEnd: MATPosition
    var fresh: MATPosition
    var report: String
    var undone: Int
    var lastTxid: TransactionID
    var generation: Generation
    var result: FileRecoveryResult?
    /// The fresh file's chain seed: the CRC of the MAT's last record, so that a reader
    /// that walks from the old records into the fresh file (before the undo commits)
    /// finds an unbroken chain and an empty file, not corruption.
    var freshSeed: UInt32?
    /// 9051 is in the event log (a run killed before logging it logs it when run again).
    var logged: Bool?
  }

  static func journalPath(_ layout: NodeLayout) -> String { layout.state + "/recovery.json" }

  public static func run(
    node: String, to position: MATPosition, report: String?, progress: (String) -> Void = { _ in }
  ) throws -> FileRecoveryResult {
    let layout = NodeLayout(root: node)
    var config = try layout.loadConfig()
    guard config.role == .primary else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .primary, command: "file recovery")
    }
    let lock = try DaemonLock.acquire(layout)
    defer { withExtendedLifetime(lock) {} }
    let events = EventLog(layout: layout, node: config.nodeId.description)

    var timings: [String: Double] = [:]
    var mark = Clock.monotonicSeconds()
    func lap(_ step: String) {
      let now = Clock.monotonicSeconds()
      timings[step, default: 0] += now - mark
      mark = now
    }
    var journal: Journal
    if let recorded = try StateFile.read(Journal.self, at: journalPath(layout)),
      recorded.generation == config.generation
    {
      guard recorded.to == position else { throw FileRecoveryError.otherRecovery(node: node, recorded: recorded.to) }
      if let result = recorded.result, recorded.phase == "complete" { return result }
      journal = recorded
    } else {
      if config.superseded == nil {
        progress("asking the backups this node served whether one took over")
        guard
          let (peer, address) = try Fencing.findNewerGeneration(layout, config, refused: { Fencing.log($0, events) })
        else {
          throw FileRecoveryError.stillPrimary(
            node: node, generation: config.generation, asked: try Fencing.knownBackups(layout).map(\.listen))
        }
        config = try Fencing.supersede(
          layout, generation: peer.generation, by: peer.nodeID, address: address, events: events)
      }
      lap("probe")
      progress("replaying this node's own MAT")
      try AuditedDatabase.open(node: node).close()
      lap("replay")
      let state = try CommitState.read(databaseAt: config.database)
      let undo = try recordsToUndo(layout, config, from: position, trailEnd: state.end, lastTxid: state.lastTxid)
      let fresh = try Promotion.freshSegment(layout, after: state.end)
      journal = Journal(
        phase: "decided", to: position, trailEnd: state.end, fresh: fresh,
        report: NodeSetup.absolute(report ?? layout.state + "/lost-transactions-\(position.sno)-\(position.rba).jsonl"),
        undone: undo.filter { $0.record.type == .commit }.count,
        lastTxid: undo.first(where: { $0.record.type == .commit }).map { TransactionID($0.record.txid.rawValue - 1) }
          ?? state.lastTxid,
        generation: config.generation)
      journal.freshSeed = try undo.last?.crc ?? lastCRC(layout.mat, state)
      try StateFile.write(journal, to: journalPath(layout))
    }
    if journal.logged != true {
      events.log(
        .fileRecoveryDecided,
        "file recovery to MAT position \(journal.to): undoing \(journal.undone) transactions, listed in \(journal.report)",
        [("position", journal.to.json), ("count", .int(Int64(journal.undone))), ("report", .string(journal.report))])
      journal.logged = true
      try StateFile.write(journal, to: journalPath(layout))
    }

    lap("decide")
    let db = try Connection(path: config.database)
    let state = try CommitState.read(databaseAt: config.database)
    if state.end != journal.fresh {  // not undone yet: the database still ends where the MAT did
      let records = try recordsToUndo(
        layout, config, from: journal.to, trailEnd: journal.trailEnd, lastTxid: state.lastTxid)
      try writeReport(records, to: journal.report)
      progress("undoing \(records.count) transactions, newest first")
      if !layout.mat.fileExists(sno: journal.fresh.sno) {
        _ = try TrailWriter.create(
          directory: layout.mat, nodeID: config.nodeId, generation: config.generation, sno: journal.fresh.sno,
          chainSeed: journal.freshSeed ?? 0, fileSize: config.trailFileSize)
      }
      try db.execute("BEGIN IMMEDIATE")
      do {
        try undoKeepingChecksum(records, on: db)
        var recovered = state.rebased(nodeID: config.nodeId, start: journal.fresh)
        recovered.lastTxid = journal.lastTxid
        try recovered.saveWithNodeID(db)
        try db.execute("COMMIT")
      } catch {
        try? db.execute("ROLLBACK")
        throw error
      }
    }
    lap("undo")
    try fence(layout, from: journal.to, trailEnd: journal.trailEnd, fresh: journal.fresh)
    lap("fence")
    let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
    lap("checksum")

    config = try layout.loadConfig()
    config.matStart = journal.fresh
    var superseded =
      config.superseded ?? .init(generation: nil, by: nil, address: nil, learnedMicros: Clock.nowMicros())
    superseded.recoveredTo = journal.to
    superseded.recoveredTxid = journal.lastTxid
    config.superseded = superseded
    try layout.saveConfig(config)
    try WriteBlock.set(
      layout,
      reason:
        "it was recovered to \(journal.to) after a takeover; make it the backup of the new primary with `understudy follow --node \(node) --primary HOST:PORT --secret-file F`"
    )
    var result = FileRecoveryResult(
      recoveredTo: journal.to, undone: journal.undone, checksum: checksum, report: journal.report,
      freshStart: journal.fresh, lastTxid: journal.lastTxid)
    events.log(
      .fileRecoveryComplete,
      "file recovery to MAT position SNO \(journal.to.sno) RBA \(journal.to.rba) complete: \(journal.undone) transactions undone; checksum \(checksum)",
      [
        ("position", journal.to.json), ("count", .int(Int64(journal.undone))), ("checksum", .string(checksum)),
        ("report", .string(journal.report)),
      ])
    lap("finish")  // the journal's last write is not timed: its copy of the result holds the timings
    result.timings = timings
    journal.phase = "complete"
    journal.result = result
    try StateFile.write(journal, to: journalPath(layout))
    return result
  }

  /// Checks that `p` is a record boundary of this node's current MAT segment and returns
  /// the records from it to the end. Reads only from `p` on: the cost grows with what is
  /// undone, not with the size of the history. A position inside a record would have to
  /// decode with a valid CRC and then chain into every later record to pass.
  static func recordsToUndo(
    _ layout: NodeLayout, _ config: NodeConfig, from p: MATPosition, trailEnd: MATPosition, lastTxid: TransactionID
  ) throws -> [PositionedRecord] {
    let segmentStart = config.matStart ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
    guard p >= segmentStart else { throw FileRecoveryError.beforeSegment(p, segmentStart: segmentStart) }
    guard p <= trailEnd else { throw FileRecoveryError.beyondEnd(p, trailEnd: trailEnd) }
    let mat = layout.mat
    guard mat.fileExists(sno: p.sno) else {
      if let first = try mat.snos().first, p.sno < first {
        throw FileRecoveryError.purged(p, oldestKept: MATPosition(sno: first, rba: TrailFormat.firstRBA))
      }
      throw FileRecoveryError.notABoundary(p, reason: "there is no MAT file \(TrailFormat.fileName(sno: p.sno))")
    }
    let file = mat.filePath(sno: p.sno)
    guard case .success(let header) = FileHeader.decode(try mat.headerAndSize(sno: p.sno).header) else {
      throw FileRecoveryError.notABoundary(p, reason: "the header of \(file) does not decode")
    }
    guard header.nodeID == config.nodeId else {
      throw FileRecoveryError.anotherNode(p, file: file, writtenBy: header.nodeID, node: config.nodeId)
    }
    guard header.generation == config.generation else {
      throw FileRecoveryError.anotherGeneration(
        p, file: file, generation: header.generation, current: config.generation)
    }
    guard p != trailEnd else { return [] }
    var records: [PositionedRecord] = []
    do {
      let reader = try TrailReader(directory: mat, from: p)
      while true {
        // Stops at the end it was given: a fresh file may already follow it.
        let step = records.last?.end == trailEnd ? .end(trailEnd) : try reader.next()
        switch step {
        case .record(let r): records.append(r)
        case .end(let end), .tornTail(let end, _):
          guard end == trailEnd, !records.isEmpty else {
            throw FileRecoveryError.notABoundary(
              p, reason: "reading from it does not lead to the MAT's end \(trailEnd)")
          }
          var txid = lastTxid
          for r in records.reversed() where r.record.type == .commit {
            guard r.record.txid == txid else {
              throw FileRecoveryError.notABoundary(
                p, reason: "the records from it do not end with transaction \(lastTxid)")
            }
            txid = TransactionID(txid.rawValue - 1)
          }
          return records
        }
      }
    } catch let error as FileRecoveryError {
      throw error
    } catch {
      throw FileRecoveryError.notABoundary(p, reason: "\(error)")
    }
  }

  /// The CRC of the record that ends at `state.end`, or the chain seed of the file it
  /// would be in when the segment holds no record yet.
  static func lastCRC(_ mat: TrailDirectory, _ state: CommitState) throws -> UInt32 {
    if let last = state.last, case .record(let r) = try TrailReader(directory: mat, from: last).next() {
      return r.crc
    }
    guard case .success(let header) = FileHeader.decode(try mat.headerAndSize(sno: state.end.sno).header) else {
      return 0
    }
    return header.chainSeed
  }

  /// The lost-transactions report: one JSON line per undone transaction, oldest first
  /// (Schemas/lost-transactions.schema.json). Written whole before anything changes.
  static func writeReport(_ records: [PositionedRecord], to path: String) throws {
    var text = ""
    for r in records where r.record.type == .commit {
      // What was lost, for the operator: DDL and rows, not the record's checksum delta.
      var t = try DecodedTransaction(r)
      t.items.removeAll { if case .checksum = $0 { true } else { false } }
      text += t.json.serialized() + "\n"
    }
    try DurableFile.create(path: path, contents: Array(text.utf8))
  }

  /// Takes the undone records out of the MAT for good: the bytes from `from` to the end
  /// of what was written in its file are copied to `fenced/SNO-RBA/` (a sparse file with
  /// the same header, so positions stay as they were) and zeroed; later files are moved
  /// there. Replay and extractors start at the fresh file and could not reach them anyway.
  /// The cost follows the undone records, not the (preallocated) file size.
  static func fence(_ layout: NodeLayout, from: MATPosition, trailEnd: MATPosition, fresh: MATPosition) throws {
    try setAside(layout.mat, into: layout.fenced, from: from, trailEnd: trailEnd, before: fresh.sno)
  }

  /// Moves the records of `trail` from `from` to `trailEnd` (and every file after
  /// `from`'s, before file `before`) into `root/SNO-RBA/`, as `fence` describes.
  static func setAside(
    _ mat: TrailDirectory, into root: String, from: MATPosition, trailEnd: MATPosition, before: UInt32
  ) throws {
    let fenced = TrailDirectory(path: root + "/\(from.sno)-\(from.rba)")
    try FileManager.default.createDirectory(atPath: fenced.path, withIntermediateDirectories: true)
    if mat.fileExists(sno: from.sno) {
      let handle = try AuditTrail.FileHandle(path: mat.filePath(sno: from.sno), flags: O_RDWR)
      let size = try handle.size()
      let written = from.sno == trailEnd.sno ? Int(trailEnd.rba) : size
      if Int(from.rba) < written, try handle.firstNonZero(from: Int(from.rba), to: written) != nil {
        let tail = try handle.read(count: written - Int(from.rba), at: Int(from.rba))
        if !fenced.fileExists(sno: from.sno) {
          let copy = fenced.filePath(sno: from.sno)
          let temp = try AuditTrail.FileHandle(path: copy + ".tmp", flags: O_WRONLY | O_CREAT | O_TRUNC)
          try temp.write(try handle.read(count: TrailFormat.fileHeaderSize, at: 0), at: 0)
          try temp.write(tail, at: Int(from.rba))
          try temp.sync()
          guard rename(copy + ".tmp", copy) == 0 else {
            throw TrailError.io(operation: "rename to", path: copy, errno: errno)
          }
        }
        try handle.write([UInt8](repeating: 0, count: tail.count), at: Int(from.rba))
        try handle.sync()
      }
    }
    for sno in try mat.snos() where sno > from.sno && sno < before {
      guard rename(mat.filePath(sno: sno), fenced.filePath(sno: sno)) == 0 else {
        throw TrailError.io(operation: "move to \(fenced.path)", path: mat.filePath(sno: sno), errno: errno)
      }
    }
    try DurableFile.syncDirectory(fenced.path)
    try DurableFile.syncDirectory(mat.path)
  }
}
