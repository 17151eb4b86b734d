import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import XCTest

final class WritePathTests: XCTestCase {
  func testCommitRecordPositionsAreConsecutiveAndDurable() throws {
    let n = try TestNode(self)
    let first = try XCTUnwrap(try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
    XCTAssertEqual(first.position, MATPosition(sno: 1, rba: 64))
    XCTAssertEqual(first.txid, TransactionID(1))
    let second = try XCTUnwrap(try n.write("INSERT INTO t VALUES (1, 'a')"))
    XCTAssertEqual(second.position, first.end)
    XCTAssertEqual(second.txid, TransactionID(2))
    let v = try n.trail()
    XCTAssertEqual(v.records.map(\.position), [first.position, second.position])
    XCTAssertEqual(v.end, second.end)
    let status = try NodeStatus.read(node: n.node)
    XCTAssertEqual(status.trailEnd, second.end)
    XCTAssertEqual(status.databaseEnd, second.end)
    XCTAssertEqual(status.lastTxid, TransactionID(2))
  }

  func testATransactionThatChangesNothingWritesNoRecord() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    XCTAssertNil(try n.write("SELECT * FROM t"))
    XCTAssertNil(try n.write("DELETE FROM t WHERE id = 42"))
    XCTAssertEqual(try n.trail().records.count, 1)
  }

  func testDDLAndChangesReplayInExecutionOrder() throws {
    let n = try TestNode(self)
    let db = try n.open()
    _ = try db.write { tx in
      try tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)")
      try tx.execute("INSERT INTO t VALUES (1, 'one')")
      try tx.execute("ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 7")
      try tx.execute("INSERT INTO t VALUES (2, 'two', 22)")
      try tx.execute("UPDATE t SET b = 11 WHERE id = 1")
      try tx.execute("CREATE INDEX t_b ON t(b)")
      try tx.execute("CREATE TABLE u(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
      try tx.execute("INSERT INTO u VALUES ('x', x'00ff'), ('y', NULL)")
    }
    db.close()
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
    let record = try XCTUnwrap(try n.trail().records.first)
    let decoded = try DecodedTransaction(record)
    let kinds = decoded.items.map { item -> String in
      switch item {
      case .ddl(let sql): return "ddl:" + sql.prefix(12)
      case .change(let c): return "\(c.operation.rawValue):\(c.table)"
      case .checksum: return "checksum"
      }
    }
    // DDL keeps its place among the changes; within one changeset SQLite orders rows itself.
    XCTAssertEqual(
      kinds.map { $0.hasPrefix("update:t") ? "insert:t" : $0 },
      [
        "ddl:CREATE TABLE", "insert:t", "ddl:ALTER TABLE ", "insert:t", "insert:t", "ddl:CREATE INDEX",
        "ddl:CREATE TABLE", "insert:u", "insert:u",
      ])
    XCTAssertEqual(kinds.filter { $0 == "update:t" }.count, 1)
    // The update's before image carries the added column's default, not NULL.
    let update = decoded.items.compactMap { item -> DecodedChange? in
      if case .change(let c) = item, c.operation == .update { return c }
      return nil
    }.first
    XCTAssertEqual(update?.old?.first { $0.0 == "b" }?.1, .integer(7))
    XCTAssertEqual(
      try n.rows("SELECT id, a, b FROM t ORDER BY id"),
      [[.integer(1), .text("one"), .integer(11)], [.integer(2), .text("two"), .integer(22)]])
  }

  func testTriggerEffectsAreCapturedAndNotAppliedTwiceOnReplay() throws {
    let n = try TestNode(self)
    try n.write(
      """
      CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);
      CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, t_id INTEGER);
      CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO audit(t_id) VALUES (new.id); END;
      """)
    for i in 1...5 { try n.write("INSERT INTO t VALUES (?, ?)", [.integer(Int64(i)), .integer(Int64(i * 10))]) }
    XCTAssertEqual(try n.rows("SELECT count(*) FROM audit"), [[.integer(5)]])
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  func testAWriteToATableWithoutPrimaryKeyIsRefusedAndNothingIsWritten() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE loose(x, y)")
    let before = try n.trail().end
    let checksum = try n.checksum()
    XCTAssertThrowsError(
      try n.write("INSERT INTO t VALUES (1); INSERT INTO loose VALUES (1, 2)"),
      containing: ["table loose has no PRIMARY KEY", "session extension"])
    // Through a trigger too: the authorizer sees the trigger's body.
    try n.write("CREATE TRIGGER sneak AFTER INSERT ON t BEGIN INSERT INTO loose VALUES (new.id, 0); END")
    XCTAssertThrowsError(try n.write("INSERT INTO t VALUES (2)"), containing: ["table loose has no PRIMARY KEY"])
    XCTAssertEqual(try n.rows("SELECT count(*) FROM t"), [[.integer(0)]])
    XCTAssertEqual(try n.rows("SELECT count(*) FROM loose"), [[.integer(0)]])
    XCTAssertEqual(try n.trail().records.count, 2)
    XCTAssertGreaterThan(try n.trail().end, before)
    _ = checksum
  }

