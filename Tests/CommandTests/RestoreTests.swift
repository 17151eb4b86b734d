// Snapshots, virtual and failover restores of a replica (`scrt_ra`), event markers
// (`rtmark`), with real daemons on loopback. Each restored database is compared with an
// independent oracle: a fresh database replayed from the primary's MAT up to the same
// position (`Replay.rebuild(upTo:)`), never with the restore's own idea of itself.

import Apply
import AuditTrail
import Foundation
import Node
import Procedures
import SQLiteSupport
import TestSupport
import XCTest

final class RestoreTests: XCTestCase {
  /// `understudy scrt_ra --node NODE ARGS --json`.
  @discardableResult
  func scrt(_ node: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
    try understudy(["scrt_ra", "--node", node] + arguments + ["--json"], environment: environment)
  }

  /// The checksum (a full scan) of a fresh replay of `primary`'s MAT up to `position`.
  func oracle(_ primary: String, upTo position: MATPosition) throws -> String {
    let path = try temporaryDirectory(self, "oracle-\(UUID().uuidString)") + "/oracle.db"
    let (_, end) = try Replay.rebuild(trail: NodeLayout(root: primary).mat, into: path, upTo: position)
    XCTAssertEqual(end, position, "the primary's MAT reaches \(position)")
    return try DatabaseChecksum.compute(databaseAt: path).checksum
  }

  /// A snapshot's JSON, checked against its schema, its database scanned in full: the
  /// kept checksum it reports must be what it holds.
  func snapshot(_ outcome: Outcome, file: StaticString = #filePath, line: UInt = #line) throws -> (
    position: MATPosition, checksum: String, json: [String: Any]
  ) {
    XCTAssertEqual(outcome.status, 0, outcome.stderr, file: file, line: line)
    try assertConforms(outcome.json, to: "scrt_ra-snapshot.schema.json", file: file, line: line)
    let json = try XCTUnwrap(outcome.json as? [String: Any], file: file, line: line)
    let position = try MATPosition(parsing: try XCTUnwrap(positionText(json, "position"), file: file, line: line))
    let path = try XCTUnwrap(json["path"] as? String, file: file, line: line)
    let full = try DatabaseChecksum.compute(databaseAt: path).checksum
    XCTAssertEqual(
      json["checksum"] as? String, full, "the snapshot's kept checksum is a full scan's", file: file, line: line)
    return (position, full, json)
  }

  /// The records of the backup's image trail, oldest first, up to what it applied.
  func imageRecords(_ backup: String) throws -> [PositionedRecord] {
    let image = NodeLayout(root: backup).image
    let window = try XCTUnwrap(try scrt(backup, ["-l"]).json as? [String: Any])
    let oldest = try MATPosition(parsing: try XCTUnwrap(positionText(window["oldest"], "position")))
    let newest = try MATPosition(parsing: try XCTUnwrap(positionText(window["newest"], "position")))
    let reader = try TrailReader(directory: image, from: oldest)
    var records: [PositionedRecord] = []
    while case .record(let r) = try reader.next(), r.position < newest { records.append(r) }
    return records
  }

  func release(_ node: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let released = try scrt(node, ["-W"])
    XCTAssertEqual(released.status, 0, released.stderr, file: file, line: line)
    try assertConforms(released.json, to: "scrt_ra-release.schema.json", file: file, line: line)
    XCTAssertFalse(FileManager.default.fileExists(atPath: node + "/snapshot"), file: file, line: line)
  }

