// `understudy sql --file` with the scripts SQLite users have: a `sqlite3 .dump`
// (Fixtures/dump-sample.sql, made by Debian's sqlite3 3.40.1) and scripts that group
// their statements with BEGIN … COMMIT.

import Foundation
import Node
import SQLiteSupport
import TestSupport
import XCTest

final class DumpLoadTests: XCTestCase {
  let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/dump-sample.sql").path

  /// The dump loads as one audited transaction, lands on the database SQLite itself makes
  /// of it (sqlite_sequence included), and replicates.
  func testASqlite3DumpLoadsAndReplicates() throws {
    let pair = try Pair(self)
    let (primary, backup) = try pair.startDaemons()
    let load = try understudy(["sql", "--node", pair.primary, "--file", fixture, "--json"])
    XCTAssertEqual(load.status, 0, load.stderr)
    XCTAssertEqual(load.jsonLines.count, 1, load.stdout)
    XCTAssertEqual(load.stderr, "", "PRAGMA foreign_keys=OFF is SQLite's default: nothing to say")
    let plain = try Connection(path: pair.root + "/plain.sqlite", mode: .readWriteCreate)
    try plain.execute(try String(contentsOfFile: fixture, encoding: .utf8))
    XCTAssertEqual(try pair.checksum(pair.primary), try DatabaseChecksum.compute(plain).checksum)
    try pair.waitForBackup()
    try pair.assertSameContent("after loading the dump")
    // The dump's sequence reached the backup: the next id agrees.
    try pair.sql("INSERT INTO artist(name) VALUES ('next')")
    try pair.waitForBackup()
    try pair.assertSameContent("after the next insert")
    let next = try understudy(["query", "--node", pair.backup, "SELECT id FROM artist WHERE name = 'next'"])
    XCTAssertTrue(next.stdout.contains("5"), next.stdout)
    try backup.stop()
    try primary.stop()
  }

  /// Each block is a transaction, the statements between blocks another; the first
  /// failure names its file and line and quotes the statement's first line only.
  func testBlocksAreTransactionsAndAFailureNamesItsLine() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", root + "/db.sqlite"]).status, 0)
    let script = root + "/load.sql"
    try """
    -- Sample schema
    PRAGMA journal_mode = DELETE;
    CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    BEGIN TRANSACTION;
    INSERT INTO t VALUES (1, 'a');
    COMMIT;
    BEGIN;
    INSERT INTO t VALUES (2, 'b');
      -- the next one collides
    INSERT INTO t VALUES (1,
      'dup');
    COMMIT;
    INSERT INTO t VALUES (3, 'never');
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let run = try understudy(["sql", "--node", node, "--file", script, "--json"])
    XCTAssertEqual(run.status, 1, run.stdout)
    let lines = run.jsonLines.compactMap { $0 as? [String: Any] }
    XCTAssertEqual(lines.compactMap { $0["line"] as? Int }, [3, 4], run.stdout)
    XCTAssertEqual(lines.compactMap { $0["txid"] as? Int }, [1, 2], run.stdout)
    XCTAssertTrue(run.stderr.contains("note: line 2: `PRAGMA journal_mode = DELETE;` ignored"), run.stderr)
    XCTAssertTrue(run.stderr.contains("\(script):10: UNIQUE constraint failed: t.id"), run.stderr)
    XCTAssertTrue(run.stderr.contains("the 2 transactions before it stay committed"), run.stderr)
    XCTAssertTrue(run.stderr.contains("in: INSERT INTO t VALUES (1, …"), run.stderr)
    XCTAssertFalse(run.stderr.contains("collides"), "the comments before it are not quoted: \(run.stderr)")
    XCTAssertFalse(run.stderr.contains("'dup'"), "only the first line is quoted: \(run.stderr)")
    let rows = try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT id FROM t ORDER BY id")
    XCTAssertEqual(rows, [[.integer(1)]], "block 2 rolled back, nothing after it ran")

    // A refused statement says why and where, and a block left open runs nothing.
    try "BEGIN;\nINSERT INTO t VALUES (5, 'x');\n".write(toFile: script, atomically: true, encoding: .utf8)
    let open = try understudy(["sql", "--node", node, "--file", script])
    XCTAssertEqual(open.status, 1)
    XCTAssertTrue(open.stderr.contains("\(script):1: BEGIN without a COMMIT"), open.stderr)
    try "\n\nATTACH ':memory:' AS x;".write(toFile: script, atomically: true, encoding: .utf8)
    let refused = try understudy(["sql", "--node", node, "--file", script])
    XCTAssertTrue(refused.stderr.contains("\(script):3: statement refused: ATTACH"), refused.stderr)
    XCTAssertEqual(
      try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT count(*) FROM t"), [[.integer(1)]])
  }

  /// A script's `PRAGMA foreign_keys=ON` holds for its later transactions: the cascade runs.
  func testAScriptsForeignKeysPragmaHoldsForItsTransactions() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", root + "/db.sqlite"]).status, 0)
    let run = try understudy(
      [
        "sql", "--node", node,
        """
        PRAGMA foreign_keys=ON;
        CREATE TABLE p(id INTEGER PRIMARY KEY);
        CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE);
        INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (10, 1), (20, 2);
        BEGIN; DELETE FROM p WHERE id = 1; COMMIT;
        """,
      ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let rows = try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT id FROM c")
    XCTAssertEqual(rows, [[.integer(20)]])
    // Set in the middle of statements outside blocks: from there on, in that transaction too.
    let middle = try understudy([
      "sql", "--node", node, "INSERT INTO p VALUES (3); INSERT INTO c VALUES (30, 3)",
      "PRAGMA foreign_keys = ON; DELETE FROM p WHERE id = 3",
    ])
    XCTAssertEqual(middle.status, 0, middle.stderr)
    let left = try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT id FROM c ORDER BY id")
    XCTAssertEqual(left, [[.integer(20)]])
    let onlyPragma = try understudy(["sql", "--node", node, "PRAGMA foreign_keys=OFF"])
    XCTAssertEqual(onlyPragma.status, 0, onlyPragma.stderr)
    XCTAssertEqual(onlyPragma.stdout, "no changes; nothing committed\n")
  }
}
