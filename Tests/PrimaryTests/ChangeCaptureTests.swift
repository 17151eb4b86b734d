// The preupdate-hook capture against SQLite's own session extension: the same seeded
// statements on two identical databases, one watched by a session, one by
// ChangeCapture, must give the same changes, and the capture's changeset applied to a
// third copy must give the same content.

import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class ChangeCaptureTests: XCTestCase {
  static let schema = """
    CREATE TABLE n(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, d BLOB, u INTEGER UNIQUE);
    CREATE TABLE t(k TEXT PRIMARY KEY, v, w TEXT NOT NULL DEFAULT 'x');
    CREATE TABLE w(a TEXT, b INTEGER, c, PRIMARY KEY(b, a)) WITHOUT ROWID;
    CREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT);
    CREATE TRIGGER n_log AFTER UPDATE OF a ON n BEGIN INSERT INTO log(what) VALUES ('n ' || new.id); END;
    """

  /// Three copies of one database: watched by a session, by the capture, and a replica.
  struct Trio {
    let sessionReplica: Connection
    let session: Connection
    let capture: Connection
    let replica: Connection
    let changeCapture: ChangeCapture

    init(root: String) throws {
      session = try Connection(path: root + "/session.sqlite", mode: .readWriteCreate)
      capture = try Connection(path: root + "/capture.sqlite", mode: .readWriteCreate)
      replica = try Connection(path: root + "/replica.sqlite", mode: .readWriteCreate)
      sessionReplica = try Connection(path: root + "/sreplica.sqlite", mode: .readWriteCreate)
      try sessionReplica.execute(ChangeCaptureTests.schema)
      try sessionReplica.setTriggersEnabled(false)
      for db in [session, capture, replica] { try db.execute(ChangeCaptureTests.schema) }
      try replica.setTriggersEnabled(false)  // as the updater applies: trigger effects are in the changeset
      changeCapture = ChangeCapture(connection: capture, accept: { !$0.hasPrefix("sqlite_") })
    }

    func shape(_ db: Connection, _ table: String) throws -> ChangeCapture.TableShape {
      var columns: [String] = []
      var primaryKey: [UInt8] = []
      var types: [String] = []
      for row in try db.query("SELECT name, pk, type FROM pragma_table_info(?)", [.text(table)]) {
        guard case .text(let name) = row[0], case .integer(let pk) = row[1], case .text(let type) = row[2] else {
          continue
        }
        columns.append(name)
        primaryKey.append(UInt8(pk))
        types.append(type)
      }
      return ChangeCapture.TableShape(columns: columns, primaryKey: primaryKey, declaredTypes: types)
    }

    /// Runs one transaction's statements on both watched copies (a failing statement is
    /// caught and the transaction goes on, as an application may do) and returns both
    /// changesets.
    func run(_ statements: [(String, [SQLiteValue])]) throws -> (session: [UInt8], capture: [UInt8]) {
      let session = try Session(connection: self.session, accept: { !$0.hasPrefix("sqlite_") })
      try self.session.execute("BEGIN")
      try capture.execute("BEGIN")
      changeCapture.isRecording = true
      for (sql, arguments) in statements {
        let a = Result { try self.session.query(sql, arguments) }
        let mark = changeCapture.count
        let b = Result { try capture.query(sql, arguments) }
        if case .failure = b, changeCapture.count > mark {
          try changeCapture.reconcile(since: mark) { try shape(capture, $0) }
        }
        XCTAssertEqual(a.isSuccess, b.isSuccess, sql)
      }
      changeCapture.isRecording = false
      let expected = try session.changeset()
      let captured = try changeCapture.changeset { try shape(capture, $0) }
      try self.session.execute("COMMIT")
      try capture.execute("COMMIT")
      return (expected, captured)
    }
  }

  func testCapturedChangesReplicateAndUndoARandomWorkload() throws {
    let seed = testSeed(#function)
    var random = SeededGenerator(seed: seed)
    let trio = try Trio(root: try temporaryDirectory(self))
    var nonEmpty = 0
    for transaction in 1...400 {
      let statements = (0..<Int.random(in: 1...6, using: &random)).map { _ in Self.statement(&random) }
      let before = try DatabaseChecksum.compute(trio.replica).checksum
      let (expected, captured) = try trio.run(statements)
      let context = "seed \(seed), transaction \(transaction): \(statements.map(\.0))"
      if !captured.isEmpty { nonEmpty += 1 }
      // Applied in the primary's order, the changes give the primary's content.
      try Changeset.apply(captured, to: trio.replica)
      let primary = try DatabaseChecksum.compute(trio.capture).checksum
      XCTAssertEqual(try DatabaseChecksum.compute(trio.session).checksum, primary, context)
      XCTAssertEqual(try DatabaseChecksum.compute(trio.replica).checksum, primary, context)
      // Inverted, newest first, they give back what was there before.
      try Changeset.apply(try Changeset.invert(captured), to: trio.replica)
      XCTAssertEqual(try DatabaseChecksum.compute(trio.replica).checksum, before, "undo: \(context)")
      try Changeset.apply(captured, to: trio.replica)
      if try Changeset.changes(captured).count == 1 {
        XCTAssertEqual(captured, expected, "one change is byte for byte a session's: \(context)")
      }
    }
    XCTAssertGreaterThan(nonEmpty, 200, "the workload must change rows")
  }

  func testUniqueValuesSwappedBetweenRowsReplicateWhereASessionsChangesetConflicts() throws {
    let trio = try Trio(root: try temporaryDirectory(self))
    let setup = try trio.run([("INSERT INTO n(id, u) VALUES (1, 1), (2, 2)", [])])
    try Changeset.apply(setup.capture, to: trio.replica)
    try Changeset.apply(setup.session, to: trio.sessionReplica)
    // A swap through a spare value: fine row by row in the primary's order; as net
    // changes (1→2, 2→1) it collides whichever comes first.
    let (expected, captured) = try trio.run([
      ("UPDATE n SET u = 0 WHERE id = 1", []), ("UPDATE n SET u = 1 WHERE id = 2", []),
      ("UPDATE n SET u = 2 WHERE id = 1", []),
    ])
    try Changeset.apply(captured, to: trio.replica)
    XCTAssertEqual(
      try DatabaseChecksum.compute(trio.replica).checksum, try DatabaseChecksum.compute(trio.capture).checksum)
    XCTAssertThrowsError(try Changeset.apply(expected, to: trio.sessionReplica), "the session's order collides")
  }

  func testAnUpdateFromZeroToNegativeZeroIsKept() throws {
    let trio = try Trio(root: try temporaryDirectory(self))
    let setup = try trio.run([("INSERT INTO w(a, b, c) VALUES ('z', 1, 0.0)", [])])
    try Changeset.apply(setup.capture, to: trio.replica)
    let (_, captured) = try trio.run([("UPDATE w SET c = ? WHERE b = 1", [.real(-0.0)])])
    XCTAssertEqual(try Changeset.changes(captured).count, 1)
    try Changeset.apply(captured, to: trio.replica)
    let sign = "SELECT c FROM w WHERE b = 1"
    guard case .real(let value) = try trio.replica.query(sign)[0][0] else { return XCTFail("not a real") }
    XCTAssertEqual(value.sign, .minus, "the replica holds what the primary holds")
  }

  func testAWriteToAGeneratedColumnTableIsRefusedNamingIt() throws {
    // Made before the node (CREATE TABLE with generated columns is refused through it).
    let root = try temporaryDirectory(self)
    try Connection(path: root + "/db.sqlite", mode: .readWriteCreate).execute(
      "CREATE TABLE g(id INTEGER PRIMARY KEY, x INTEGER, y INTEGER GENERATED ALWAYS AS (x * 2))")
    let node = try TestNode(existingDatabaseIn: root)
    let before = try node.layout.loadConfig()
    XCTAssertThrowsError(try node.write("INSERT INTO g(id, x) VALUES (1, 2)")) { error in
      XCTAssertTrue("\(error)".contains("table g"), "\(error)")
      XCTAssertTrue("\(error)".contains("generated columns"), "\(error)")
    }
    XCTAssertEqual(try node.layout.loadConfig().nodeId, before.nodeId)
    XCTAssertEqual(
      try Connection(path: node.database, mode: .readOnly).scalarInt("SELECT count(*) FROM g"), 0,
      "nothing written")
  }

  private func single(_ statements: [(String, [SQLiteValue])]) -> Bool { statements.count == 1 }

  static func sorted(_ changes: [RowChange]) -> [String] { changes.map { "\($0)" }.sorted() }

  /// One random statement over the schema's tables; some fail (unique and NOT NULL
  /// constraints), some change keys, some change nothing.
  static func statement(_ random: inout SeededGenerator) -> (String, [SQLiteValue]) {
    func value(_ random: inout SeededGenerator) -> SQLiteValue {
      switch Int.random(in: 0..<6, using: &random) {
      case 0: .null
      case 1: .integer(Int64.random(in: -3...3, using: &random))
      // Not -0.0: a session drops an update from 0.0 to -0.0 (it compares by value), the capture keeps it.
      case 2: .real([0.0, 2.0, 1.5, -2.25][Int.random(in: 0..<4, using: &random)])
      case 3: .text(["", "a", "β", String(repeating: "z", count: 200)][Int.random(in: 0..<4, using: &random)])
      case 4:
        .blob(
          [UInt8](repeating: UInt8.random(in: 0...255, using: &random), count: Int.random(in: 0...3, using: &random)))
      default: .integer(Int64.random(in: Int64.min...Int64.max, using: &random))
      }
    }
    let id = SQLiteValue.integer(Int64.random(in: 1...12, using: &random))
    let key = SQLiteValue.text(["a", "b", "c", "d"][Int.random(in: 0..<4, using: &random)])
    let small = SQLiteValue.integer(Int64.random(in: 1...4, using: &random))
    switch Int.random(in: 0..<14, using: &random) {
    case 0:
      return (
        "INSERT INTO n(id, a, b, c, d, u) VALUES (?, ?, ?, ?, ?, ?)",
        [id, value(&random), value(&random), value(&random), value(&random), small]
      )
    case 1: return ("INSERT OR REPLACE INTO n(id, a, u) VALUES (?, ?, ?)", [id, value(&random), small])
    case 2: return ("UPDATE n SET a = ?, c = ? WHERE id = ?", [value(&random), value(&random), id])
    case 3: return ("UPDATE n SET id = id + 20 WHERE id = ?", [id])
    case 4: return ("DELETE FROM n WHERE id = ?", [id])
    case 5: return ("UPDATE n SET b = b WHERE id = ?", [id])
    case 6:
      return ("INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", [key, value(&random)])
    case 7: return ("UPDATE t SET k = ? WHERE k = ?", [key, .text("a")])
    case 8: return ("UPDATE t SET w = ? WHERE k = ?", [value(&random), key])
    case 9: return ("DELETE FROM t WHERE k = ?", [key])
    case 10: return ("INSERT OR REPLACE INTO w(a, b, c) VALUES (?, ?, ?)", [key, small, value(&random)])
    case 11: return ("UPDATE w SET c = ? WHERE b = ?", [value(&random), small])
    case 12: return ("DELETE FROM w WHERE a = ?", [key])
    default: return ("UPDATE OR FAIL n SET u = u + 1 WHERE id <= ?", [id])
    }
  }
}

extension Result {
  fileprivate var isSuccess: Bool { if case .success = self { true } else { false } }
}
