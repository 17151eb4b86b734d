// `resolve --skip TXID`: after an updater conflict the operator may tell a backup to pass
// over that one transaction. The skip is recorded in the backup database's
// `understudy_skipped` table in the same SQLite transaction that moves the applied
// position past it, and logged (9053). The backup then no longer holds a prefix of the
// MAT, so a later takeover reports 858 naming the skipped transaction, not 888.

import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport

public struct SkippedTransaction: Sendable, Equatable {
  public var txid: TransactionID
  public var position: MATPosition
  public var end: MATPosition
}

public enum ResolveError: Error, CustomStringConvertible {
  case notNext(node: String, txid: TransactionID, next: TransactionID?, at: MATPosition)

  public var description: String {
    switch self {
    case .notNext(let node, let txid, let next, let at):
      if let next {
        "transaction \(txid) is not the one the updater of \(node) stopped at: the next to apply is transaction \(next) at \(at). Only that one can be skipped"
      } else {
        "transaction \(txid) cannot be skipped on \(node): the image trail holds no transaction at \(at), where the updater stands"
      }
    }
  }
}

public enum Resolve {
  static let createTable = """
    CREATE TABLE IF NOT EXISTS understudy_skipped(
      txid INTEGER PRIMARY KEY, sno INTEGER NOT NULL, rba INTEGER NOT NULL,
      end_sno INTEGER NOT NULL, end_rba INTEGER NOT NULL, skipped_micros INTEGER NOT NULL)
    """

  /// Skips `txid`, which must be the next transaction the backup's updater would apply.
  /// The daemon must be stopped.
  public static func skip(node: String, txid: TransactionID) throws -> SkippedTransaction {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .backup, command: "resolve --skip")
    }
    let lock = try DaemonLock.acquire(layout)
    defer { withExtendedLifetime(lock) {} }
    let db = try Connection(path: config.database)
    try db.execute("BEGIN IMMEDIATE")
    do {
      var state = try CommitState.read(db)
      var next: PositionedRecord?
      if layout.image.fileExists(sno: state.end.sno),
        case .record(let r) = try TrailReader(directory: layout.image, from: state.end).next()
      {
        next = r
      }
      guard let record = next, record.record.txid == txid, txid == state.lastTxid.next else {
        throw ResolveError.notNext(node: node, txid: txid, next: next?.record.txid, at: state.end)
      }
      try db.execute(createTable)
      try db.query(
        "INSERT INTO understudy_skipped VALUES (?, ?, ?, ?, ?, ?)",
        [
          .integer(Int64(txid.rawValue)), .integer(Int64(record.position.sno)), .integer(Int64(record.position.rba)),
          .integer(Int64(record.end.sno)), .integer(Int64(record.end.rba)), .integer(Clock.nowMicros()),
        ])
      state.advance(txid: txid, position: record.position, end: record.end)
      try state.save(db)
      // The operator accepts the database as it is, changed outside replication: its
      // kept checksum is made that of what it holds (a full scan, once).
      try IncrementalChecksum.recompute(on: db)
      try db.execute("COMMIT")
      EventLog(layout: layout, node: config.nodeId.description).log(
        .transactionSkipped,
        "transaction \(txid) at \(record.position) skipped by the operator: it is not in the backup database, which no longer holds a prefix of the MAT",
        [("txid", .int(Int64(txid.rawValue))), ("position", record.position.json)])
      return SkippedTransaction(txid: txid, position: record.position, end: record.end)
    } catch {
      try? db.execute("ROLLBACK")
      throw error
    }
  }

  /// The transactions skipped on this backup, oldest first.
  public static func skipped(_ db: Connection) throws -> [SkippedTransaction] {
    guard
      try db.scalarInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'understudy_skipped'") == 1
    else { return [] }
    return try db.query("SELECT txid, sno, rba, end_sno, end_rba FROM understudy_skipped ORDER BY txid").map { row in
      func int(_ i: Int) -> Int64 { if case .integer(let v) = row[i] { v } else { 0 } }
      return SkippedTransaction(
        txid: TransactionID(UInt64(int(0))), position: MATPosition(sno: UInt32(int(1)), rba: UInt64(int(2))),
        end: MATPosition(sno: UInt32(int(3)), rba: UInt64(int(4))))
    }
  }

  /// The commits applied after the first skipped one: what the backup kept although it
  /// holds no MAT prefix (858 lists each as 823). Empty if the image trail no longer has them.
  static func keptAfterSkip(_ db: Connection, image: TrailDirectory, skipped: [SkippedTransaction]) throws
    -> [(txid: TransactionID, position: MATPosition)]
  {
    guard let first = skipped.first, image.fileExists(sno: first.end.sno) else { return [] }
    let end = try CommitState.read(db).end
    let skippedIDs = Set(skipped.map(\.txid))
    let reader = try TrailReader(directory: image, from: first.end)
    var kept: [(TransactionID, MATPosition)] = []
    while case .record(let r) = try reader.next(), r.position < end {
      if r.record.type == .commit && !skippedIDs.contains(r.record.txid) { kept.append((r.record.txid, r.position)) }
    }
    return kept
  }
}
