// Adversarial review (branch adversarial-2): a long-lived writer (as a daemon's) replays
// commits another writer left in the MAT (killed between its MAT sync and its COMMIT),
// with its ChecksumTracker. The tracker caches table shapes; the writer's own DDL does
// not tell it. The second replay, after an ALTER TABLE ADD COLUMN, meets the stale shape.

import Foundation
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class AdversarialWriterTests: XCTestCase {
  func testALongLivedWriterReplaysAnotherWritersCommitAfterItsOwnAddColumn() throws {
    let root = try temporaryDirectory(self, #function)
    let node = root + "/node"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", root + "/db.sqlite"]).status, 0)
    XCTAssertEqual(try understudy(["sql", "--node", node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)"]).status, 0)
    let w1 = try AuditedDatabase.open(node: node)
    defer { w1.close() }
    try w1.write { try $0.execute("INSERT INTO t VALUES (1, 'w1')") }
    func killedWriter(_ sql: String) throws {
      let killed = try understudy(
        ["sql", "--node", node, sql], environment: ["UNDERSTUDY_FAILPOINT": "after-trail-sync:1"])
      XCTAssertNotEqual(killed.status, 0, "the other writer was killed after its MAT sync")
    }
    try killedWriter("INSERT INTO t VALUES (2, 'in the MAT only')")
    // W1's next write replays it first (its tracker learns t's shape: 2 columns).
    try w1.write { try $0.execute("INSERT INTO t VALUES (3, 'w1')") }
    try w1.write { try $0.execute("ALTER TABLE t ADD COLUMN c DEFAULT 'd'") }
    try killedWriter("INSERT INTO t VALUES (4, 'in the MAT only', 'c')")
    do {
      try w1.write { try $0.execute("INSERT INTO t VALUES (5, 'w1', 'c')") }
    } catch {
      XCTFail("the long-lived writer cannot take in the other writer's commit: \(error)")
      do {
        try w1.write { try $0.execute("INSERT INTO t VALUES (5, 'w1', 'c')") }
      } catch {
        XCTFail("and again, for good while it stays open: \(error)")
      }
    }
    let verify = try understudy(["verify", "--node", node])
    XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    let rows = try understudy(["query", "--node", node, "SELECT count(*) FROM t"])
    XCTAssertTrue(rows.stdout.hasSuffix("5\n"), rows.stdout)
  }
}
