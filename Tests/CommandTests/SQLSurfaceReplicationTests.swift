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

  /// File recovery undoes inserts the backup never received; the sequence must go back
  /// too, or the old primary's checksum is not the 888 one and its next id differs.
  func testFileRecoveryPutsTheSequenceBackToTheTakeoverPoint() throws {
    let root = try temporaryDirectory(self)
    let (a, b) = (root + "/a", root + "/b")
    let (addressA, addressB) = ("127.0.0.1:\(freePort())", "127.0.0.1:\(freePort())")
    try succeeds(["init", "primary", "--node", a, "--db", root + "/a.db", "--listen", addressA])
    try succeeds([
      "init", "backup", "--node", b, "--db", root + "/b.db", "--primary", addressA, "--listen", addressB,
      "--secret-file", a + "/secret.key",
    ])
    try succeeds(["sql", "--node", a, "CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"])
    let daemonA = try Daemon(node: a)
    let daemonB = try Daemon(node: b)
    try succeeds(["sql", "--node", a, "INSERT INTO auto(v) VALUES ('1'), ('2'), ('3')"])
    let shipped = try XCTUnwrap(
      positionText(try succeeds(["sql", "--node", a, "--json", "DELETE FROM auto WHERE id = 3"]).json, "end"))
    try succeeds(["wait", "--node", b, "--applied", shipped, "--timeout", "60"])
    try daemonB.stop()
    // Never shipped: what recovery undoes, new ids 4 and 5 and an explicit sequence move.
    try succeeds(["sql", "--node", a, "INSERT INTO auto(v) VALUES ('4'), ('5')"])
    try succeeds(["sql", "--node", a, "UPDATE sqlite_sequence SET seq = 50 WHERE name = 'auto'"])
    daemonA.kill()
    let takeover = try succeeds(["takeover", "--node", b, "--json"])
    let checksumAt888 = try XCTUnwrap((takeover.json as? [String: Any])?["checksum"] as? String)
    XCTAssertEqual(try sequence(b, "auto"), 3)
    let daemonB2 = try Daemon(node: b)
    XCTAssertTrue(
      eventually(10) { events(b).contains { $0["code"] as? Int == 9001 } }, "b does not serve as a primary")
    let recover = try succeeds(["recover", "--node", a, "--to-mat", shipped, "--json"])
    XCTAssertEqual((recover.json as? [String: Any])?["checksum"] as? String, checksumAt888, recover.stdout)
    XCTAssertEqual(try sequence(a, "auto"), 3, "the undone inserts' sequence is undone too")
    try succeeds(["follow", "--node", a, "--primary", addressB, "--secret-file", b + "/secret.key"])
    let followerA = try Daemon(node: a)
    try succeeds(["sql", "--node", b, "INSERT INTO auto(v) VALUES ('on b')"])
    let end = try XCTUnwrap(positionText(try succeeds(["status", "--node", b, "--json"]).json, "durableEnd"))
    try succeeds(["wait", "--node", a, "--applied", end, "--timeout", "60"])
    XCTAssertEqual(try sequence(a, "auto"), 4)
    XCTAssertEqual(
      try succeeds(["checksum", "--node", a]).stdout, try succeeds(["checksum", "--node", b]).stdout)
    try followerA.stop()
    try daemonB2.stop()
  }

  /// ON DELETE CASCADE under `PRAGMA foreign_keys = ON`: the cascade's deletes reach the backup.
  func testACascadeReplicates() throws {
    let pair = try Pair(self)
    try pair.sql(
      "CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(id INTEGER PRIMARY KEY, p REFERENCES p(id) ON DELETE CASCADE)",
      "INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (10, 1), (11, 1), (20, 2)")
    let (primary, backup) = try pair.startDaemons()
    try pair.sql("PRAGMA foreign_keys = ON; DELETE FROM p WHERE id = 1")
    let orphan = try understudy([
      "sql", "--node", pair.primary, "PRAGMA foreign_keys = ON; INSERT INTO c VALUES (30, 9)",
    ])
    XCTAssertEqual(orphan.status, 1, orphan.stdout)
    XCTAssertTrue(orphan.stderr.contains("FOREIGN KEY constraint failed"), orphan.stderr)
    try pair.waitForBackup()
    try pair.assertSameContent("after the cascade")
    let rows = try understudy(["query", "--node", pair.backup, "--json", "SELECT count(*) FROM c"])
    XCTAssertEqual(((rows.json as? [String: Any])?["rows"] as? [[Any]])?.first?.first as? Int, 1, rows.stdout)
    try backup.stop()
    try primary.stop()
  }

  /// A node's key that others can read is refused where it is loaded, with the fix.
  func testAWorldReadableSecretKeyStopsTheDaemonAndInitWithTheFix() throws {
    let pair = try Pair(self)
    let key = pair.primary + "/secret.key"
    XCTAssertEqual(chmod(key, 0o644), 0)
    // Bounded: a daemon that accepts the key would run until stopped.
    let start = Process()
    start.executableURL = URL(fileURLWithPath: understudyBinary)
    start.arguments = ["start", "--node", pair.primary]
    let err = Pipe()
    start.standardError = err
    start.standardOutput = FileHandle.nullDevice
    try start.run()
    let exited = eventually(10) { !start.isRunning }
    if !exited {
      start.terminate()
      start.waitUntilExit()
    }
    XCTAssertTrue(exited, "the daemon started with a world-readable key")
    XCTAssertEqual(start.terminationStatus, 1)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertTrue(stderr.contains("Fix it with: chmod 600 \(key)"), stderr)
    let copy = try understudy([
      "init", "backup", "--node", pair.root + "/b2", "--db", pair.root + "/b2.db", "--primary",
      "127.0.0.1:\(pair.port)",
      "--secret-file", key,
    ])
    XCTAssertEqual(copy.status, 1, copy.stdout)
    XCTAssertTrue(copy.stderr.contains("mode 644"), copy.stderr)
    XCTAssertEqual(chmod(key, 0o600), 0)
    let (primary, backup) = try pair.startDaemons()
    try backup.stop()
    try primary.stop()
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