  func testMalformedSQLAndRefusedStatementsChangeNothing() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let end = try n.trail().end
    let sum = try n.checksum()
    let cases: [(String, [String])] = [
      ("INSERT INTO t VALUES (1, 'a'); INSERT INTO nowhere VALUES (1)", ["no such table: nowhere"]),
      ("INSERT INTO t VALUES (1, 'a'); INSRT INTO t VALUES (2, 'b')", ["syntax error"]),
      ("INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (1, 'dup')", ["UNIQUE constraint failed"]),
      ("BEGIN; INSERT INTO t VALUES (1, 'a')", ["BEGIN is not allowed"]),
      ("INSERT INTO t VALUES (1, 'a'); COMMIT", ["COMMIT is not allowed"]),
      ("ATTACH DATABASE ':memory:' AS other", ["ATTACH"]),
      ("PRAGMA user_version = 7", ["PRAGMA user_version is not allowed"]),
      ("PRAGMA writable_schema = 1", ["PRAGMA writable_schema"]),
      ("UPDATE understudy_state SET last_txid = 99", ["belongs to Understudy"]),
      ("DROP TABLE understudy_state", ["Understudy's own tables"]),
      ("CREATE TABLE understudy_mine(id INTEGER PRIMARY KEY)", ["Understudy's own tables"]),
      ("CREATE VIRTUAL TABLE v USING fts5(x)", ["virtual tables"]),
      ("   ;  -- nothing", ["no SQL statement"]),
      ("INSERT INTO t VALUES (?, ?)", ["parameters"]),
    ]
    for (sql, fragments) in cases {
      XCTAssertThrowsError(try n.write(sql), containing: fragments)
    }
    XCTAssertEqual(try n.trail().end, end)
    XCTAssertEqual(try n.checksum(), sum)
    XCTAssertEqual(try n.rows("PRAGMA user_version"), [[.integer(0)]])
  }

  func testAFailedTransactionInAGroupDoesNotTouchItsNeighbours() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    let db = try n.open()
    defer { db.close() }
    let results = Results()
    let group = DispatchGroup()
    for i in 0..<60 {
      group.enter()
      try db.submit(
        { tx in
          try tx.execute("INSERT INTO t VALUES (?)", [.integer(Int64(i))])
          if i % 3 == 0 { throw CocoaError(.userCancelled) }
        },
        completion: {
          results.add(i, $0)
          group.leave()
        })
    }
    group.wait()
    let ok = results.succeeded.sorted()
    XCTAssertEqual(ok, (0..<60).filter { $0 % 3 != 0 })
    XCTAssertEqual(try n.rows("SELECT count(*) FROM t"), [[.integer(40)]])
    XCTAssertEqual(try n.trail().records.count, 41)
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  /// A statement that makes SQLite roll back the whole transaction (OR ROLLBACK here; a
  /// full disk or an I/O error does the same) takes the group's savepoints with it. Every
  /// request of the group must still hear its outcome (the ones after it were never
  /// finished, and `sql --each-line` hung on a full disk), and nothing of it is durable.
  func testATransactionRolledBackBySQLiteFailsItsWholeGroupAndEveryRequestHears() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    try n.write("INSERT INTO t VALUES (0)")
    let before = try n.trail().end
    let db = try n.open()
    defer { db.close() }
    let results = Results()
    let group = DispatchGroup()
    // Held in the first request's body, the rest queue up behind it as one group.
    let gate = DispatchSemaphore(value: 0)
    for i in 1...6 {
      group.enter()
      try db.submit(
        { tx in
          if i == 1 { gate.wait() }
          try tx.execute(i == 4 ? "INSERT OR ROLLBACK INTO t VALUES (0)" : "INSERT INTO t VALUES (\(i))")
        },
        completion: {
          results.add(i, $0)
          group.leave()
        })
      if i == 1 { usleep(50_000) }
    }
    gate.signal()
    XCTAssertEqual(group.wait(timeout: .now() + 10), .success, "a request of the group never heard its outcome")
    // The first ran alone; the other five were one group, gone with the rollback.
    XCTAssertEqual(results.succeeded.sorted(), [1])
    XCTAssertEqual(try n.rows("SELECT id FROM t ORDER BY id"), [[.integer(0)], [.integer(1)]])
    XCTAssertEqual(try n.trail().records.count, 3)
    XCTAssertGreaterThan(try n.trail().end, before)
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  func testConcurrentWritersEachGetTheirOwnRecord() throws {
    let n = try TestNode(self, trailFileSize: 4096)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, writer INTEGER)")
    let db = try n.open()
    let commits = Results()
    let group = DispatchGroup()
    for w in 0..<8 {
      group.enter()
      Thread {
        for i in 0..<40 {
          let r = Result {
            try db.write {
              try $0.execute("INSERT INTO t VALUES (?, ?)", [.integer(Int64(w * 1000 + i)), .integer(Int64(w))])
            }.commit
          }
          commits.add(w * 1000 + i, r.map { $0 })
        }
        group.leave()
      }.start()
    }
    group.wait()
    db.close()
    XCTAssertEqual(commits.failures, 0)
    let txids = commits.commits.map(\.txid.rawValue).sorted()
    XCTAssertEqual(txids, Array(2...321))
    let v = try n.trail()
    XCTAssertEqual(v.records.count, 321)
    XCTAssertGreaterThan(try n.layout.mat.snos().count, 2, "rollover happened under concurrency")
    XCTAssertEqual(Set(commits.commits.map(\.position)), Set(v.records.dropFirst().map(\.position)))
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  /// SQLite starts the WAL over only when a transaction begins with all of it copied: a
  /// checkpoint that falls behind a writer that never pauses lets the WAL grow by every
  /// page written (hundreds of megabytes in a benchmark, once).
  func testTheWALStaysBoundedWhileAWriterNeverPauses() throws {
    let n = try TestNode(self, trailFileSize: 16 << 20)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    let db = try n.open()
    var largest: Int64 = 0
    for i in 0..<6000 {
      _ = try db.write { try $0.execute("INSERT INTO t VALUES (?, randomblob(3000))", [.integer(Int64(i))]) }
      if i % 100 == 0, let size = try FileManager.default.attributesOfItem(atPath: n.database + "-wal")[.size] as? Int64
      {
        largest = max(largest, size)
      }
    }
    db.close()
    // 6,000 commits of a page-sized row write about 20,000 pages (80 MB) to the WAL; the
    // writer checkpoints at 1,000 frames (4 MB), so the WAL restarts well below 24 MB.
    XCTAssertLessThan(largest, 24 << 20, "the WAL reached \(largest) bytes")
    XCTAssertGreaterThan(largest, 1 << 20)
  }

  /// Checkpoints copy the WAL into the database while the writer goes on. (A checkpoint
  /// thread once answered every call with OK and copied nothing: its connection had never
  /// read the database, so SQLite had not opened the WAL for it.)
  func testCheckpointsCopyTheWALIntoTheDatabase() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    let db = try n.open()
    defer { db.close() }
    func databaseBytes() throws -> Int64 {
      try FileManager.default.attributesOfItem(atPath: n.database)[.size] as? Int64 ?? 0
    }
    let before = try databaseBytes()
    // About 2,000 frames: twice what starts a checkpoint.
    for i in 0..<700 {
      _ = try db.write { try $0.execute("INSERT INTO t VALUES (?, randomblob(3000))", [.integer(Int64(i))]) }
    }
    XCTAssertGreaterThan(
      try databaseBytes(), before + 1_000_000, "the WAL's pages never reached the database (\(before) bytes before)")
  }

  func testAsyncWriteReturnsTheClosuresValue() async throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    let db = try n.open()
    let (count, commit) = try await db.write { tx -> Int in
      try tx.execute("INSERT INTO t VALUES (1), (2)")
      guard case .integer(let c) = try tx.query("SELECT count(*) FROM t")[0][0] else { return -1 }
      return Int(c)
    }
    db.close()
    XCTAssertEqual(count, 2)
    XCTAssertEqual(commit?.txid, TransactionID(2))
  }
}

