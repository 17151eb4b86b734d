// The checksum a database keeps of itself (IncrementalChecksum) against a full scan: after
// every commit of a seeded random workload (inserts, updates, key changes, deletes,
// REPLACE, NULLs, reals in REAL columns, blobs, a trigger's effects, AUTOINCREMENT,
// statements that fail midway, DDL), after group commits with a failing member, and in a
// database rebuilt from the trail.

import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class IncrementalChecksumTests: XCTestCase {
  func assertKeptEqualsFullScan(_ node: TestNode, _ context: @autoclosure () -> String, line: UInt = #line) throws {
    let db = try Connection(path: node.database, mode: .readOnly)
    try db.execute("BEGIN")
    defer { try? db.execute("COMMIT") }
    let kept = try XCTUnwrap(try IncrementalChecksum.read(db), "a checksum is kept: \(context())", line: line)
    let full = try DatabaseChecksum.compute(db)
    XCTAssertEqual(kept, full, "\(context()): differ in \(full.differences(from: kept))", line: line)
  }

  func testTheKeptChecksumEqualsAFullScanAfterEveryCommitOfARandomWorkload() throws {
    let seed = testSeed(#function)
    var random = SeededGenerator(seed: seed)
    let node = try TestNode(self)
    try node.write(ChangeCaptureTests.schema)
    try node.write("CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT, x)")
    try assertKeptEqualsFullScan(node, "after the schema")
    let db = try node.open()
    defer { db.close() }
    var changed = 0
    for transaction in 1...300 {
      var statements = (0..<Int.random(in: 1...6, using: &random)).map { _ in ChangeCaptureTests.statement(&random) }
      if Bool.random(using: &random) { statements.append(("INSERT INTO s(x) VALUES (?)", [.integer(1)])) }
      if transaction % 25 == 0 { statements.append(("DELETE FROM s WHERE id % 3 = 0", [])) }
      switch transaction % 60 {
      case 20: statements.append(("ALTER TABLE n ADD COLUMN e\(transaction) INTEGER DEFAULT 7", []))
      case 40: statements.insert(("CREATE INDEX n_a\(transaction) ON n(a)", []), at: 0)
      default: break
      }
      let commit = try db.write { tx in
        // As an application may: a statement that fails is caught and the transaction goes on.
        for (sql, arguments) in statements { try? tx.execute(sql, arguments) }
      }.commit
      if commit != nil { changed += 1 }
      try assertKeptEqualsFullScan(node, "seed \(seed), transaction \(transaction): \(statements.map(\.0))")
    }
    XCTAssertGreaterThan(changed, 200, "the workload must change rows")
    // Replayed from the whole trail, kept as it went: the same.
    XCTAssertEqual(try node.replayChecksum(), try node.checksum())
  }

  /// Writers on four threads make group commits; a request that fails takes only its own
  /// changes with it, from the data and from the checksum.
  func testGroupCommitsWithAFailingMemberKeepTheChecksum() throws {
    let node = try TestNode(self)
    try node.write("CREATE TABLE g(id INTEGER PRIMARY KEY, who INTEGER, v REAL)")
    let db = try node.open()
    defer { db.close() }
    DispatchQueue.concurrentPerform(iterations: 4) { who in
      for i in 0..<40 {
        _ = try? db.write { tx in
          try tx.execute(
            "INSERT INTO g VALUES (?, ?, ?)", [.integer(Int64(who * 1000 + i)), .integer(Int64(who)), .integer(2)])
          try tx.execute("UPDATE g SET v = v + 0.5 WHERE id = ?", [.integer(Int64(who * 1000 + i / 2))])
          if i % 7 == 3 { throw CocoaError(.userCancelled) }
        }
      }
    }
    XCTAssertEqual(try node.rows("SELECT count(*) FROM g").first?.first, .integer(4 * (40 - 6)))
    try assertKeptEqualsFullScan(node, "after the groups")
  }

  /// A database from before the checksum was kept (its table dropped) gets one at its
  /// next change, and `current` scans until then.
  func testADatabaseWithoutAKeptChecksumGetsOneAtItsNextChange() throws {
    let node = try TestNode(self)
    try node.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try node.write("INSERT INTO t VALUES (1, 'a')")
    do {
      let raw = try Connection(path: node.database)
      try raw.execute("DROP TABLE understudy_checksum")
      XCTAssertNil(try IncrementalChecksum.read(raw))
      XCTAssertEqual(try DatabaseChecksum.current(raw), try DatabaseChecksum.compute(raw))
    }
    try node.write("INSERT INTO t VALUES (2, 'b')")
    try assertKeptEqualsFullScan(node, "after the next change")
  }

  /// `CREATE TABLE IF NOT EXISTS` of a table that exists changes nothing: its transaction
  /// is not DDL for the checksum (no recompute on every node, found by the adversarial
  /// pass at 65 ms a commit on 200k rows) and its record carries the checksum item.
  func testADDLStatementThatChangesNothingIsNotASchemaChange() throws {
    let node = try TestNode(self)
    try node.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try node.write("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')")
    let last = try XCTUnwrap(try node.trail().records.last)
    let items = try CommitPayload.decode(last.record.payload)
    XCTAssertTrue(items.contains { if case .checksum = $0 { true } else { false } }, "\(items)")
    XCTAssertFalse(items.contains { if case .ddl = $0 { true } else { false } }, "no-op DDL is not recorded: \(items)")
    try assertKeptEqualsFullScan(node, "after the no-op DDL")
  }
}
