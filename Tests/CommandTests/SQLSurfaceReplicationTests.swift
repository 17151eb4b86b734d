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
}
