import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class RecoveryTests: XCTestCase {
  func testOpenReplaysCommitsTheDatabaseLacks() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in 1...5 { try n.write("INSERT INTO t VALUES (?, 'early')", [.integer(Int64(i))]) }
    let saved = n.root + "/saved.sqlite"
    try Connection(path: n.database).execute("VACUUM INTO '\(saved)'")
    let db0 = try n.open()
    for i in 6...12 {
      _ = try db0.write { tx in
        try tx.execute("INSERT INTO t VALUES (?, 'late')", [.integer(Int64(i))])
        try tx.execute("UPDATE t SET v = 'touched' WHERE id = 1")
      }
    }
    db0.close()
    let expected = try n.checksum()
    // The database loses its tail (as WAL with synchronous=NORMAL may on power loss).
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: n.database + suffix) }
    try FileManager.default.copyItem(atPath: saved, toPath: n.database)
    let db = try n.open()
    XCTAssertEqual(db.recovery.replayed, 7)
    db.close()
    XCTAssertEqual(try n.checksum(), expected)
    XCTAssertEqual(try n.checksum(), try n.replayChecksum())
  }

  func testATornTailIsCutAndKeptAsBroken() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    let last = try XCTUnwrap(try n.write("INSERT INTO t VALUES (1)"))
    let path = n.layout.mat.filePath(sno: last.end.sno)
    // Half a record written after the end, as a crash in the middle of a write leaves it.
    let handle = try FileHandle(path: path, flags: O_WRONLY)
    try handle.write([UInt8](repeating: 0xAB, count: 20), at: Int(last.end.rba))
    let db = try n.open()
    XCTAssertEqual(db.recovery.tornTail, last.end)
    XCTAssertEqual(db.recovery.tornBytes, 20)
    let next = try XCTUnwrap(try db.write { try $0.execute("INSERT INTO t VALUES (2)") }.commit)
    db.close()
    XCTAssertEqual(next.position, last.end)
    XCTAssertTrue(FileManager.default.fileExists(atPath: path + ".broken-\(last.end.rba)"))
    XCTAssertEqual(try n.trail().records.count, 3)
    XCTAssertNil(try n.trail().garbageAfterEnd)
  }

  func testADatabaseAheadOfItsTrailIsRefused() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    let last = try XCTUnwrap(try n.write("INSERT INTO t VALUES (1)"))
    // The trail loses its last record (restored from an old copy, say).
    let handle = try FileHandle(path: n.layout.mat.filePath(sno: 1), flags: O_WRONLY)
    try handle.write([UInt8](repeating: 0, count: Int(last.end.rba - last.position.rba)), at: Int(last.position.rba))
    let sum = try n.checksum()
    XCTAssertThrowsError(
      try n.open(),
      containing: [
        "ahead of its Master Audit Trail", "transaction 2", "\(last.position)", "trail ends at \(last.position)",
      ])
    XCTAssertEqual(try n.checksum(), sum)
  }

  func testADatabaseOfAnotherNodeIsRefused() throws {
    let a = try TestNode(self, name: "a")
    let b = try TestNode(self, name: "b")
    var config = try a.layout.loadConfig()
    config.database = b.database
    try a.layout.saveConfig(config)
    XCTAssertThrowsError(try a.open(), containing: ["belongs to node \(try b.layout.loadConfig().nodeId)"])
  }

  func testADivergedDatabaseStopsReplayNamingTableAndKey() throws {
    let n = try TestNode(self)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try n.write("INSERT INTO t VALUES (7, 'a')")
    let saved = n.root + "/saved.sqlite"
    try Connection(path: n.database).execute("VACUUM INTO '\(saved)'")
    try n.write("UPDATE t SET v = 'b' WHERE id = 7")
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: n.database + suffix) }
    try FileManager.default.copyItem(atPath: saved, toPath: n.database)
    try Connection(path: n.database).execute("UPDATE t SET v = 'someone else' WHERE id = 7")
    XCTAssertThrowsError(try n.open(), containing: ["replaying transaction 3", "table t key (7)", "differs"])
    XCTAssertEqual(try n.rows("SELECT v FROM t"), [[.text("someone else")]])
  }

  func testInitRefusesAnExistingNodeAndAnAuditedDatabase() throws {
    let n = try TestNode(self)
    XCTAssertThrowsError(
      try PrimarySetup.initPrimary(.init(node: n.node, database: n.root + "/other.sqlite")),
      containing: ["already holds an Understudy node"])
    XCTAssertThrowsError(
      try PrimarySetup.initPrimary(.init(node: n.root + "/second", database: n.database)),
      containing: ["already audited by node"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: n.root + "/second"), "nothing half-made is left")
  }

  func testInitOnAnExistingDatabaseKeepsItsContentAsTheBase() throws {
    let root = try temporaryDirectory(self)
    let path = root + "/existing.sqlite"
    let db = try Connection(path: path, mode: .readWriteCreate)
    try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'kept')")
    try db.execute("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 5")
    let before = try DatabaseChecksum.compute(db)
    let config = try PrimarySetup.initPrimary(.init(node: root + "/node", database: path))
    XCTAssertEqual(config.base?.checksum, before.checksum)
    XCTAssertEqual(config.base?.empty, false)
    XCTAssertEqual(try DatabaseChecksum.compute(db), before)
    let audited = try AuditedDatabase.open(node: root + "/node")
    _ = try audited.write { try $0.execute("UPDATE t SET w = 6 WHERE id = 1") }
    audited.close()
    let record = try XCTUnwrap(try TrailVerification.verify(NodeLayout(root: root + "/node").mat).records.first)
    guard case .change(let change) = try DecodedTransaction(record).items.first else { return XCTFail("no change") }
    XCTAssertEqual(change.old?.first { $0.0 == "w" }?.1, .integer(5), "before image of a pre-existing row")
  }

  func testChecksumIgnoresPhysicalLayoutButNotContent() throws {
    let root = try temporaryDirectory(self)
    func make(_ name: String, order: [Int]) throws -> Connection {
      let db = try Connection(path: "\(root)/\(name).sqlite", mode: .readWriteCreate)
      try db.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v REAL, b BLOB)")
      for i in order {
        try db.query("INSERT INTO t VALUES (?, ?, ?)", [.text("k\(i)"), .real(Double(i) / 3), .blob([UInt8(i)])])
      }
      return db
    }
    let a = try make("a", order: Array(0..<200))
    let b = try make("b", order: Array((0..<200).reversed()))
    try b.execute("DELETE FROM t WHERE k = 'k5'; INSERT INTO t VALUES ('k5', 5.0/3, x'05'); VACUUM")
    XCTAssertEqual(try DatabaseChecksum.compute(a), try DatabaseChecksum.compute(b))
    // Same value, another type (the BLOB column has no affinity to convert it): not equal.
    try a.execute("UPDATE t SET b = 1 WHERE k = 'k3'")
    try b.execute("UPDATE t SET b = 1.0 WHERE k = 'k3'")
    XCTAssertNotEqual(try DatabaseChecksum.compute(a).tables["t"], try DatabaseChecksum.compute(b).tables["t"])
  }

  func testAnEmptyFileLeftByACrashedRollOverIsWhereWritingContinues() throws {
    let n = try TestNode(self, trailFileSize: 4096)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let last = try XCTUnwrap(try n.write("INSERT INTO t VALUES (1, 'x')"))
    // A roll-over that created the next file and died before writing into it.
    let seed = try TrailVerification.verify(n.layout.mat).records.last!.crc
    _ = try TrailWriter.create(
      directory: n.layout.mat, nodeID: try n.layout.loadConfig().nodeId, generation: Generation(1),
      sno: last.end.sno + 1, chainSeed: seed, fileSize: 4096)
    let next = try XCTUnwrap(try n.write("INSERT INTO t VALUES (2, 'y')"))
    XCTAssertEqual(next.position, MATPosition(sno: last.end.sno + 1, rba: 64))
    XCTAssertEqual(try n.trail().records.count, 3)
    XCTAssertEqual(try n.replayChecksum(), try n.checksum())
  }

  func testABadRecordBeforeAHoleInTheTrailIsNotCutAsATornTail() throws {
    let n = try TestNode(self, trailFileSize: 4096)
    try n.write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in 0..<60 {
      try n.write("INSERT INTO t VALUES (?, ?)", [.integer(Int64(i)), .text(String(repeating: "x", count: 200))])
    }
    let snos = try n.layout.mat.snos()
    XCTAssertGreaterThanOrEqual(snos.count, 3)
    try FileManager.default.removeItem(atPath: n.layout.mat.filePath(sno: snos[1]))
    XCTAssertThrowsError(try n.trail(), containing: ["AA0000000\(snos[1])", "hole"])
    // The primary itself reads only from its last commit on, past the hole, so it opens;
    // whoever needs the history (a rebuild, a backup) is refused, naming the file.
    XCTAssertNoThrow(try n.open().close())
    XCTAssertThrowsError(try n.replayChecksum(), containing: ["AA0000000\(snos[1])"])
    // And a damaged record before the hole is never cut as if it were a torn tail.
    let firstFile = n.layout.mat.filePath(sno: snos[0])
    let handle = try FileHandle(path: firstFile, flags: O_RDWR)
    try handle.write([0xFF], at: 64 + 40)
    XCTAssertThrowsError(
      try TrailTail.cut(directory: n.layout.mat, at: MATPosition(sno: snos[0], rba: 64)),
      containing: ["later trail file exists"])
  }
}
