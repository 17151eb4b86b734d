// Replication under faults, with real processes on 127.0.0.1: SIGKILL of the writer,
// the primary daemon and the backup daemon at random moments (seeded), a link cut
// mid-stream by a proxy, and hostile peers on both ends of the link.

import AuditTrail
import Foundation
import Link
import Node
import SQLiteSupport
import TestSupport
import XCTest

final class ReplicationFaultTests: XCTestCase {
  /// Where the database's directory cannot be watched, the extractor polls for commits.
  func testTheExtractorPollsForCommitsWhereItCannotWatchTheDatabase() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let (primary, backup) = try pair.startDaemons(primaryEnvironment: ["UNDERSTUDY_FAILPOINT": "no-inotify:1"])
    // Each commit comes after a quiet spell (no acks in flight to wake the extractor), so
    // only a poll finds it.
    for i in 1...5 {
      usleep(300_000)
      try pair.sql("INSERT INTO t VALUES (\(i), 'row \(i)')")
      // A poll every 2 ms finds it at once; without one it waits for the backup to give up
      // on the silent link (5 s) and reconnect.
      try pair.waitForBackup(timeout: 2)
    }
    try pair.assertSameContent()
    try backup.stop()
    try primary.stop()
  }

  /// A committed record the MAT no longer holds (its bytes zeroed after the commit) is
  /// never shipped: the extractor sends what comes before it, then after two seconds of
  /// the same damage logs 700 naming the file and position, and refuses the link.
  func testAMATThatEndsBeforeTheCommittedEndIsRefusedNotShipped() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    var (primary, backup) = try pair.startDaemons()
    try backup.stop()
    var commits: [(position: String, end: String)] = []
    for i in 1...3 {
      let outcome = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (\(i), 'row')"])
      XCTAssertEqual(outcome.status, 0, outcome.stderr)
      commits.append(
        (try XCTUnwrap(positionText(outcome.json, "position")), try XCTUnwrap(positionText(outcome.json, "end"))))
    }
    // Zero the last record, as a damaged disk might lose it: the database says it is committed.
    let last = try MATPosition(parsing: commits[2].position)
    let lastEnd = try MATPosition(parsing: commits[2].end)
    let file = TrailDirectory(path: pair.primary + "/mat").filePath(sno: last.sno)
    let handle = try AuditTrail.FileHandle(path: file, flags: O_RDWR)
    try handle.write([UInt8](repeating: 0, count: Int(lastEnd.rba - last.rba)), at: Int(last.rba))
    try handle.syncData()

    backup = try Daemon(node: pair.backup)
    XCTAssertTrue(
      try eventually(20) { events(pair.primary).contains { $0["code"] as? Int == 700 } },
      "no 700 on the primary: \(events(pair.primary))")
    let logged = try XCTUnwrap(events(pair.primary).first { $0["code"] as? Int == 700 }?["message"] as? String)
    XCTAssertTrue(logged.contains(file), logged)
    XCTAssertTrue(logged.contains(commits[2].position), logged)
    XCTAssertTrue(logged.contains("the trail ends here"), logged)
    XCTAssertTrue(
      try eventually(10) {
        events(pair.backup).contains {
          $0["code"] as? Int == 9012 && ($0["message"] as? String)?.contains("MAT is damaged") == true
        }
      }, "the backup was not told why: \(events(pair.backup))")
    // The two records before the damage arrived; the damaged one did not.
    let status = try understudy(["status", "--node", pair.backup, "--json"])
    XCTAssertEqual(positionText(status.json, "applied"), commits[2].position, status.stdout)
    XCTAssertTrue(backup.isRunning, "the backup daemon keeps retrying")
    XCTAssertTrue(primary.isRunning, "the primary daemon keeps serving")
    try backup.stop()
    try primary.stop()
  }

  /// When a batch's joined apply fails (here by a switch, after it changed the rows), the
  /// batch is rolled back and applied one transaction at a time, and 9032 says why.
  func testAFailedJoinedApplyIsRolledBackAndAppliedOneByOne() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)", "INSERT INTO t VALUES (1, 0)")
    var (primary, backup) = try pair.startDaemons()
    try backup.stop()
    // With the backup stopped the increments pile up, and arrive as batches.
    let increments = try understudy(
      ["sql", "--node", pair.primary, "--each-line"],
      stdin: Array(repeating: "UPDATE t SET n = n + 1 WHERE id = 1", count: 50).joined(separator: "\n"))
    XCTAssertEqual(increments.status, 0, increments.stderr)
    backup = try Daemon(node: pair.backup, environment: ["UNDERSTUDY_FAILPOINT": "joined-apply-fails:1"])
    try pair.waitForBackup()
    try pair.assertSameContent("each increment applied once")
    let logged = events(pair.backup).filter { $0["code"] as? Int == 9032 }
    XCTAssertFalse(logged.isEmpty, "no 9032: \(events(pair.backup))")
    XCTAssertTrue(
      (logged.first?["message"] as? String)?.contains("failpoint joined-apply-fails") == true, "\(logged)")
    try backup.stop()
    try primary.stop()
  }

  /// Adversarial (adversarial-2): the same with an ALTER TABLE ADD COLUMN in the middle
  /// of the batch. The joined attempt's tracker re-read t's shape after the DDL (3
  /// columns); rolled back to before the DDL, the one-by-one apply meets t's rows with 2
  /// columns against the cached shape. Also checks the kept checksum (verify).
  func testAFailedJoinedApplyAcrossAnAddColumnIsAppliedOneByOne() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)", "INSERT INTO t VALUES (1, 0)")
    var (primary, backup) = try pair.startDaemons()
    try backup.stop()
    let lines =
      Array(repeating: "UPDATE t SET n = n + 1 WHERE id = 1", count: 10)
      + ["ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd'"]
      + Array(repeating: "UPDATE t SET n = n + 1, c = c || 'x' WHERE id = 1", count: 10)
    let increments = try understudy(
      ["sql", "--node", pair.primary, "--each-line"], stdin: lines.joined(separator: "\n"))
    XCTAssertEqual(increments.status, 0, increments.stderr)
    backup = try Daemon(node: pair.backup, environment: ["UNDERSTUDY_FAILPOINT": "joined-apply-fails:1"])
    try pair.waitForBackup()
    try pair.assertSameContent("each increment applied once")
    try backup.stop()
    let verify = try understudy(["verify", "--node", pair.backup])
    XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    try primary.stop()
  }

  /// Adversarial (adversarial-2): odd SQL applied by the updater in joined batches
  /// (the backup stopped while it is written): no false divergence, kept == full on
  /// both, and the two full scans equal.
  func testOddSQLInJoinedBatchesKeepsTheChecksumOnBothNodes() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE base(id INTEGER PRIMARY KEY)")
    var (primary, backup) = try pair.startDaemons()
    try backup.stop()
    let lines = [
      "CREATE TABLE w(k TEXT PRIMARY KEY, u INTEGER UNIQUE, v) WITHOUT ROWID",
      "INSERT INTO w VALUES ('a', 1, 'x'), ('b', 2, 'y'), ('c', 3, 'z')",
      "INSERT OR REPLACE INTO w VALUES ('a', 10, 'x2')",
      "REPLACE INTO w VALUES ('d', 2, 'takes u from b')",
      "REPLACE INTO w VALUES ('c', 10, 'takes k c and u from a')",
      "CREATE TABLE f(id INTEGER PRIMARY KEY AUTOINCREMENT, r REAL, d DOUBLE, n NUMERIC, u, s TEXT UNIQUE)",
      "INSERT INTO f(r, d, n, u, s) VALUES (1, 2, 4.0, 5.0, '6')",
      "INSERT INTO f(r, d, n, u, s) VALUES (-0.0, -0.0, -0.0, -0.0, '-0')",
      "INSERT INTO f(r, d, n, u, s) VALUES (9007199254740993, 140737488355328, 1e308, 1e-320, 'big')",
      "UPDATE f SET u = u * 1.0, n = n + 0.0",
      "UPDATE f SET r = r",
      "REPLACE INTO f(r, s) VALUES (7, '6')",
      "UPDATE sqlite_sequence SET seq = seq + 10",
      "INSERT INTO f(r, s) VALUES (8, 'after seq')",
      "INSERT INTO f(id, r, s) VALUES (3, 1, 'x') ON CONFLICT(id) DO UPDATE SET r = excluded.r + 0.5",
      "CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
      "CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) ON DELETE CASCADE ON UPDATE CASCADE)",
      "INSERT INTO p VALUES (1, 'one'), (2, 'two'); INSERT INTO c VALUES (1, 1), (2, 1), (3, 2)",
      "PRAGMA foreign_keys = ON; UPDATE p SET id = 11 WHERE id = 1",
      "PRAGMA foreign_keys = ON; DELETE FROM p WHERE id = 11",
      "CREATE TRIGGER tr AFTER INSERT ON base BEGIN INSERT OR REPLACE INTO w VALUES ('t' || new.id, 100 + new.id, new.id); END",
      "INSERT INTO base VALUES (1), (2), (3)",
      "DELETE FROM w WHERE k = 't2'; INSERT INTO w VALUES ('t2', 102, 'again')",
      "UPDATE w SET v = v",
      "INSERT INTO w VALUES ('e', 20, 'e'); DELETE FROM w WHERE k = 'e'",
    ]
    let written = try understudy(["sql", "--node", pair.primary, "--each-line"], stdin: lines.joined(separator: "\n"))
    XCTAssertEqual(written.status, 0, written.stderr)
    backup = try Daemon(node: pair.backup)
    try pair.waitForBackup()
    try pair.assertSameContent("the odd SQL")
    try backup.stop()
    try primary.stop()
    for node in [pair.primary, pair.backup] {
      let verify = try understudy(["verify", "--node", node])
      XCTAssertEqual(verify.status, 0, "\(node): \(verify.stdout) \(verify.stderr)")
    }
    XCTAssertFalse(events(pair.backup).contains { $0["code"] as? Int == 9087 }, "no divergence stop")
  }

  func testSIGKILLOfWriterPrimaryDaemonAndBackupDaemonLosesNothingAndAppliesNothingTwice() throws {
    let seed = testSeed("replication kills")
    var rng = SeededGenerator(seed: seed)
    let pair = try Pair(self, trailFileSize: 16384)
    try pair.sql("CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE scratch(id INTEGER PRIMARY KEY)")
    var primary = try Daemon(node: pair.primary)
    var backup = try Daemon(node: pair.backup)
    var workload = Workload()
    var acknowledged: [Int: Int] = [:]
    var victims =
      Array(repeating: "writer", count: 10) + Array(repeating: "primary daemon", count: 10)
      + Array(repeating: "backup daemon", count: 10)
    victims.shuffle(using: &rng)
    for (round, victim) in victims.enumerated() {
      let child = try Child(node: pair.primary, failpoint: nil)
      let lines = (0..<Int.random(in: 100...500, using: &rng)).map { _ in workload.next(&rng) }
      child.feed(lines.map(\.sql))
      usleep(UInt32.random(in: 10_000...200_000, using: &rng))
      switch victim {
      case "primary daemon":
        primary.kill()
        usleep(UInt32.random(in: 0...100_000, using: &rng))
        primary = try Daemon(node: pair.primary)
      case "backup daemon":
        backup.kill()
        usleep(UInt32.random(in: 0...100_000, using: &rng))
        backup = try Daemon(node: pair.backup)
      default: break
      }
      usleep(UInt32.random(in: 0...100_000, using: &rng))
      for ack in child.kill() {
        if let id = lines[ack.line - 1].insertedID { acknowledged[id] = ack.txid }
      }
      _ = round
    }
    let context = "seed \(seed)"
    // A writer's open replays what a killed writer left in the MAT; then the backup must hold it all.
    try pair.sql("INSERT INTO scratch VALUES (-1)")
    try pair.waitForBackup(timeout: 120)
    try pair.assertSameContent(context)
    // A primary killed between announcing a file and sending its records left the image
    // trail synced to that file's start; the updater called that corruption and stopped
    // (821) until the next backup restart, in every run.
    let stops = events(pair.backup).filter { $0["code"] as? Int == 821 }.map { $0["message"] ?? "" }
    XCTAssertEqual(stops.count, 0, "\(context): \(stops)")
    let backupDB = try Connection(path: pair.backupDB, mode: .readOnly)
    let present = Set(
      try backupDB.query("SELECT id FROM items").compactMap { row -> Int? in
        if case .integer(let v) = row[0] { return Int(v) }
        return nil
      })
    XCTAssertEqual(acknowledged.keys.filter { !present.contains($0) }.sorted(), [], context)
    let status = try XCTUnwrap(try understudy(["status", "--node", pair.backup, "--json"]).json as? [String: Any])
    XCTAssertTrue(status["updaterStopped"] is NSNull, "\(context): \(status)")
    let primaryStatus = try XCTUnwrap(
      try understudy(["status", "--node", pair.primary, "--json"]).json as? [String: Any])
    XCTAssertEqual(status["lastTxid"] as? Int, primaryStatus["lastTxid"] as? Int, context)
    print(
      "replication kills (\(context)): 30 rounds, \(acknowledged.count) acknowledged inserts, primary at transaction \(primaryStatus["lastTxid"] ?? "?")"
    )
    XCTAssertGreaterThan(acknowledged.count, 100)
    try backup.stop()
    try primary.stop()
  }

  func testARecordWhoseWriterDiedBeforeItsCommitStillReachesTheBackup() throws {
    // The extractor ships what the database has committed; a record synced to the MAT
    // whose writer was killed before SQLite's COMMIT is synced and shipped after a grace.
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'committed')")
    let (primary, backup) = try pair.startDaemons()
    let killed = try understudy(
      ["sql", "--node", pair.primary, "INSERT INTO t VALUES (2, 'in the MAT only')"],
      environment: ["UNDERSTUDY_FAILPOINT": "after-trail-sync:1"])
    XCTAssertNotEqual(killed.status, 0, "the writer was killed")
    let missing = try understudy(["query", "--node", pair.primary, "SELECT count(*) FROM t WHERE id = 2"])
    XCTAssertTrue(missing.stdout.hasSuffix("0\n"), "not committed on the primary: \(missing.stdout)")
    XCTAssertTrue(
      try eventually(10) {
        try understudy(["query", "--node", pair.backup, "SELECT v FROM t WHERE id = 2"]).stdout.contains(
          "in the MAT only")
      }, "the backup applied the record the primary's database has not committed yet")
    // The next writer replays it (invariant 1) and both sides agree.
    try pair.sql("INSERT INTO t VALUES (3, 'after')")
    try pair.waitForBackup()
    try pair.assertSameContent()
    try backup.stop()
    try primary.stop()
  }

  func testALinkCutMidStreamIsResumedFromTheImageTrailsEnd() throws {
    let seed = testSeed("dropped link")
    var rng = SeededGenerator(seed: seed)
    let proxyPort = freePort()
    let pair = try Pair(self, trailFileSize: 16384, backupConnectsTo: proxyPort)
    let proxy = try Proxy(listen: proxyPort, target: pair.port)
    try pair.sql("CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE scratch(id INTEGER PRIMARY KEY)")
    let primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    var workload = Workload()
    let child = try Child(node: pair.primary, failpoint: nil)
    child.feed((0..<3000).map { _ in workload.next(&rng).sql }, close: true)
    var cuts = 0
    for _ in 0..<12 {
      usleep(UInt32.random(in: 50_000...300_000, using: &rng))
      cuts += proxy.cutAll()
    }
    XCTAssertTrue(child.waitForExit(seconds: 120))
    _ = child.kill()
    try pair.waitForBackup(timeout: 60)
    try pair.assertSameContent("seed \(seed), \(cuts) connections cut")
    XCTAssertGreaterThan(cuts, 3)
    XCTAssertGreaterThan(events(pair.backup).filter { $0["code"] as? Int == 9010 }.count, 3)
    try backup.stop()
    try primary.stop()
  }

  func testAHostileClientIsRefusedAndThePrimaryKeepsServing() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", "INSERT INTO t VALUES (1, randomblob(100))")
    let primary = try Daemon(node: pair.primary)
    XCTAssertTrue(eventually(5) { events(pair.primary).contains { $0["code"] as? Int == 9001 } })
    let address = try HostPort(parsing: "127.0.0.1:\(pair.port)")
    var hello = ByteWriterForTests()
    hello.u16(1)
    hello.string("default")
    hello.raw([UInt8](repeating: 7, count: 16))
    hello.u64(1)
    hello.raw([UInt8](repeating: 1, count: 32))
    let helloFrame = Frame(.hello, hello.bytes).encoded()
    var badCRC = helloFrame
    badCRC[5] ^= 0xFF
    var oversized = helloFrame
    oversized.replaceSubrange(0..<4, with: [0xF0, 0xFF, 0xFF, 0x7F])
    var unknownType = helloFrame
    unknownType[8] = 200
    let attacks: [(String, [UInt8])] = [
      ("garbage", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
      ("bad checksum", badCRC),
      ("oversized frame", oversized),
      ("unknown frame type", unknownType),
      ("truncated frame", Array(helloFrame.prefix(20))),
      ("truncated payload", Frame(.hello, Array(hello.bytes.prefix(10))).encoded()),
      ("hello then a forged proof", helloFrame + Frame(.auth, [UInt8](repeating: 0, count: 32)).encoded()),
      ("records before any handshake", Frame(.records, [UInt8](repeating: 0, count: 64)).encoded()),
    ]
    // Each attack twice: in clear (refused by TLS), and inside a TLS connection (what
    // anyone can open: the frames are judged as before).
    for (name, bytes) in attacks {
      for secured in [false, true] {
        let socket = try Socket.connect(to: address, timeout: 2)
        if secured { try socket.secure(.tls, server: false, deadline: Clock.monotonicSeconds() + 5) }
        try socket.send(bytes)
        if name.hasPrefix("truncated") { socket.shutdown() }
        // The primary answers with a refusal or closes; it never hangs the test for long.
        _ = try? Link.Connection(socket: socket, maxPayload: 1 << 20).receive(timeout: 12)
        XCTAssertTrue(primary.isRunning, "the primary died after: \(name)")
      }
    }
    // Each refusal is logged by the connection's own thread once it has closed: wait for
    // them (counting at once failed about one run in five under load).
    let bad = { events(pair.primary).filter { [9012, 9013].contains($0["code"] as? Int ?? 0) } }
    XCTAssertTrue(eventually(10) { bad().count >= 2 * attacks.count - 4 }, "\(bad())")
    XCTAssertTrue(bad().contains { ($0["message"] as? String ?? "").contains("TLS") }, "\(bad())")
    // Its trail is intact and a real backup still gets everything.
    XCTAssertEqual(try understudy(["trail", "dump", "--node", pair.primary, "--json"]).status, 0)
    let backup = try Daemon(node: pair.backup)
    try pair.sql("INSERT INTO t VALUES (2, randomblob(10))")
    try pair.waitForBackup()
    try pair.assertSameContent()
    try backup.stop()
    try primary.stop()
  }

  func testAHostilePrimaryCannotHarmTheImageTrail() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    var primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    try pair.sql("INSERT INTO t VALUES (2, 'two')")
    try pair.waitForBackup()
    try primary.stop()
    let before = try imageBytes(pair.backup)
    let checksumBefore = try pair.checksum(pair.backup)

    // A peer that holds the key (the worst case) and sends bad streams.
    let identity = try pair.primaryIdentity()
    let mat = NodeLayout(root: pair.primary).mat
    var listener: Listener? = try Listener(address: try HostPort(parsing: "127.0.0.1:\(pair.port)"))
    let lies: [(String, (MATPosition, UInt32?) throws -> [UInt8])] = [
      (
        "a record with a bad checksum",
        { from, _ in
          var record = Record(type: .commit, txid: TransactionID(99), commitMicros: 1, payload: [1, 2, 3], prevCRC: 0)
            .encoded()
          record[20] ^= 1
          return Message.records(position: from, bytes: record).frame.encoded()
        }
      ),
      (
        "a record that breaks the chain",
        { from, _ in
          let record = Record(type: .commit, txid: TransactionID(99), commitMicros: 1, payload: [], prevCRC: 12345)
            .encoded()
          return Message.records(position: from, bytes: record).frame.encoded()
        }
      ),
      (
        "records past a gap",
        { from, crc in
          let record = Record(type: .commit, txid: TransactionID(99), commitMicros: 1, payload: [], prevCRC: crc ?? 0)
            .encoded()
          return Message.records(position: MATPosition(sno: from.sno, rba: from.rba + 64), bytes: record).frame
            .encoded()
        }
      ),
      ("an oversized frame", { _, _ in [0xF0, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 7] }),
      (
        "a frame with a bad frame checksum",
        { from, _ in
          var frame = Message.heartbeat(trailEnd: from, newestCommitMicros: 0, sentMicros: 0).frame.encoded()
          frame[4] ^= 1
          return frame
        }
      ),
    ]
    for (name, lie) in lies {
      let socket = try XCTUnwrap(try listener!.accept(timeout: 15), "the backup did not reconnect before: \(name)")
      let link = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      _ = try Handshake.accept(link, as: identity)
      guard case .start(let from, let crc) = try link.receive(timeout: 5) else { return XCTFail("no start") }
      let (header, size) = try mat.headerAndSize(sno: from.sno)
      try link.send(.fileStart(header: header, size: UInt64(size)))
      try socket.send(try lie(from, crc))
      // The backup hangs up (after, perhaps, an ack of where it stands: it acks its
      // applied position once per link, for a switchover that waits on it).
      XCTAssertThrowsError(
        try {
          while case .ack = try link.receive(timeout: 10) {}
        }(), name)
      XCTAssertTrue(backup.isRunning, "the backup died after: \(name)")
    }
    XCTAssertEqual(try imageBytes(pair.backup), before, "the image trail changed")
    XCTAssertEqual(try pair.checksum(pair.backup), checksumBefore)
    XCTAssertGreaterThanOrEqual(events(pair.backup).filter { $0["code"] as? Int == 9013 }.count, lies.count - 1)

    // The real primary again: replication continues where it was.
    listener = nil  // frees the port
    primary = try Daemon(node: pair.primary)
    try pair.sql("INSERT INTO t VALUES (3, 'three')")
    try pair.waitForBackup()
    try pair.assertSameContent()
    try backup.stop()
    try primary.stop()
  }

  private func imageBytes(_ node: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: node + "/image") where name.hasPrefix("AA") {
      out[name] = FileManager.default.contents(atPath: node + "/image/" + name)
    }
    return out
  }
}

