import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

/// What a transaction may do at the edges of SQLite's surface (issue 12).
final class SQLSurfaceTests: XCTestCase {
  /// SQLite lets a non-INTEGER PRIMARY KEY hold NULL; a changeset cannot address such a
  /// row, and a backup that applied it stopped with "changed outside replication".
  func testANullInANonIntegerPrimaryKeyIsRefusedNamingTableAndColumn() throws {
    let n = try TestNode(self)
    try n.write(
      "CREATE TABLE tpk(k TEXT PRIMARY KEY, v); CREATE TABLE pair(a TEXT, b TEXT, v, PRIMARY KEY(a, b))")
    try n.write("INSERT INTO tpk VALUES ('a', 1); INSERT INTO pair VALUES ('x', 'y', 1)")
    let end = try n.trail().end
    let sum = try n.checksum()
    let cases: [(String, [String])] = [
      ("INSERT INTO tpk VALUES ('b', 1), (NULL, 2), (NULL, 3)", ["table tpk", "NULL in PRIMARY KEY column k"]),
      ("UPDATE tpk SET k = NULL WHERE k = 'a'", ["table tpk", "column k"]),
      ("INSERT INTO pair VALUES ('x', NULL, 2)", ["table pair", "column b"]),
      ("UPDATE pair SET a = NULL", ["table pair", "column a"]),
    ]
    for (sql, fragments) in cases {
      XCTAssertThrowsError(try n.write(sql), containing: fragments + ["cannot address"])
    }
    XCTAssertEqual(try n.trail().end, end, "nothing is in the MAT")
    XCTAssertEqual(try n.checksum(), sum, "nothing is in the database")
    XCTAssertEqual(try n.rows("SELECT count(*) FROM tpk WHERE k IS NULL"), [[.integer(0)]])
  }

  func testARowThatAlreadyHasANullKeyCannotBeChanged() throws {
    let root = try temporaryDirectory(self)
    let database = root + "/db.sqlite"
    let base = try Connection(path: database, mode: .readWriteCreate)
    try base.execute("CREATE TABLE tpk(k TEXT PRIMARY KEY, v); INSERT INTO tpk VALUES ('a', 1), (NULL, 2)")
    try PrimarySetup.initPrimary(.init(node: root + "/node", database: database, trailFileSize: 64 << 10))
    let db = try AuditedDatabase.open(node: root + "/node")
    defer { db.close() }
    XCTAssertThrowsError(try db.write { try $0.execute("UPDATE tpk SET v = v + 1") }) { error in
      XCTAssertTrue("\(error)".contains("changes a row whose PRIMARY KEY column k is NULL"), "\(error)")
    }
    XCTAssertThrowsError(try db.write { try $0.execute("DELETE FROM tpk WHERE k IS NULL") }) { error in
      XCTAssertTrue("\(error)".contains("table tpk"), "\(error)")
    }
    XCTAssertEqual(try base.query("SELECT v FROM tpk ORDER BY v"), [[.integer(1)], [.integer(2)]])
  }

