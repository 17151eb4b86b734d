// Adversarial review (fix-e): failing tests for bugs found against the bounded MAT.

import Apply
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class AdversarialTests: XCTestCase {
  /// A backup the byte cap dropped (9042) can still take over; the old primary then
  /// purged the MAT file holding the new generation's base, so its fencing finds no
  /// evidence, refuses the claim (9070) and goes on serving and acknowledging writes:
  /// two primaries. `recover --to-mat` at the 888 position is impossible as well.
  func testOldPrimaryIsFencedAfterATakeoverByABackupTheByteCapDropped() throws {
    let pair = try Pair(
      self, trailFileSize: 4096, backupListens: true, primaryOptions: ["--max-retained-bytes", "20000"])
    var (primary, backup) = try pair.startDaemons()
    defer {
      try? primary.stop()
      try? backup.stop()
    }
    try outgrowTheCap(pair, stopping: backup)
    XCTAssertTrue(eventually(10) { events(pair.primary).contains { $0["code"] as? Int == 9041 } }, "no purge")

    // The primary is lost; the backup takes over and serves.
    primary.kill()
    let takeover = try understudy(["takeover", "--node", pair.backup, "--json"])
    XCTAssertEqual(takeover.status, 0, takeover.stderr)
    let position = try XCTUnwrap(positionText(takeover.json, "fileRecovery"), takeover.stdout)
    backup = try Daemon(node: pair.backup)
    XCTAssertEqual(try understudy(["sql", "--node", pair.backup, "INSERT INTO t VALUES (9999, 'b')"]).status, 0)

    // The old primary comes back: it must not serve, and must refuse writes.
    primary = try Daemon(node: pair.primary)
    _ = eventually(10) { !primary.isRunning || events(pair.primary).contains { $0["code"] as? Int == 829 } }
    let write = try understudy(["sql", "--node", pair.primary, "INSERT INTO t VALUES (8888, 'a')"])
    XCTAssertNotEqual(
      write.status, 0,
      "the old primary acknowledged a write after generation 2 took over: \(write.stdout) \(write.stderr); events: \(events(pair.primary).suffix(3))"
    )
    XCTAssertTrue(events(pair.primary).contains { $0["code"] as? Int == 829 }, "no 829")
    // File recovery cannot reach a purged position, and says what to do instead.
    primary.kill()
    let recover = try understudy(["recover", "--node", pair.primary, "--to-mat", position])
    XCTAssertEqual(recover.status, 1, recover.stdout)
    XCTAssertTrue(recover.stderr.contains("removed") && recover.stderr.contains("--full-copy"), recover.stderr)
  }

  /// After the cap dropped a backup (9042), the backup's next connection attempt, which
  /// is refused for a purged position, re-registers it: `status` then says the MAT is kept
  /// for it from a position whose file is gone, with no word that it needs a full copy.
  func testADroppedBackupStaysShownAsDroppedWhenItRetries() throws {
    let pair = try Pair(self, trailFileSize: 4096, primaryOptions: ["--max-retained-bytes", "20000"])
    var (primary, backup) = try pair.startDaemons()
    defer {
      try? primary.stop()
      try? backup.stop()
    }
    try outgrowTheCap(pair, stopping: backup)
    XCTAssertTrue(eventually(10) { events(pair.primary).contains { $0["code"] as? Int == 9042 } }, "no 9042")
    backup = try Daemon(node: pair.backup)
    XCTAssertTrue(
      eventually(10) {
        events(pair.backup).contains { ($0["message"] as? String ?? "").contains("needs a full copy") }
      })
    usleep(3_000_000)
    let outcome = try understudy(["status", "--node", pair.primary, "--json"])
    let s = try XCTUnwrap(outcome.json as? [String: Any])
    let retained = try XCTUnwrap(s["retainedFor"] as? [[String: Any]])
    XCTAssertEqual(retained.map { $0["dropped"] as? Bool }, [true], "status: \(retained)")
  }

  /// With the backup stopped, the primary writes past the byte cap of 20,000 bytes.
  private func outgrowTheCap(_ pair: Pair, stopping backup: Daemon) throws {
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try pair.waitForBackup()
    try backup.stop()
    let lines = (1...300).map { "INSERT INTO t VALUES (\($0), '\(String(repeating: "y", count: 100))')" }
    let run = try understudy(
      ["sql", "--node", pair.primary, "--each-line"], stdin: lines.joined(separator: "\n") + "\n")
    XCTAssertEqual(run.status, 0, run.stderr)
  }

  /// A body that catches the error of a statement that made SQLite roll back the whole
  /// transaction (OR ROLLBACK; a full disk does the same) and goes on: its later
  /// statements run in autocommit, committed before any MAT record, and the commit record
  /// still holds the rolled-back rows. The backup (and a replay of the MAT) then has row 1,
  /// which the primary's database does not.
  func testABodyThatGoesOnAfterSQLiteRolledBackItsTransactionDoesNotDiverge() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    try PrimarySetup.initPrimary(.init(node: node, database: root + "/db.sqlite", trailFileSize: 65536))
    let db = try AuditedDatabase.open(node: node)
    _ = try db.write { try $0.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)") }
    _ = try db.write { try $0.execute("INSERT INTO t VALUES (0)") }
    let outcome = Result {
      try db.write { tx in
        try tx.execute("INSERT INTO t VALUES (1)")
        try? tx.execute("INSERT OR ROLLBACK INTO t VALUES (0)")  // rolls the transaction back
        try tx.execute("INSERT INTO t VALUES (2)")
      }.commit
    }
    db.close()
    let rebuilt = root + "/replayed.sqlite"
    _ = try Replay.rebuild(trail: NodeLayout(root: node).mat, into: rebuilt)
    let primary = try DatabaseChecksum.compute(Connection(path: root + "/db.sqlite", mode: .readOnly))
    let replayed = try DatabaseChecksum.compute(Connection(path: rebuilt, mode: .readOnly))
    let rows = try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT id FROM t ORDER BY id")
    XCTAssertEqual(
      replayed, primary,
      "the MAT (what a backup applies) and the database differ; the write returned \(outcome); the database holds \(rows)"
    )
  }

  /// A user SAVEPOINT was allowed, and ROLLBACK TO undid rows in SQLite that the change
  /// capture had already recorded: the commit record (and so the backup) held a row the
  /// primary's database never committed. On a real pair the backup showed it, and the
  /// next insert of that key stopped the updater with "changed outside replication".
  /// Savepoints are refused now, before anything is durable.
  func testRollbackToASavepointIsNotInTheCommitRecord() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    let database = root + "/db.sqlite"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", database]).status, 0)
    XCTAssertEqual(try understudy(["sql", "--node", node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"]).status, 0)
    let run = try understudy([
      "sql", "--node", node,
      "SAVEPOINT a; INSERT INTO t VALUES (1, 'rolled back'); ROLLBACK TO a; RELEASE a; INSERT INTO t VALUES (2, 'kept')",
    ])
    XCTAssertEqual(run.status, 1, run.stderr)
    XCTAssertTrue(run.stderr.contains("SAVEPOINT, RELEASE and ROLLBACK TO are not allowed"), run.stderr)
    let rebuilt = root + "/replayed.sqlite"
    _ = try Replay.rebuild(trail: NodeLayout(root: node).mat, into: rebuilt)
    let replayedRows = try Connection(path: rebuilt, mode: .readOnly).query("SELECT id FROM t ORDER BY id")
    let rows = try Connection(path: database, mode: .readOnly).query("SELECT id FROM t ORDER BY id")
    XCTAssertEqual(replayedRows, rows, "the MAT replays to \(replayedRows), the primary holds \(rows)")
  }
}