  /// -X, -t, -S (a marker and unix seconds) and -D (a commit exactly at the time), taken
  /// while a writer keeps committing on the primary, each equal to the oracle at the
  /// position it reports, and that position the one the target defines.
  func testSnapshotsAndVirtualRestoresEqualAFreshReplayWhileWritesContinue() throws {
    let pair = try Pair(self, retention: 3600, primaryOptions: ["--mat-retention", "3600"])
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    for i in 1...20 { try pair.sql("INSERT INTO t VALUES (\(i), 'row \(i)')") }
    let marker = try understudy(["rtmark", "--node", pair.primary, "before the batch job", "--json"])
    XCTAssertEqual(marker.status, 0, marker.stderr)
    try assertConforms(marker.json, to: "rtmark.schema.json")
    let markerAt = try MATPosition(parsing: try XCTUnwrap(positionText(marker.json, "position")))
    // The application restarts, as it does, with its schema script: a restore to before it works.
    try pair.sql("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    for i in 1...10 { try pair.sql("UPDATE t SET v = 'batch \(i)' WHERE id % 10 = \(i % 10)") }
    // Big rows, so the trail (64 KiB files here) rolls over to further files.
    for i in 1...15 { try pair.sql("INSERT INTO t VALUES (\(500 + i), hex(randomblob(3000)))") }

    let writer = try LineFeeder(["sql", "--node", pair.primary, "--each-line", "--json"])
    writer.feed(lines: 2000, every: 0.004) { "INSERT INTO t VALUES (\(1000 + $0), 'streamed \($0)')" }
    usleep(500_000)

    // -X while the updater applies.
    let current = try snapshot(try scrt(pair.backup, ["-X"]))
    XCTAssertEqual((current.json["target"] as? String), "current")
    try assertConforms(
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: pair.backup + "/snapshot/snapshot.json"))),
      to: "state-snapshot.schema.json")
    XCTAssertEqual(current.checksum, try oracle(pair.primary, upTo: current.position))
    let held = try scrt(pair.backup, ["-X"])
    XCTAssertNotEqual(held.status, 0, "a second snapshot while one is held")
    XCTAssertTrue(held.stderr.contains("scrt_ra -W"), held.stderr)
    try release(pair.backup)

    // The marker: every transaction before it, none after.
    let atMarker = try snapshot(try scrt(pair.backup, ["-S", "before the batch job"]))
    XCTAssertEqual(atMarker.position, markerAt)
    XCTAssertEqual(atMarker.checksum, try oracle(pair.primary, upTo: markerAt))
    XCTAssertGreaterThanOrEqual(atMarker.json["undone"] as? Int ?? 0, 10)
    let rows = try Connection(path: try XCTUnwrap(atMarker.json["path"] as? String), mode: .readOnly).scalarInt(
      "SELECT count(*) FROM t WHERE v LIKE 'batch%' OR v LIKE 'streamed%'")
    XCTAssertEqual(rows, 0, "nothing from after the marker")
    try release(pair.backup)

    // A position: a commit record in the middle of the window.
    let records = try imageRecords(pair.backup).filter { $0.record.type == .commit }
    XCTAssertGreaterThan(records.count, 30)
    let middle = records[records.count / 2].position
    let atPosition = try snapshot(try scrt(pair.backup, ["-t", middle.description]))
    XCTAssertEqual(atPosition.position, middle)
    XCTAssertEqual(atPosition.checksum, try oracle(pair.primary, upTo: middle))
    try release(pair.backup)

    // At a file's first record, and at the end of the file before it (one point, two names):
    // the record before is found, so the snapshot knows its time.
    let all = try imageRecords(pair.backup)
    if let i = all.indices.dropFirst().first(where: { all[$0].position.rba == 64 }) {
      let first = try snapshot(try scrt(pair.backup, ["-t", all[i].position.description]))
      XCTAssertEqual(first.checksum, try oracle(pair.primary, upTo: all[i].position))
      XCTAssertEqual(first.json["micros"] as? Int, Int(all[i - 1].record.commitMicros))
      try release(pair.backup)
      let end = try snapshot(try scrt(pair.backup, ["-t", all[i - 1].end.description]))
      XCTAssertEqual(end.checksum, first.checksum)
      XCTAssertEqual(end.position, all[i - 1].end)
      try release(pair.backup)
    } else {
      XCTFail("the image trail rolled over no file (\(all.count) records)")
    }

    // A time exactly a commit's: that commit is in, the next one (later in time) is out.
    let k = records.count / 3
    let exact = records[k].record.commitMicros
    let next = try XCTUnwrap(records[(k + 1)...].first { $0.record.commitMicros > exact })
    let atTime = try snapshot(try scrt(pair.backup, ["-D", RestoreTime.text(exact)]))
    XCTAssertEqual(atTime.position, next.position, "cut at the first commit after the time")
    XCTAssertEqual(atTime.checksum, try oracle(pair.primary, upTo: next.position))
    XCTAssertEqual(atTime.json["micros"] as? Int, Int(exact), "it holds the commit made exactly at the time")
    try release(pair.backup)
    // The same time as unix seconds (-S), and in another zone's words (-D with an offset).
    let seconds = String(format: "%lld.%06lld", exact / 1_000_000, exact % 1_000_000)
    XCTAssertEqual(try snapshot(try scrt(pair.backup, ["-S", seconds])).position, next.position)
    try release(pair.backup)
    let inZone = RestoreTime.text(exact + 7_200_000_000).dropLast() + "+02:00"  // the wall clock two hours east
    XCTAssertEqual(try RestoreTime.parse(String(inZone)), exact)
    XCTAssertEqual(try snapshot(try scrt(pair.backup, ["-D", String(inZone)])).position, next.position)
    try release(pair.backup)

    // And the replica went on applying throughout: it ends equal to the primary.
    let written = writer.finish()
    XCTAssertEqual(written.status, 0, written.stderr)
    try pair.waitForBackup()
    try pair.assertSameContent("after the snapshots")
  }

  /// Restore to T1, release, restore to an earlier T2, release: the replica's own file is
  /// byte for byte what it was, and it then goes on applying and ends equal.
  func testTheRestoreLoopLeavesTheReplicaByteForByteCurrent() throws {
    let pair = try Pair(self, retention: 3600, primaryOptions: ["--mat-retention", "3600"])
    let (primaryDaemon, backup) = try pair.startDaemons()
    defer { withExtendedLifetime(primaryDaemon) {} }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    for i in 1...40 {
      try pair.sql("INSERT INTO t VALUES (\(i), 'row \(i)')", "UPDATE t SET v = 'x' WHERE id = \(i / 2)")
    }
    try pair.waitForBackup()
    try backup.stop()
    func fingerprint() throws -> [String: Data] {
      var files: [String: Data] = [:]
      for name in ["backup.db", "backup.db-wal"] where FileManager.default.fileExists(atPath: pair.root + "/" + name) {
        let data = try Data(contentsOf: URL(fileURLWithPath: pair.root + "/" + name))
        if !data.isEmpty { files[name] = data }  // a reader may leave an empty WAL: it holds nothing
      }
      return files
    }
    let before = try fingerprint()
    let records = try imageRecords(pair.backup).filter { $0.record.type == .commit }
    guard records.count > 20 else { return XCTFail("the image trail holds \(records.count) commits") }
    let (t1, t2) = (records[records.count - 5].position, records[records.count / 4].position)
    // The last one lies before the CREATE TABLE: its DDL is undone too.
    for target in [t1, t2, records[0].position] {
      let restored = try snapshot(try scrt(pair.backup, ["-t", target.description]))
      XCTAssertEqual(restored.checksum, try oracle(pair.primary, upTo: target))
      // Writes to the snapshot stay in it.
      let path = try XCTUnwrap(restored.json["path"] as? String)
      try Connection(path: path).execute(
        "CREATE TABLE written_by_the_application(x); INSERT INTO written_by_the_application VALUES (1)")
      try release(pair.backup)
    }
    XCTAssertEqual(try fingerprint(), before, "the replica's files are untouched by the restores")
    let restarted = try Daemon(node: pair.backup)
    try pair.sql("INSERT INTO t VALUES (1000, 'after the restores')")
    try pair.waitForBackup()
    try pair.assertSameContent("the replica goes on")
    try restarted.stop()
  }

  /// Every target outside the window, and every misuse, is refused with a message that
  /// names the valid range, a non-zero exit, and no snapshot left behind.
  func testRefusedTargetsNameTheValidRangeAndLeaveNoSnapshot() throws {
    let pair = try Pair(self, retention: 3600, primaryOptions: ["--mat-retention", "3600"])
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    for i in 1...10 { try pair.sql("INSERT INTO t VALUES (\(i), 'before the backup')") }
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    for i in 11...30 { try pair.sql("INSERT INTO t VALUES (\(i), 'row')") }
    try pair.waitForBackup()
    let list = try scrt(pair.backup, ["-l"])
    XCTAssertEqual(list.status, 0, list.stderr)
    try assertConforms(list.json, to: "scrt_ra-list.schema.json")
    let window = try XCTUnwrap(list.json as? [String: Any])
    let oldest = try MATPosition(parsing: try XCTUnwrap(positionText(window["oldest"], "position")))
    let newest = try MATPosition(parsing: try XCTUnwrap(positionText(window["newest"], "position")))
    XCTAssertGreaterThan(oldest, MATPosition(sno: 1, rba: 64), "the window starts at the initial copy, not before")
    let records = try imageRecords(pair.backup)
    let inside = try XCTUnwrap(records.dropFirst(3).first).position

    let refusals: [([String], String)] = [
      (["-t", "1:64"], "before the oldest record"),
      (["-t", MATPosition(sno: inside.sno, rba: inside.rba + 8).description], "not where a record starts"),
      (["-t", MATPosition(sno: newest.sno + 1, rba: 64).description], "past what the replica has applied"),
      (["-D", "2001-01-01 00:00:00"], "before the oldest transaction"),
      (["-D", "2099-01-01 00:00:00Z"], "in the future"),
      (["-S", "no such marker"], "no marker 'no such marker'"),
      (["-S", "946684800"], "before the oldest transaction"),  // 2000-01-01 as unix seconds
    ]
    for (arguments, says) in refusals {
      let outcome = try scrt(pair.backup, arguments)
      XCTAssertNotEqual(outcome.status, 0, "\(arguments) refused")
      XCTAssertTrue(outcome.stderr.contains(says), "\(arguments): \(outcome.stderr)")
      XCTAssertTrue(outcome.stderr.contains("valid range is MAT positions \(oldest) to \(newest)"), outcome.stderr)
      try assertConforms(outcome.json, to: "error.schema.json")
      XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backup + "/snapshot"), "\(arguments) left a snapshot")
    }
    let misuse: [([String], String)] = [
      (["-D", "yesterday"], "cannot read the time"),
      (["-D", "2026-02-30 10:00:00"], "cannot read the time"),
      (["-F", "-t", inside.description], "add -q to confirm"),
      (["-W"], "holds no snapshot"),
      (["-X", "-l"], "give one of"),
    ]
    for (arguments, says) in misuse {
      let outcome = try scrt(pair.backup, arguments)
      XCTAssertNotEqual(outcome.status, 0, "\(arguments) refused")
      XCTAssertTrue(outcome.stderr.contains(says), "\(arguments): \(outcome.stderr)")
    }
    let onPrimary = try scrt(pair.primary, ["-X"])
    XCTAssertNotEqual(onPrimary.status, 0)
    XCTAssertTrue(onPrimary.stderr.contains("recovery server"), onPrimary.stderr)
    let badMarker = try understudy(["rtmark", "--node", pair.primary, "12345"])
    XCTAssertNotEqual(badMarker.status, 0)
    XCTAssertTrue(badMarker.stderr.contains("all digits"), badMarker.stderr)
    let markOnBackup = try understudy(["rtmark", "--node", pair.backup, "m"])
    XCTAssertNotEqual(markOnBackup.status, 0, "a marker goes into a primary's MAT only")
    XCTAssertEqual(try understudy(["checksum", "--node", pair.backup]).status, 0)
  }

  /// A target behind DDL that cannot be undone (a DROP) is refused by a virtual and a
  /// failover restore alike, with no advice to set the replica aside; the failover
  /// restore changes nothing, holds nothing, and the replica goes on replicating.
  func testARestoreThatCannotUndoChangesAndHoldsNothing() throws {
    let pair = try Pair(self, retention: 3600, primaryOptions: ["--mat-retention", "3600"])
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)", "CREATE TABLE gone(x)")
    let marked = try understudy(["rtmark", "--node", pair.primary, "before the drop", "--json"])
    XCTAssertEqual(marked.status, 0, marked.stderr)
    try pair.sql("INSERT INTO t VALUES (1, 'a')")
    try pair.sql("DROP TABLE gone")
    try pair.waitForBackup()
    let before = try DatabaseChecksum.compute(databaseAt: pair.backupDB).checksum
    for arguments in [["-S", "before the drop"], ["-F", "-S", "before the drop", "-q"]] {
      let refused = try scrt(pair.backup, arguments)
      XCTAssertNotEqual(refused.status, 0, "\(arguments)")
      XCTAssertTrue(refused.stderr.contains("DROP TABLE gone"), refused.stderr)
      XCTAssertTrue(refused.stderr.contains("choose a later point"), refused.stderr)
      XCTAssertFalse(refused.stderr.contains("follow --full-copy"), refused.stderr)
      try assertConforms(refused.json, to: "error.schema.json")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backup + "/state/receive-hold.json"))
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backup + "/state/failover-restore.json"))
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backup + "/snapshot"))
    XCTAssertEqual(try DatabaseChecksum.compute(databaseAt: pair.backupDB).checksum, before)
    // The restore stopped the daemon; started again, it replicates.
    let restarted = try Daemon(node: pair.backup)
    try pair.sql("INSERT INTO t VALUES (2, 'after')")
    try pair.waitForBackup()
    try pair.assertSameContent("replicating again")
    try restarted.stop()
  }

  /// A failover restore SIGKILLed after each of its steps, and at a random moment
  /// (seeded), finishes when run again; the replica equals the oracle at the target,
  /// holds (a restarted daemon neither receives nor applies past it while the primary
  /// writes on) and the report lists every undone transaction.
  func testAFailoverRestoreKilledAtEveryStepFinishesWhenRunAgain() throws {
    let seed = testSeed("failover restore kill")
    var random = SeededGenerator(seed: seed)
    let pair = try Pair(self, retention: 3600, primaryOptions: ["--mat-retention", "3600"])
    let (primaryDaemon, backup) = try pair.startDaemons()
    defer { withExtendedLifetime(primaryDaemon) {} }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    var markers: [MATPosition] = []
    for m in 1...4 {
      for i in 1...15 { try pair.sql("INSERT INTO t VALUES (\(m * 100 + i), 'row')") }
      let marked = try understudy(["rtmark", "--node", pair.primary, "m\(m)", "--json"])
      markers.append(try MATPosition(parsing: try XCTUnwrap(positionText(marked.json, "position"), marked.stderr)))
      try pair.sql("UPDATE t SET v = 'damaged \(m)' WHERE id > \(m * 100)")
    }
    try pair.waitForBackup()
    // The primary writes on; the backup daemon is stopped by the restore.
    for (step, marker) in zip(1...3, markers.reversed()) {
      let name = "m\(markers.firstIndex(of: marker)! + 1)"
      let killed = try scrt(
        pair.backup, ["-F", "-S", name, "-q"], environment: ["UNDERSTUDY_FAILPOINT": "failover-restore-step:\(step)"])
      XCTAssertNotEqual(killed.status, 0, "killed after step \(step)")
      try assertConforms(try stateFile(pair.backup, "failover-restore.json"), to: "state-failover-restore.schema.json")
      try assertConforms(try stateFile(pair.backup, "receive-hold.json"), to: "state-receive-hold.schema.json")
      // A takeover now would apply what the restore is undoing: refused until it finishes.
      let takeover = try understudy(["takeover", "--node", pair.backup, "--force"])
      XCTAssertNotEqual(takeover.status, 0, "takeover behind an unfinished failover restore")
      XCTAssertTrue(takeover.stderr.contains("failover restore decided and not finished"), takeover.stderr)
      XCTAssertEqual(try understudy(["checksum", "--node", pair.backup]).status, 0)
      let again = try scrt(pair.backup, ["-F", "-S", name, "-q"])
      XCTAssertEqual(again.status, 0, again.stderr)
      try assertConforms(again.json, to: "scrt_ra-failover-restore.schema.json")
      try assertConforms(try stateFile(pair.backup, "failover-restore.json"), to: "state-failover-restore.schema.json")
      XCTAssertEqual(positionText(again.json, "restoredTo"), marker.description)
      XCTAssertEqual(
        try DatabaseChecksum.compute(databaseAt: pair.backupDB).checksum, try oracle(pair.primary, upTo: marker))
      let report = try XCTUnwrap((again.json as? [String: Any])?["report"] as? String)
      let lines = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n")
      XCTAssertEqual(lines.count, (again.json as? [String: Any])?["undone"] as? Int)
      XCTAssertGreaterThan(lines.count, 0)
      try pair.sql("INSERT INTO t VALUES (\(9000 + step), 'primary writes on')")
    }
    // A kill at a random moment of a restore to the first marker.
    let delay = Double.random(in: 0.0...0.3, using: &random)
    let process = try understudyExecutable.start(["scrt_ra", "--node", pair.backup, "-F", "-S", "m1", "-q"])
    usleep(UInt32(delay * 1e6))
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let last = try scrt(pair.backup, ["-F", "-S", "m1", "-q"])
    XCTAssertEqual(last.status, 0, "seed \(seed): \(last.stderr)")
    XCTAssertEqual(
      try DatabaseChecksum.compute(databaseAt: pair.backupDB).checksum, try oracle(pair.primary, upTo: markers[0]))
    // Held: a daemon started now applies and receives nothing, though the primary wrote on.
    _ = backup
    let restarted = try Daemon(node: pair.backup)
    XCTAssertTrue(try eventually(10) { events(pair.backup).contains { $0["code"] as? Int == 9095 } })
    usleep(1_000_000)
    let status = try understudy(["status", "--node", pair.backup, "--json"])
    XCTAssertEqual(positionText(status.json, "applied"), markers[0].description, status.stdout)
    XCTAssertEqual(
      try DatabaseChecksum.compute(databaseAt: pair.backupDB).checksum, try oracle(pair.primary, upTo: markers[0]))
    try restarted.stop()
    // What was set aside is kept, not applied.
    let setAside = try FileManager.default.contentsOfDirectory(atPath: pair.backup + "/setaside")
    XCTAssertEqual(setAside.count, 4, "\(setAside)")
  }
}