  /// The keys that cannot be NULL are not refused: the rowid alias takes a new rowid.
  func testKeysThatCannotHoldNullStillWork() throws {
    let n = try TestNode(self)
    try n.write(
      """
      CREATE TABLE r(id INTEGER PRIMARY KEY, v);
      CREATE TABLE nn(k TEXT PRIMARY KEY NOT NULL, v);
      CREATE TABLE wr(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
      INSERT INTO r VALUES (NULL, 1), (NULL, 2);
      INSERT INTO nn VALUES ('a', 1);
      INSERT INTO wr VALUES ('a', 1)
      """)
    XCTAssertThrowsError(try n.write("INSERT INTO nn VALUES (NULL, 2)"), containing: ["NOT NULL constraint failed"])
    XCTAssertThrowsError(try n.write("INSERT INTO wr VALUES (NULL, 2)"), containing: ["NOT NULL constraint failed"])
    try n.write("UPDATE r SET v = v * 10; DELETE FROM r WHERE id = 1")
    XCTAssertEqual(try n.rows("SELECT id, v FROM r"), [[.integer(2), .integer(20)]])
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  /// Two databases equal but for AUTOINCREMENT's sequence give different next ids.
  func testTheChecksumCoversSqliteSequence() throws {
    let root = try temporaryDirectory(self)
    var sums: [DatabaseChecksum] = []
    for top in [2, 3] {
      let db = try Connection(path: root + "/\(top).sqlite", mode: .readWriteCreate)
      try db.execute("CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")
      try db.execute("INSERT INTO a(v) VALUES (1), (2)" + (top == 3 ? ", (3); DELETE FROM a WHERE id = 3" : ""))
      sums.append(try DatabaseChecksum.compute(db))
    }
    XCTAssertEqual(sums[0].tables["a"], sums[1].tables["a"], "the rows are the same")
    XCTAssertNotEqual(sums[0].checksum, sums[1].checksum)
    XCTAssertEqual(sums[1].tables["sqlite_sequence"]?.rows, 1)
  }

  /// sqlite_sequence moves (inserts of new top ids, a trigger's insert, a hand-written
  /// UPDATE and DELETE of it) replay to the primary's sequence, one by one and joined.
  func testSequenceMovesReplayOneByOneAndJoined() throws {
    let n = try TestNode(self)
    try n.write(
      """
      CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
      CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, a_id);
      CREATE TRIGGER a_log AFTER INSERT ON a BEGIN INSERT INTO log(a_id) VALUES (new.id); END
      """)
    try n.write("INSERT INTO a(v) VALUES (1), (2), (3)")
    try n.write("DELETE FROM a WHERE id = 3")
    try n.write("INSERT INTO a(v) VALUES (?)", [.integer(4)])
    try n.write("INSERT INTO a(v) VALUES (41); DELETE FROM a WHERE v = 41")
    // By hand, with no insert after: only the commit record can tell the backup.
    try n.write("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'a'; DELETE FROM sqlite_sequence WHERE name = 'log'")
    XCTAssertEqual(try n.rows("SELECT name, seq FROM sqlite_sequence ORDER BY name"), [[.text("a"), .integer(40)]])
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
    let joined = try Connection(path: n.root + "/joined.sqlite", mode: .readWriteCreate)
    try joined.execute("BEGIN IMMEDIATE")
    XCTAssertNil(try Replay.apply(try n.trail().records, to: joined))
    try joined.execute("COMMIT")
    XCTAssertEqual(try DatabaseChecksum.compute(joined), try n.checksum())
  }

  /// `PRAGMA foreign_keys = ON` turns enforcement on for the rest of its transaction:
  /// ON DELETE CASCADE runs, its deletes are captured and replay, violations are refused.
  func testForeignKeysOnCascadesAndItsEffectsReplay() throws {
    let n = try TestNode(self)
    try n.write(
      """
      CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
      CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);
      CREATE TABLE later(id INTEGER PRIMARY KEY,
        parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
      INSERT INTO parent VALUES (1, 'one'), (2, 'two');
      INSERT INTO child VALUES (10, 1), (11, 1), (20, 2)
      """)
    try n.write("PRAGMA foreign_keys = ON; DELETE FROM parent WHERE id = 1")
    XCTAssertEqual(try n.rows("SELECT id FROM child ORDER BY id"), [[.integer(20)]], "the cascade ran")
    XCTAssertEqual(try n.replayChecksum(), try n.checksum(), "the cascade's deletes are in the MAT")
    let end = try n.trail().end
    XCTAssertThrowsError(
      try n.write("PRAGMA foreign_keys = ON; INSERT INTO child VALUES (30, 99)"),
      containing: ["FOREIGN KEY constraint failed"])
    XCTAssertThrowsError(
      try n.write("PRAGMA foreign_keys = 1; INSERT INTO later VALUES (1, 99)"),
      containing: ["FOREIGN KEY constraint failed", "deferred"])
    XCTAssertThrowsError(try n.write("PRAGMA foreign_keys = maybe"), containing: ["PRAGMA foreign_keys", "ON or OFF"])
    XCTAssertEqual(try n.trail().end, end, "nothing refused is in the MAT")
    // The next transaction starts with enforcement off again, as SQLite's default.
    try n.write("INSERT INTO child VALUES (31, 98)")
    XCTAssertEqual(try n.write("PRAGMA foreign_keys"), nil)
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  func testGeneratedColumnsAreRefusedAtCreateAndAlterNamingTableAndColumn() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER)")
    let end = try n.trail().end
    XCTAssertThrowsError(
      try n.write("CREATE TABLE g(id INTEGER PRIMARY KEY, x INTEGER, y INTEGER GENERATED ALWAYS AS (x * 2) STORED)"),
      containing: ["table g", "column y", "generated"])
    XCTAssertThrowsError(
      try n.write("ALTER TABLE t ADD COLUMN z INTEGER AS (x + 1)"), containing: ["table t", "column z", "generated"])
    XCTAssertEqual(try n.trail().end, end)
    XCTAssertEqual(try n.rows("SELECT count(*) FROM sqlite_schema WHERE name = 'g'"), [[.integer(0)]])
    XCTAssertEqual(try n.rows("SELECT count(*) FROM pragma_table_xinfo('t')"), [[.integer(2)]])
  }

  func testVacuumIsRefusedWithAClearReason() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    XCTAssertThrowsError(try n.write("  -- tidy up\n VACUUM"), containing: ["VACUUM is not allowed", "daemon stopped"])
    XCTAssertThrowsError(try n.write("vacuum main"), containing: ["VACUUM is not allowed"])
  }

  func testAWorldReadableSecretKeyIsRefusedWithTheFix() throws {
    let root = try temporaryDirectory(self)
    let path = root + "/secret.key"
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(Secret.generate())))
    chmod(path, 0o644)
    XCTAssertThrowsError(try Secret.load(path: path), containing: [path, "readable", "chmod 600 \(path)"])
    chmod(path, 0o600)
    XCTAssertEqual(try Secret.load(path: path).count, 64)
    let n = try TestNode(self)
    let attributes = try FileManager.default.attributesOfItem(atPath: n.layout.secretKey)
    XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600, "init writes it private")
  }
}

extension TestNode {
  /// A primary node around a database made beforehand at `root/db.sqlite`.
  init(existingDatabaseIn root: String) throws {
    self.root = root
    try PrimarySetup.initPrimary(.init(node: node, database: database, trailFileSize: 64 << 10))
  }
}
