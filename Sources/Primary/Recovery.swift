// Recovery on open: the primary brings its database up to its own MAT, replaying every
// commit the database does not hold yet, and cuts a torn tail.

import Apply
import AuditTrail
import Node
import SQLiteSupport

/// Brings a database up to its MAT (invariant 1) and finds where the next record goes.
enum Recovery {
  struct Outcome {
    var state: CommitState
    /// Where the next record goes. Past `state.end` only at the start of a file that a
    /// crash left empty after a roll-over: appending must continue there.
    var trailEnd: MATPosition
    /// The generation of the file the trail ends in: the writer continues in it.
    var generation: Generation
    var lastCRC: UInt32
    var replayed: Int
    var tornTail: (position: MATPosition, reason: String, bytes: Int)?
  }

  /// Inside an open write transaction: checks that the database's last commit is in the
  /// trail, replays every later commit, and cuts a torn tail.
  static func catchUp(_ db: Connection, trail: TrailDirectory, nodeID: NodeID, tracker: ChecksumTracker? = nil) throws
    -> Outcome
  {
    tracker?.reset()  // an earlier attempt rolled back
    var state = try CommitState.read(db)
    guard state.nodeID == nodeID else {
      throw ApplyError.foreignDatabase(database: db.path, belongsTo: state.nodeID.description, node: nodeID)
    }
    let reader = try TrailReader(directory: trail, from: state.last ?? state.end)
    var lastCRC = reader.lastCRC ?? 0
    if let last = state.last {
      switch try reader.next() {
      case .record(let r):
        guard r.record.txid == state.lastTxid, r.end == state.end else {
          throw PrimaryError.databaseDisagreesWithTrail(
            database: db.path, position: last,
            reason:
              "the database's last commit is transaction \(state.lastTxid) ending at \(state.end); the trail has transaction \(r.record.txid) ending at \(r.end) there"
          )
        }
        lastCRC = r.crc
      case .end(let end), .tornTail(let end, _):
        throw PrimaryError.databaseAheadOfTrail(
          database: db.path, txid: state.lastTxid, position: last, trailEnd: end)
      }
    }
    var replayed = 0
    /// Cuts what follows the last whole record and saves how far the database got.
    func finish(at end: MATPosition, torn: String?) throws -> Outcome {
      let cut = try TrailTail.cut(directory: trail, at: end)
      if replayed > 0 {
        try tracker?.commit()
        try state.save(db)
      }
      return Outcome(
        state: state, trailEnd: end, generation: reader.generation, lastCRC: reader.lastCRC ?? lastCRC,
        replayed: replayed,
        tornTail: torn.map { (end, $0, cut) } ?? (cut > 0 ? (end, "non-zero bytes after the last record", cut) : nil))
    }
    while true {
      switch try reader.next() {
      case .record(let r):
        let expected = r.record.type.expectedTxid(after: state.lastTxid)
        guard r.record.txid == expected else {
          throw PrimaryError.databaseDisagreesWithTrail(
            database: db.path, position: r.position,
            reason: "expected transaction \(expected) next, the trail has \(r.record.txid)")
        }
        try Replay.apply(r, to: db, tracker: tracker)
        state.advance(txid: r.record.txid, position: r.position, end: r.end)
        lastCRC = r.crc
        replayed += 1
      case .end(let end): return try finish(at: end, torn: nil)
      case .tornTail(let end, let reason): return try finish(at: end, torn: reason)
      }
    }
  }
}
