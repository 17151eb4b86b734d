// File recovery undoes the diverged transactions with one joined inverted changeset per
// run between DDL items (issue 14): the result must be what undoing them one at a time
// gives, the database as it was at the takeover point, and a conflict must still name
// the one transaction whose undo meets it.

import Foundation
import SQLiteSupport
import TestSupport
import XCTest

final class JoinedUndoTests: XCTestCase {
  /// Many transactions mixing inserts, updates, key changes (single and composite
  /// keys), deletes, rows changed several times in one transaction and across several,
  /// a swap of UNIQUE values through a spare one, AUTOINCREMENT inserts and a hand-moved
  /// sequence, and DDL in the middle (alone, and among a transaction's row changes).
  func testRecoveryUndoesAMixedWorkloadAcrossDDLToTheTakeoverChecksum() throws {
    let seed = testSeed(#function)
    let context = "seed \(seed)"
    let site = try RecoverySite(self)
    let model = try site.loseMixedWork(seed: seed, lost: 150)
    try site.takeOver()
    let recover = try site.succeeds(["recover", "--node", site.a, "--to-mat", model.shippedEnd, "--json"])
    let r = try XCTUnwrap(recover.json as? [String: Any], recover.stdout)
    XCTAssertEqual(r["undone"] as? Int, model.lost.count, context)
    XCTAssertEqual(
      r["checksum"] as? String, model.checksumAtShippedEnd, "recover must land on the 888 checksum; \(context)")
    XCTAssertEqual(try site.checksum(site.a), model.checksumAtShippedEnd, context)
    XCTAssertEqual(try site.checksum(site.a), try site.checksum(site.b), context)
    XCTAssertEqual(try site.sequence(site.a, "auto"), model.sequenceAtShippedEnd, context)
  }

  /// The same workload with every joined apply made to fail after changing its rows: the
  /// run is rolled back to its savepoint and undone one transaction at a time, to the
  /// same database.
  func testAJoinedUndoThatFailsIsRolledBackAndRedoneOneByOne() throws {
    let seed = testSeed(#function)
    let context = "seed \(seed)"
    let site = try RecoverySite(self)
    let model = try site.loseMixedWork(seed: seed, lost: 60)
    try site.takeOver()
    let recover = try understudy(
      ["recover", "--node", site.a, "--to-mat", model.shippedEnd, "--json"],
      environment: ["UNDERSTUDY_FAILPOINT": "joined-apply-fails:1"])
    XCTAssertEqual(recover.status, 0, "\(context): \(recover.stderr)")
    XCTAssertEqual(
      (recover.json as? [String: Any])?["checksum"] as? String, model.checksumAtShippedEnd,
      "\(context): \(recover.stdout)")
    XCTAssertEqual(try site.checksum(site.a), model.checksumAtShippedEnd, context)
  }

  /// Adversarial (adversarial-2): the joined undo fails and is redone one by one, in a
  /// run with no DDL, so file recovery keeps the checksum with its tracker
  /// (`FileRecovery.undoKeepingChecksum`) rather than recomputing it. The rolled-back
  /// joined apply's rows were seen by the tracker's hook too: they must not count.
  func testAJoinedUndoThatFailsWithoutDDLKeepsTheChecksumRight() throws {
    let site = try RecoverySite(self)
    try site.sql(site.a, ["CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)"])
    let (daemonA, daemonB) = (try Daemon(node: site.a), try Daemon(node: site.b))
    let shipped = try site.sql(site.a, (1...20).map { "INSERT INTO kv VALUES (\($0), 'shipped', 0)" })
    try site.waitApplied(site.b, try XCTUnwrap(shipped.last).end)
    let atShipped = try site.checksum(site.a)
    try daemonB.stop()
    try site.sql(site.a, (1...12).map { "UPDATE kv SET v = 'lost \($0)', n = n + \($0) WHERE id = \($0)" })
    daemonA.kill()
    try site.takeOver()
    let recover = try understudy(
      ["recover", "--node", site.a, "--to-mat", try XCTUnwrap(shipped.last).end, "--json"],
      environment: ["UNDERSTUDY_FAILPOINT": "joined-apply-fails:1"])
    XCTAssertEqual(recover.status, 0, recover.stderr)
    XCTAssertEqual((recover.json as? [String: Any])?["checksum"] as? String, atShipped, recover.stdout)
    let full = try site.succeeds(["checksum", "--node", site.a, "--full", "--json"])
    XCTAssertEqual((full.json as? [String: Any])?["checksum"] as? String, atShipped, "the data is right")
    let verify = try understudy(["verify", "--node", site.a])
    XCTAssertEqual(verify.status, 0, "kept == full scan after recover: \(verify.stdout) \(verify.stderr)")
  }

  /// A row changed behind Understudy's back: the undo of the one transaction that last
  /// changed it conflicts, in the middle of a joined run, and the error names that
  /// transaction and its position; nothing of the run (or of the newer transactions
  /// before it) stays applied.
  func testAConflictInAJoinedRunNamesItsTransaction() throws {
    let site = try RecoverySite(self)
    try site.sql(site.a, ["CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)"])
    let (daemonA, daemonB) = (try Daemon(node: site.a), try Daemon(node: site.b))
    let shipped = try site.sql(site.a, (1...20).map { "INSERT INTO kv VALUES (\($0), 'shipped', 0)" })
    try site.waitApplied(site.b, try XCTUnwrap(shipped.last).end)
    try daemonB.stop()
    // Twelve transactions in one run; the sixth is the last to change row 6.
    let lost = try site.sql(
      site.a,
      (1...12).map {
        "UPDATE kv SET v = 'lost \($0)', n = n + \($0) WHERE id = \($0); UPDATE kv SET n = n + 1 WHERE id = 20"
      })
    daemonA.kill()
    let culprit = lost[5]
    do {
      let db = try Connection(path: site.aDB)
      try db.execute("UPDATE kv SET v = 'changed behind its back' WHERE id = 6")
    }
    let before = try site.checksum(site.a)
    try site.takeOver()
    let recover = try understudy(["recover", "--node", site.a, "--to-mat", try XCTUnwrap(shipped.last).end, "--json"])
    XCTAssertEqual(recover.status, 1, recover.stdout)
    XCTAssertTrue(
      recover.stderr.contains("undoing transaction \(culprit.txid) at \(culprit.position) conflicts"),
      "the error must name transaction \(culprit.txid) at \(culprit.position): \(recover.stderr)")
    XCTAssertTrue(recover.stderr.contains("table kv key (6)"), recover.stderr)
    XCTAssertEqual(try site.checksum(site.a), before, "a failed undo leaves the database as it was")
  }
}

// MARK: - Helpers

private struct Commit {
  var txid: Int
  var position: String
  var end: String
}

/// What `loseMixedWork` wrote: where the backup stopped, the database there, and the
/// transactions only the old primary has.
private struct LostWork {
  var shippedEnd: String
  var checksumAtShippedEnd: String
  var sequenceAtShippedEnd: Int?
  var lost: [Commit]
}

/// Old primary A and backup B (with a listen address, to take over) on loopback.
private struct RecoverySite {
  let root: String
  var a: String { root + "/a" }
  var b: String { root + "/b" }
  var aDB: String { root + "/a.db" }
  let addressA = "127.0.0.1:\(freePort())"
  let addressB = "127.0.0.1:\(freePort())"
  /// B's daemon once it serves as the primary (`recover` looks for the new generation there).
  private let primaryB = DaemonSlot()

  final class DaemonSlot {
    var daemon: Daemon?
    deinit { try? daemon?.stop() }
  }

  init(_ test: XCTestCase, name: String = #function) throws {
    root = try temporaryDirectory(test, name)
    try succeeds(["init", "primary", "--node", a, "--db", aDB, "--listen", addressA, "--trail-file-size", "16384"])
    try succeeds([
      "init", "backup", "--node", b, "--db", root + "/b.db", "--primary", addressA, "--listen", addressB,
      "--secret-file", a + "/secret.key",
    ])
  }

  @discardableResult
  func succeeds(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
    let outcome = try understudy(arguments)
    XCTAssertEqual(outcome.status, 0, "\(arguments.prefix(3)): \(outcome.stderr)", file: file, line: line)
    return outcome
  }

  /// One transaction per line; lines that change nothing are not expected.
  func sql(_ node: String, _ lines: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [Commit] {
    let outcome = try understudy(
      ["sql", "--node", node, "--each-line", "--json"], stdin: lines.joined(separator: "\n"))
    XCTAssertEqual(outcome.status, 0, outcome.stderr + outcome.stdout.suffix(300), file: file, line: line)
    let commits = outcome.jsonLines.compactMap { line -> Commit? in
      guard let txid = (line as? [String: Any])?["txid"] as? Int, let position = positionText(line, "position"),
        let end = positionText(line, "end")
      else { return nil }
      return Commit(txid: txid, position: position, end: end)
    }
    XCTAssertEqual(commits.count, lines.count, "not every line committed", file: file, line: line)
    return commits
  }

  func checksum(_ node: String) throws -> String {
    let outcome = try succeeds(["checksum", "--node", node, "--json"])
    return try XCTUnwrap((outcome.json as? [String: Any])?["checksum"] as? String, outcome.stdout)
  }

  func sequence(_ node: String, _ table: String) throws -> Int? {
    let outcome = try succeeds([
      "query", "--node", node, "--json", "SELECT seq FROM sqlite_sequence WHERE name = '\(table)'",
    ])
    return ((outcome.json as? [String: Any])?["rows"] as? [[Any]])?.first?.first as? Int
  }

  func waitApplied(_ node: String, _ position: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let outcome = try understudy(["wait", "--node", node, "--applied", position, "--timeout", "60"])
    XCTAssertEqual(outcome.status, 0, outcome.stderr, file: file, line: line)
  }

  /// B takes over (A's daemon is gone) and serves as the primary of generation 2.
  func takeOver() throws {
    try succeeds(["takeover", "--node", b, "--json"])
    let daemon = try Daemon(node: b)
    primaryB.daemon = daemon
    XCTAssertTrue(eventually(20) { events(b).contains { $0["code"] as? Int == 9001 } }, "b does not serve")
  }

  /// Ships a base to B, then commits `lost` seeded transactions on A only and SIGKILLs A.
  func loseMixedWork(seed: UInt64, lost count: Int) throws -> LostWork {
    var rng = SeededGenerator(seed: seed)
    try sql(
      a,
      [
        "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)",
        "CREATE TABLE pairs(a TEXT, b INTEGER, w INTEGER UNIQUE, v TEXT, PRIMARY KEY (a, b))",
        "CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)",
      ])
    let daemonA = try Daemon(node: a)
    let daemonB = try Daemon(node: b)
    var kv = Set(1...40)
    var pairs: [Int: Int] = Dictionary(uniqueKeysWithValues: (1...10).map { ($0, $0) })  // b → w
    var nextID = 1000
    var nextW = 100
    var autoRows = 3
    var shipped = try sql(a, (1...40).map { "INSERT INTO kv VALUES (\($0), 'base \($0)', \($0))" })
    shipped += try sql(a, pairs.keys.sorted().map { "INSERT INTO pairs VALUES ('p', \($0), \($0), 'base')" })
    shipped += try sql(a, ["INSERT INTO auto(v) VALUES ('1'), ('2'), ('3'), ('4')", "DELETE FROM auto WHERE id = 4"])
    let shippedEnd = try XCTUnwrap(shipped.last).end
    try waitApplied(b, shippedEnd)
    let checksumAtShippedEnd = try checksum(a)
    let sequenceAtShippedEnd = try sequence(a, "auto")
    try daemonB.stop()

    var hasNote = false
    var hasExtra = false
    var lines: [String] = []
    func anyRow() -> Int { kv.randomElement(using: &rng)! }
    func insertKV(_ id: Int, _ v: String) -> String { "INSERT INTO kv(id, v, n) VALUES (\(id), '\(v)', \(id % 7))" }
    for i in 0..<count {
      var line: String
      switch i {
      case count / 3:
        line = "ALTER TABLE kv ADD COLUMN note TEXT"
        hasNote = true
      case count / 2:
        // DDL among a transaction's row changes: its opposite must run between them.
        let (x, y) = (anyRow(), nextID)
        nextID += 1
        kv.insert(y)
        line =
          "UPDATE kv SET n = n + 5 WHERE id = \(x); \(insertKV(y, "before ddl")); CREATE TABLE extra(id INTEGER PRIMARY KEY, t TEXT); INSERT INTO extra VALUES (1, 'e'); UPDATE kv SET v = 'after ddl' WHERE id = \(x)"
        hasExtra = true
      case count * 3 / 4:
        line = "UPDATE sqlite_sequence SET seq = seq + 10 WHERE name = 'auto'"
      default:
        line = "UPDATE kv SET n = n - 1 WHERE id = \(anyRow())"  // what a kind that does not fit here does
        switch Int.random(in: 0..<11, using: &rng) {
        case 0:
          kv.insert(nextID)
          line = insertKV(nextID, "lost \(i)")
          nextID += 1
        case 1:
          line = "UPDATE kv SET v = 'upd \(i)', n = n + 17 WHERE id = \(anyRow())"
        case 2:
          // A key change: recorded as a delete and an insert.
          let x = anyRow()
          kv.remove(x)
          kv.insert(nextID)
          line = "UPDATE kv SET id = \(nextID), v = v || ' moved' WHERE id = \(x)"
          nextID += 1
        case 3 where kv.count > 10:
          let x = anyRow()
          kv.remove(x)
          line = "DELETE FROM kv WHERE id = \(x)"
        case 4:
          // One row changed several times in one transaction, deleted and put back.
          let x = anyRow()
          line =
            "UPDATE kv SET n = n + 1 WHERE id = \(x); UPDATE kv SET v = 'twice \(i)' WHERE id = \(x); DELETE FROM kv WHERE id = \(x); \(insertKV(x, "back \(i)")); UPDATE kv SET n = n + 3 WHERE id = \(x)"
        case 5:
          autoRows += 2
          line = "INSERT INTO auto(v) VALUES ('lost \(i)'), ('lost \(i)b')"
        case 6 where autoRows > 0:
          line = "DELETE FROM auto WHERE id = (SELECT max(id) FROM auto)"
          autoRows -= 1
          if Bool.random(using: &rng) {
            line += "; INSERT INTO auto(v) VALUES ('after delete \(i)')"
            autoRows += 1
          }
        case 7:
          // Swap two UNIQUE values through a spare one: fine only in the order they were made.
          let keys = pairs.keys.sorted()
          let (p, q) = (keys.randomElement(using: &rng)!, keys.randomElement(using: &rng)!)
          if p != q {
            let (wp, wq) = (pairs[p]!, pairs[q]!)
            (pairs[p], pairs[q]) = (wq, wp)
            line =
              "UPDATE pairs SET w = -1 WHERE a = 'p' AND b = \(p); UPDATE pairs SET w = \(wp) WHERE a = 'p' AND b = \(q); UPDATE pairs SET w = \(wq), v = 'swapped \(i)' WHERE a = 'p' AND b = \(p)"
          }
        case 8:
          // A composite key change and a fresh UNIQUE value.
          let p = pairs.keys.sorted().randomElement(using: &rng)!
          let q = p + 100 * (1 + Int.random(in: 0..<5, using: &rng))
          if pairs[q] == nil {
            pairs[p] = nil
            pairs[q] = nextW
            line = "UPDATE pairs SET b = \(q), w = \(nextW) WHERE a = 'p' AND b = \(p)"
            nextW += 1
          }
        case 9 where hasNote:
          line =
            "UPDATE kv SET note = 'note \(i)' WHERE id = \(anyRow()); UPDATE kv SET note = NULL, n = 0 WHERE id = \(anyRow())"
        case 10 where hasExtra:
          line = "INSERT OR REPLACE INTO extra VALUES (\(Int.random(in: 1...5, using: &rng)), 'x \(i)')"
        default:
          break
        }
      }
      lines.append(line)
    }
    let lost = try sql(a, lines)
    daemonA.kill()
    return LostWork(
      shippedEnd: shippedEnd, checksumAtShippedEnd: checksumAtShippedEnd, sequenceAtShippedEnd: sequenceAtShippedEnd,
      lost: lost)
  }
}