/// Payload bytes built by hand, for frames a real peer would never send.
struct ByteWriterForTests {
  var bytes: [UInt8] = []
  mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
  mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
  mutating func raw(_ v: [UInt8]) { bytes += v }
  mutating func string(_ s: String) {
    u16(UInt16(s.utf8.count))
    bytes += Array(s.utf8)
  }
}

/// A TCP proxy on 127.0.0.1 whose connections can be cut at will.
final class Proxy: @unchecked Sendable {
  private let listener: Listener
  private let lock = NSLock()
  private var open: [Socket] = []
  private var running = true

  init(listen: Int, target: Int) throws {
    listener = try Listener(address: try HostPort(parsing: "127.0.0.1:\(listen)"))
    Thread { [self] in
      while isRunning {
        guard let client = try? listener.accept(timeout: 0.1) else { continue }
        guard let server = try? Socket.connect(to: try! HostPort(parsing: "127.0.0.1:\(target)"), timeout: 2) else {
          client.shutdown()
          continue
        }
        lock.lock()
        open += [client, server]
        lock.unlock()
        for (from, to) in [(client, server), (server, client)] {
          Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
              let n = buffer.withUnsafeMutableBytes { recv(from.fd, $0.baseAddress, $0.count, 0) }
              guard n > 0, (try? to.send(Array(buffer[0..<n]))) != nil else { break }
            }
            from.shutdown()
            to.shutdown()
          }.start()
        }
      }
    }.start()
  }

  private var isRunning: Bool {
    lock.lock()
    defer { lock.unlock() }
    return running
  }

  /// Cuts every open connection; returns how many pairs were cut.
  func cutAll() -> Int {
    lock.lock()
    let sockets = open
    open = []
    lock.unlock()
    for s in sockets { s.shutdown() }
    return sockets.count / 2
  }

  deinit {
    lock.lock()
    running = false
    lock.unlock()
  }
}
