// The updater applies a batch of records with their changesets joined into one apply.
// It must leave what applying them one by one leaves, across DDL and across tables, and
// a conflict must still name the one transaction that does not apply.

import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class ReplayTests: XCTestCase {
  /// A seeded workload over two tables with a UNIQUE column, a trigger, and DDL part way.
  func writeWorkload(_ n: TestNode, seed: UInt64) throws -> TransactionID {
    var random = SeededGenerator(seed: seed)
    let db = try n.open()
    defer { db.close() }
    func write(_ sql: String...) throws -> CommitInfo? {
      try db.write { tx in for s in sql { try tx.execute(s) } }.commit
    }
    _ = try write(
      "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT, u INTEGER UNIQUE)",
      "CREATE TABLE spare(id INTEGER PRIMARY KEY, u INTEGER)",
      "CREATE TABLE log(id INTEGER PRIMARY KEY, note TEXT)",
      "CREATE TRIGGER a_log AFTER UPDATE ON a BEGIN INSERT INTO log(note) VALUES ('a ' || new.id); END")
    for i in 1...40 { _ = try write("INSERT INTO a VALUES (\(i), 'v\(i)', \(i))") }
    for step in 0..<300 {
      if step == 150 { _ = try write("ALTER TABLE a ADD COLUMN w INTEGER DEFAULT 7") }
      let x = Int.random(in: 1...40, using: &random)
      let y = Int.random(in: 1...40, using: &random)
      switch Int.random(in: 0..<5, using: &random) {
      case 0 where x != y:
        // Unique values swapped through a spare in three transactions: applied out of
        // order, two rows would hold one value.
        _ = try write(
          "INSERT OR REPLACE INTO spare VALUES (1, (SELECT u FROM a WHERE id = \(x)))",
          "UPDATE a SET u = NULL WHERE id = \(x)")
        _ = try write(
          "INSERT OR REPLACE INTO spare VALUES (2, (SELECT u FROM a WHERE id = \(y)))",
          "UPDATE a SET u = NULL WHERE id = \(y)",
          "UPDATE a SET u = (SELECT u FROM spare WHERE id = 2) WHERE id = \(x)")
        _ = try write("UPDATE a SET u = (SELECT u FROM spare WHERE id = 1) WHERE id = \(y)")
      case 1: _ = try write("DELETE FROM a WHERE id = \(x)")
      case 2: _ = try write("INSERT OR REPLACE INTO a(id, v, u) VALUES (\(x), 'replaced \(step)', \(x) + 5000)")
      case 3: _ = try write("UPDATE a SET v = v || '.' WHERE id % 7 = \(x % 7)")
      default: _ = try write("INSERT INTO log(note) VALUES ('step \(step)')")
      }
    }
    // The transaction a diverged backup will not take: the only one after the workload
    // that touches row 7, preceded by others that do not.
    _ = try write("INSERT OR REPLACE INTO a(id, v, u) VALUES (7, 'seven', 7777)")
    for i in 0..<20 { _ = try write("INSERT INTO log(note) VALUES ('tail \(i)')") }
    let target = try XCTUnwrap(try write("UPDATE a SET v = 'target' WHERE id = 7"))
    for i in 0..<20 { _ = try write("INSERT INTO log(note) VALUES ('after \(i)')") }
    return target.txid
  }

  /// Storing an added column's default (with triggers off) once switched triggers back
  /// on for the rest of the replay, so a trigger fired again on the replica.
  func testTriggersStayOffForTheRestOfAReplayAfterAnAddedColumnsDefault() throws {
    let n = try TestNode(self)
    let db = try n.open()
    _ = try db.write { tx in
      for sql in [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE log(id INTEGER PRIMARY KEY, note TEXT)",
        "CREATE TRIGGER t_log AFTER UPDATE ON t BEGIN INSERT INTO log(note) VALUES (new.v); END",
        "INSERT INTO t VALUES (1, 'a')", "ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 5", "UPDATE t SET v = 'b'",
      ] {
        try tx.execute(sql)
      }
    }
    db.close()
    XCTAssertEqual(try n.rows("SELECT count(*) FROM log"), [[.integer(1)]])
    XCTAssertEqual(try n.replayChecksum().checksum, try n.checksum().checksum)
  }

  func testAJoinedBatchLeavesWhatOneByOneLeavesAndAConflictNamesItsTransaction() throws {
    let seed = testSeed("joined replay")
    let n = try TestNode(self, trailFileSize: 1 << 20)
    let target = try writeWorkload(n, seed: seed)
    let records = try n.trail().records
    XCTAssertGreaterThan(records.count, 300)

    // Everything in one batch, and in uneven batches, on an empty base.
    var cut = SeededGenerator(seed: seed)
    for (name, sizes) in [
      ("one batch", [records.count]), ("uneven batches", (0..<40).map { _ in Int.random(in: 1...30, using: &cut) }),
    ] {
      let path = n.root + "/\(name).sqlite"
      let db = try Connection(path: path, mode: .readWriteCreate)
      var rest = records[...]
      var i = 0
      while !rest.isEmpty {
        let batch = Array(rest.prefix(sizes[i % sizes.count]))
        rest = rest.dropFirst(batch.count)
        i += 1
        try db.execute("BEGIN IMMEDIATE")
        XCTAssertNil(try Replay.apply(batch, to: db), "\(name): the joined apply failed, seed \(seed)")
        try db.execute("COMMIT")
      }
      XCTAssertEqual(
        try DatabaseChecksum.compute(Connection(path: path, mode: .readOnly)).checksum, try n.replayChecksum().checksum,
        "\(name), seed \(seed)")
    }
    XCTAssertEqual(try n.checksum().checksum, try n.replayChecksum().checksum, "seed \(seed)")

    // A backup whose row 7 someone else changed: the batch from before the target
    // transaction to the end fails, naming the target, and changes nothing.
    let targetIndex = try XCTUnwrap(records.firstIndex { $0.record.txid == target })
    let path = n.root + "/diverged.sqlite"
    let db = try Connection(path: path, mode: .readWriteCreate)
    try db.execute("BEGIN IMMEDIATE")
    try Replay.apply(Array(records[..<(targetIndex - 15)]), to: db)
    try db.execute("COMMIT")
    try db.setTriggersEnabled(false)  // only the row itself differs
    try db.execute("UPDATE a SET v = 'someone else' WHERE id = 7")
    let before = try DatabaseChecksum.compute(db).checksum
    try db.execute("BEGIN IMMEDIATE")
    XCTAssertThrowsError(
      try Replay.apply(Array(records[(targetIndex - 15)...]), to: db),
      containing: ["replaying transaction \(target)", "table a key (7)", "differs"])
    try db.execute("ROLLBACK")
    XCTAssertEqual(try DatabaseChecksum.compute(db).checksum, before)
  }
}
