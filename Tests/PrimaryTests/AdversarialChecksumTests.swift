// Adversarial review (branch adversarial-2): SQL the primary accepts, each case checked
// three ways: the kept checksum equals a full scan on the primary; a rebuild from the
// trail (Replay with continuous verification) does not stop with a false divergence;
// and the rebuilt database's full scan equals the primary's.

import Apply
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class AdversarialChecksumTests: XCTestCase {
  func check(_ node: TestNode, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
    do {
      let db = try Connection(path: node.database, mode: .readOnly)
      try db.execute("BEGIN")
      let kept = try IncrementalChecksum.read(db)
      let full = try DatabaseChecksum.compute(db)
      try db.execute("COMMIT")
      XCTAssertNotNil(kept, "\(context): a checksum is kept", file: file, line: line)
      if let kept {
        XCTAssertEqual(
          kept, full, "\(context): kept differs from full in \(full.differences(from: kept))", file: file, line: line)
      }
      let path = node.root + "/replay-\(UUID().uuidString.prefix(6)).sqlite"
      do {
        _ = try Replay.rebuild(trail: node.layout.mat, into: path)
      } catch {
        XCTFail("\(context): rebuild from the trail failed: \(error)", file: file, line: line)
        return
      }
      let rdb = try Connection(path: path, mode: .readOnly)
      try rdb.execute("BEGIN")
      let rkept = try IncrementalChecksum.read(rdb)
      let rfull = try DatabaseChecksum.compute(rdb)
      try rdb.execute("COMMIT")
      XCTAssertEqual(
        rfull, full, "\(context): rebuilt differs in \(rfull.differences(from: full))", file: file, line: line)
      XCTAssertEqual(rkept, rfull, "\(context): rebuilt kept differs from its full scan", file: file, line: line)
    } catch {
      XCTFail("\(context): \(error)", file: file, line: line)
    }
  }

  /// Runs each statement as its own transaction; refusals are fine (printed), but the
  /// checksum must hold after every one.
  func run(_ node: TestNode, _ statements: [String], file: StaticString = #filePath, line: UInt = #line) {
    for sql in statements {
      do { try node.write(sql) } catch { print("ADV refused/failed: \(sql): \(error)") }
      check(node, sql, file: file, line: line)
    }
  }

  func testWithoutRowidReplace() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE w(k TEXT PRIMARY KEY, u INTEGER UNIQUE, v) WITHOUT ROWID",
        "INSERT INTO w VALUES ('a', 1, 'x'), ('b', 2, 'y'), ('c', 3, 'z')",
        "INSERT OR REPLACE INTO w VALUES ('a', 10, 'x2')",
        "REPLACE INTO w VALUES ('d', 2, 'takes u from b')",
        "REPLACE INTO w VALUES ('c', 10, 'takes k c and u from a')",
        "UPDATE OR REPLACE w SET u = 3 WHERE k = 'd'",
      ])
  }

  func testRowidReplaceAcrossTwoRows() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE r(id INTEGER PRIMARY KEY, u TEXT UNIQUE, u2 TEXT UNIQUE, v)",
        "INSERT INTO r VALUES (1, 'a', 'A', 1), (2, 'b', 'B', 2), (3, 'c', 'C', 3)",
        "REPLACE INTO r VALUES (1, 'b', 'C', 9)",
        "UPDATE OR REPLACE r SET id = 1 WHERE id = 1",
        "INSERT INTO r VALUES (5, 'e', 'E', 5) ON CONFLICT(id) DO UPDATE SET v = excluded.v + 1",
        "INSERT INTO r VALUES (5, 'e', 'E', 5) ON CONFLICT(id) DO UPDATE SET v = excluded.v + 1",
        "INSERT INTO r VALUES (5, 'x', 'X', 5) ON CONFLICT DO NOTHING",
      ])
  }

  func testForeignKeyCascades() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
        "CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER DEFAULT 0 REFERENCES p(id) ON DELETE CASCADE ON UPDATE CASCADE, pname TEXT REFERENCES p(name) ON DELETE SET NULL ON UPDATE SET DEFAULT)",
        "INSERT INTO p VALUES (0, 'zero'), (1, 'one'), (2, 'two')",
        "INSERT INTO c VALUES (1, 1, 'one'), (2, 1, 'two'), (3, 2, 'two')",
        "PRAGMA foreign_keys = ON; UPDATE p SET id = 11 WHERE id = 1",
        "PRAGMA foreign_keys = ON; UPDATE p SET name = 'deux' WHERE id = 2",
        "PRAGMA foreign_keys = ON; DELETE FROM p WHERE id = 11",
        "PRAGMA foreign_keys = ON; REPLACE INTO p VALUES (2, 'zero')",
      ])
  }

  func testTriggers() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
        "CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, what, v REAL)",
        "CREATE TRIGGER ti AFTER INSERT ON t BEGIN INSERT INTO log(what, v) VALUES ('ins', new.v); END",
        "CREATE TRIGGER tu BEFORE UPDATE ON t WHEN new.v = 'skip' BEGIN SELECT RAISE(IGNORE); END",
        "CREATE TRIGGER td AFTER DELETE ON t BEGIN REPLACE INTO log(id, what, v) VALUES (1, 'del', old.v); END",
        "INSERT INTO t VALUES (1, 1), (2, 2.5), (3, 'x')",
        "UPDATE t SET v = 'skip'",
        "DELETE FROM t WHERE id = 2",
        "REPLACE INTO t VALUES (1, 7)",
      ])
  }

  func testRealValues() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE f(id INTEGER PRIMARY KEY, r REAL, d DOUBLE PRECISION, fl FLOAT, n NUMERIC, u, s TEXT)",
        "INSERT INTO f VALUES (1, 1, 2, 3, 4.0, 5.0, 6.0)",
        "INSERT INTO f VALUES (2, -0.0, -0.0, -0.0, -0.0, -0.0, -0.0)",
        "INSERT INTO f VALUES (3, 9007199254740993, 140737488355328, -140737488355329, 1e308, 1e-320, 1e400)",
        "INSERT INTO f VALUES (4, '1.5', '2', x'00', '  3 ', 'abc', 1.0)",
        "INSERT INTO f VALUES (5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)",
        "UPDATE f SET u = -0.0 WHERE id = 5",
        "UPDATE f SET u = 0 WHERE id = 5",
        "UPDATE f SET r = r WHERE 1",
        "UPDATE f SET n = n + 0.0, u = u * 1.0",
        "UPDATE f SET r = 1e999, d = -1e999 WHERE id = 1",
        "UPDATE f SET r = 1e999 - 1e999 WHERE id = 2",
      ])
  }

  func testStrictAndNamesAndBlobs() throws {
    let node = try TestNode(self)
    let big = String(repeating: "ab", count: 3 << 20)
    run(
      node,
      [
        "CREATE TABLE st(id INTEGER PRIMARY KEY, r REAL, a ANY) STRICT",
        "INSERT INTO st VALUES (1, 2, 3.0), (2, 2.5, '4'), (3, -0.0, x'01')",
        "CREATE TABLE \"odd \"\"name\"\" 日本\"(\"k e y\" TEXT PRIMARY KEY, \"v\"\"\" BLOB)",
        "INSERT INTO \"odd \"\"name\"\" 日本\" VALUES ('a', x'00ff'), ('b', 'text')",
        "UPDATE \"ODD \"\"NAME\"\" 日本\" SET \"v\"\"\" = CAST(\"v\"\"\" AS TEXT)",
        "CREATE TABLE Mixed(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO mixed VALUES (1, 'lower'), (2, x'6c6f776572')",
        "INSERT INTO MIXED VALUES (3, x'\(big)')",
        "UPDATE mixed SET v = v || 'x' WHERE id = 3",
        "CREATE TABLE \"\"(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO \"\" VALUES (1, 1)",
      ])
  }

  func testAlterTable() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO a VALUES (1, 1), (2, 2), (3, 3)",
        "ALTER TABLE a ADD COLUMN r REAL DEFAULT 2",
        "ALTER TABLE a ADD COLUMN t TEXT DEFAULT 'dflt'",
        "ALTER TABLE a ADD COLUMN z DEFAULT -0.0",
        "ALTER TABLE a ADD COLUMN b BLOB DEFAULT x'0102'",
        "ALTER TABLE a ADD COLUMN n NUMERIC DEFAULT '7.0'",
        "UPDATE a SET v = 10 WHERE id = 1",
        "DELETE FROM a WHERE id = 2",
        "REPLACE INTO a(id, v) VALUES (3, 30)",
        "ALTER TABLE a RENAME TO a2",
        "UPDATE a2 SET v = 11 WHERE id = 1",
        "ALTER TABLE a2 RENAME COLUMN v TO w",
        "ALTER TABLE a2 DROP COLUMN t",
        "UPDATE a2 SET w = 12",
        "DROP TABLE a2",
      ])
  }

  func testSequenceAndFailingStatements() throws {
    let node = try TestNode(self)
    run(
      node,
      [
        "CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT, u UNIQUE, v)",
        "INSERT INTO s(u, v) VALUES (1, 1), (2, 2), (3, 3)",
        "UPDATE sqlite_sequence SET seq = 100 WHERE name = 's'",
        "INSERT INTO s(u, v) VALUES (4, 4)",
        "DELETE FROM sqlite_sequence",
        "INSERT INTO s(u, v) VALUES (5, 5)",
        "UPDATE OR FAIL s SET u = 3 WHERE u >= 1",
        "INSERT OR FAIL INTO s(u, v) VALUES (6, 6), (7, 7), (1, 1), (8, 8)",
        "INSERT OR ROLLBACK INTO s(u, v) VALUES (9, 9), (1, 1)",
        "INSERT OR IGNORE INTO s(u, v) VALUES (10, 10), (1, 1)",
        "UPDATE s SET v = v",
        "DELETE FROM s",
      ])
    // Inside one body, a failing statement caught and the transaction going on.
    let db = try node.open()
    _ = try? db.write { tx in
      try tx.execute("INSERT INTO s(u, v) VALUES (20, 20)")
      try? tx.execute("INSERT OR FAIL INTO s(u, v) VALUES (21, 21), (20, 20)")
      try? tx.execute("UPDATE OR FAIL s SET u = 20 WHERE u = 21")
      try tx.execute("UPDATE s SET v = 'after'")
    }
    db.close()
    check(node, "a body that catches failing statements")
  }
}
