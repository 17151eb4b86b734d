// Writes at the edges of SQLite's surface, end to end: what the primary refuses leaves
// the backup applying, and what it accepts reaches the backup exactly (issue 12).

import Foundation
import TestSupport
import XCTest

final class SQLSurfaceReplicationTests: XCTestCase {
  /// The sequence: NULL keys in a TEXT PRIMARY KEY once stopped the backup's
  /// updater with "changed outside replication". Now the write is refused, exit 1.
  func testNullPrimaryKeysAreRefusedAndTheBackupKeepsApplying() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE tpk(k TEXT PRIMARY KEY, v)")
    let (primary, backup) = try pair.startDaemons()
    let refused = try understudy(["sql", "--node", pair.primary, "INSERT INTO tpk VALUES ('a',1),(NULL,2),(NULL,3)"])
    XCTAssertEqual(refused.status, 1, refused.stdout)
    XCTAssertTrue(refused.stderr.contains("table tpk"), refused.stderr)
    XCTAssertTrue(refused.stderr.contains("PRIMARY KEY column k"), refused.stderr)
    try pair.sql("INSERT INTO tpk VALUES ('a', 1), ('b', 2)")
    try pair.sql("UPDATE tpk SET v = v + 10")
    try pair.sql("DELETE FROM tpk WHERE k = 'b'")
    try pair.waitForBackup()
    try pair.assertSameContent("after refused NULL keys")
    let rows = try understudy(["query", "--node", pair.backup, "--json", "SELECT k, v FROM tpk"])
    XCTAssertTrue(rows.stdout.contains("11"), rows.stdout)
    XCTAssertFalse(events(pair.backup).contains { $0["code"] as? Int == 9030 }, "the updater stopped")
    try backup.stop()
    try primary.stop()
  }

  /// AUTOINCREMENT's next id lives in sqlite_sequence, which no changeset carries: the
  /// backup must still agree on it (the checksum covers it) and give the same next id.
  func testAutoincrementSequencesAgreeAfterReplicationOfDeletedTopRows() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
    let (primary, backup) = try pair.startDaemons()
    try pair.sql("INSERT INTO auto(v) VALUES ('a'), ('b'), ('c'), ('d')")
    try pair.sql("DELETE FROM auto WHERE id >= 3")
    // Inserted and deleted in one transaction: the sequence still moves.
    try pair.sql("INSERT INTO auto(v) VALUES ('e'); DELETE FROM auto WHERE v = 'e'")
    try pair.waitForBackup()
    try pair.assertSameContent("sequences after deleting the top rows")
    XCTAssertEqual(try sequence(pair.backup, "auto"), 5)
    try backup.stop()
    try primary.stop()
    // The backup, promoted, gives the id the primary would have given.
    let takeover = try understudy(["takeover", "--node", pair.backup, "--force", "--json"])
    XCTAssertEqual(takeover.status, 0, takeover.stderr)
    for node in [pair.primary, pair.backup] {
      let insert = try understudy(["sql", "--node", node, "INSERT INTO auto(v) VALUES ('next')"])
      XCTAssertEqual(insert.status, 0, insert.stderr)
      XCTAssertEqual(try sequence(node, "auto"), 6, node)
    }
  }

  private func sequence(_ node: String, _ table: String) throws -> Int? {
    let outcome = try understudy([
      "query", "--node", node, "--json", "SELECT seq FROM sqlite_sequence WHERE name = '\(table)'",
    ])
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
    let rows = (outcome.json as? [String: Any])?["rows"] as? [[Any]]
    return rows?.first?.first as? Int
  }

  @discardableResult
  private func succeeds(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
    let outcome = try understudy(arguments)
    XCTAssertEqual(outcome.status, 0, "\(arguments.prefix(3)): \(outcome.stderr)", file: file, line: line)
    return outcome
  }
}