final class Results: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let lock = NSLock()
  private(set) var succeeded: [Int] = []
  private(set) var commits: [CommitInfo] = []
  private(set) var failures = 0

  func add(_ i: Int, _ result: Result<CommitInfo?, Error>) {
    lock.lock()
    defer { lock.unlock() }
    switch result {
    case .success(let c):
      succeeded.append(i)
      if let c { commits.append(c) }
    case .failure: failures += 1
    }
  }
}

final class DemotedWriterTests: XCTestCase {
  /// An open writer whose node was demoted behind its back (as a switchover's follow
  /// does: the database tied to another node's trail, the config a backup's) commits
  /// nothing more, however often it is asked, and the MAT stays as it was.
  func testAnOpenWriterStopsForGoodOnceItsNodeIsNoLongerThePrimary() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    let db = try n.open()
    defer { db.close() }
    _ = try db.write { try $0.execute("INSERT INTO t VALUES (1)") }
    let before = try n.trail().end

    let other = NodeID()
    try Promotion.rebase(
      database: n.database, from: db.config.nodeId, to: other, start: MATPosition(sno: 7, rba: TrailFormat.firstRBA))
    var config = try n.layout.loadConfig()
    config.role = .backup
    config.primary = "127.0.0.1:1"
    try n.layout.saveConfig(config)

    for attempt in 1...3 {
      XCTAssertThrowsError(
        try db.write { try $0.execute("INSERT INTO t VALUES (\(attempt + 1))") },
        containing: ["no longer the primary", "backup"])
    }
    XCTAssertEqual(try n.trail().end, before, "nothing was written to the MAT")
    XCTAssertEqual(try n.rows("SELECT count(*) FROM t"), [[.integer(1)]])
  }
}