final class RestoreCycleTests: XCTestCase {
  /// The MIMIX procedure around a damaged replica: a marker before a bad batch job on
  /// production, the damage replicated; on the recovery server a virtual restore to the
  /// marker to check it, then a failover restore to it, failover (888 at the marker),
  /// resync (production recovered to the same point, the damage listed) and failback: both
  /// servers end equal and free of the damage, and the points before the failback are
  /// refused with the new window.
  func testFailoverRestoreThenFailoverResyncAndFailbackEndEqual() throws {
    let pair = try MIMIXPair(self, rows: 20)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    let marked = try prod.command("rtmark", ["-C", "1", "before batch", "--json"])
    XCTAssertEqual(marked.status, 0, marked.stderr)
    let marker = try XCTUnwrap(positionText(marked.json, "position"))
    for i in 1...8 {
      try understudy(["sql", "--node", prod.node, "UPDATE t SET v = 'ransom \(i)' WHERE id % 4 = \(i % 4)"])
    }
    try pair.waitForReplica()
    XCTAssertGreaterThan(try dr.count("t WHERE v LIKE 'ransom%'"), 0, "the damage reached the replica")

    // Check the point first, on a snapshot, then roll the replica itself back to it.
    let virtual = try dr.command("scrt_ra", ["-C", "1", "-S", "before batch", "--json"])
    XCTAssertEqual(virtual.status, 0, virtual.stderr)
    let path = try XCTUnwrap((virtual.json as? [String: Any])?["path"] as? String)
    XCTAssertEqual(
      try Connection(path: path, mode: .readOnly).scalarInt("SELECT count(*) FROM t WHERE v LIKE 'ransom%'"), 0)
    XCTAssertEqual(try dr.command("scrt_ra", ["-C", "1", "-W"]).status, 0)
    prod.killDaemon()  // production is lost (or taken off the network)
    let unconfirmed = try dr.command("scrt_ra", ["-C", "1", "-F", "-S", "before batch"])
    XCTAssertNotEqual(unconfirmed.status, 0, "a failover restore needs -q")
    let restored = try dr.command("scrt_ra", ["-C", "1", "-F", "-S", "before batch", "-q", "--json"])
    XCTAssertEqual(restored.status, 0, restored.stderr)
    try assertConforms(restored.json, to: "scrt_ra-failover-restore.schema.json")
    XCTAssertEqual(positionText(restored.json, "restoredTo"), marker)
    XCTAssertEqual(try dr.count("t WHERE v LIKE 'ransom%'"), 0)

    let failover = try dr.rtdr(["-q", "--json", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    let takeover = try XCTUnwrap(
      ((failover.json as? [String: Any])?["details"] as? [String: Any])?["takeover"] as? [String: Any])
    let recovery = try XCTUnwrap(takeover["fileRecovery"] as? [String: Any])
    XCTAssertEqual(
      "\(recovery["sno"] as? Int ?? 0):\(recovery["rba"] as? Int ?? 0)", marker, "888 at the restored point")
    XCTAssertEqual(takeover["applied"] as? Int, 0, "the takeover applies none of what was set aside")

    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    let details = try XCTUnwrap((resync.json as? [String: Any])?["details"] as? [String: Any])
    XCTAssertEqual(details["fullCopy"] as? Bool, false, "\(details)")
    XCTAssertEqual(positionText(details, "to"), marker)
    XCTAssertEqual(try dr.rtdr(["-q", "resync"]).status, 0)
    XCTAssertEqual(try prod.count("t WHERE v LIKE 'ransom%'"), 0, "production recovered to the same point")
    XCTAssertEqual(try prod.checksum(), try dr.checksum())

    XCTAssertEqual(try dr.rtdr(["-q", "failback"]).status, 0)
    XCTAssertEqual(try prod.rtdr(["-q", "failback"]).status, 0)
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (1000, 'after failback')"])
    try pair.waitForReplica()
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
    // Before the failback is out of every window: the marker, and its position.
    let gone = try dr.command("scrt_ra", ["-C", "1", "-S", "before batch"])
    XCTAssertNotEqual(gone.status, 0)
    XCTAssertTrue(gone.stderr.contains("before the last failover or failback are gone"), gone.stderr)
    let old = try dr.command("scrt_ra", ["-C", "1", "-t", marker])
    XCTAssertNotEqual(old.status, 0)
    XCTAssertTrue(old.stderr.contains("valid range"), old.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dr.node + "/snapshot"))
  }
}

final class RestoreTimeTests: XCTestCase {
  func testTimesParseInBothFormsAndRefuseWhatNoInstantIs() throws {
    let utc = TimeZone(identifier: "UTC")!
    let micros = try RestoreTime.parse("2026-12-01 10:00:00.25Z")
    XCTAssertEqual(micros, 1_796_119_200_250_000)
    XCTAssertEqual(try RestoreTime.parse("12/01/26 10:00:00.250000", zone: utc), micros)
    XCTAssertEqual(try RestoreTime.parse("2026-12-01 11:00:00.25+01:00"), micros)
    XCTAssertEqual(try RestoreTime.parse(RestoreTime.text(micros)), micros)
    XCTAssertEqual(RestoreTime.parse(unixSeconds: "1796119200.25"), micros)
    let newYork = TimeZone(identifier: "America/New_York")!
    XCTAssertEqual(try RestoreTime.parse("2026-12-01 05:00:00.25", zone: newYork), micros)
    for text in ["2026-11-01 01:30:00", "2026-03-08 02:30:00"] {  // repeated, skipped
      XCTAssertThrowsError(try RestoreTime.parse(text, zone: newYork), text) {
        XCTAssertTrue("\($0)".contains("DST"), "\($0)")
      }
    }
    for text in ["2026-02-29 00:00:00", "2026-13-01 00:00:00", "yesterday", "2026-12-01", "2026-12-01 10:00:60"] {
      XCTAssertThrowsError(try RestoreTime.parse(text, zone: utc), text)
    }
    XCTAssertNil(RestoreTime.parse(unixSeconds: "99999999999999999999"))
  }
}
