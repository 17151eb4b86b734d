// `updater stop --at TIME | --at-marker NAME` and `updater start` against real daemons:
// the backup's database ends exactly at the point while a writer keeps committing and
// the receiver keeps receiving; a point already passed is refused; a SIGKILLed daemon
// comes back stopped at the same place; `updater start` catches up to the primary.

import AuditTrail
import Foundation
import Node
import SQLiteSupport
import TestSupport
import XCTest

final class UpdaterStopTests: XCTestCase {
  func testStopAtTimeWhileAWriterCommitsEndsExactlyThere() throws {
    let pair = try Pair(self, trailFileSize: 16384)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    // Held to the end: a Daemon dropped is SIGKILLed.
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    let writer = try Writer(node: pair.primary)

    // A time a little ahead, while commits go on: the updater stops right before the
    // first record stamped after it, whichever batch that falls in.
    let ahead = Clock.nowMicros() + 700_000
    let first = try understudy(["updater", "stop", "--node", pair.backup, "--at", unixSeconds(ahead)])
    XCTAssertEqual(first.status, 0, first.stderr)
    XCTAssertTrue(first.stdout.contains("honours the stop"), first.stdout)
    try waitUntilReached(pair)
    try assertStandsExactly(at: ahead, pair)

    // Now an exact commit time from the backlog the receiver goes on filling: a later
    // point replaces the stop, and the updater moves on to exactly that commit.
    let backlog = try imageRecords(pair.backup, from: try applied(pair).end)
    let commits = backlog.filter { $0.record.type == .commit }
    XCTAssertGreaterThan(commits.count, 10, "the receiver received no backlog while the updater held")
    let target = commits[commits.count / 2]
    let second = try understudy([
      "updater", "stop", "--node", pair.backup, "--at", unixSeconds(target.record.commitMicros), "--json",
    ])
    XCTAssertEqual(second.status, 0, second.stderr)
    try assertConforms(second.json, to: "updater-stop.schema.json")
    XCTAssertEqual((second.json as? [String: Any])?["acknowledged"] as? Bool, true, second.stdout)
    try waitUntilReached(pair, beyond: commits[0].position)
    let state = try assertStandsExactly(at: target.record.commitMicros, pair)
    // The writer commits one transaction at a time, so no other commit shares its stamp.
    XCTAssertEqual(state.lastTxid, Int64(target.record.txid.rawValue))
    XCTAssertEqual(state.end, target.end)

    // The receiver goes on meanwhile: acknowledged grows beyond applied, applied stays.
    let before = try status(pair.backup)
    XCTAssertTrue(
      try eventually(10) {
        let now = try status(pair.backup)
        return positionText(now, "acked") != positionText(before, "acked")
          && positionText(now, "applied") == positionText(before, "applied")
      }, "the receiver did not go on while the updater was stopped")
    XCTAssertGreaterThan(((try status(pair.backup))["backlog"] as? [String: Any])?["records"] as? Int ?? 0, 0)
    try assertConforms(try status(pair.backup), to: "status.schema.json")
    try assertConforms(try stateFile(pair.backup, "backup-runtime.json"), to: "state-backup-runtime.schema.json")
    XCTAssertEqual(try applied(pair), state, "the updater moved while stopped")

    XCTAssertEqual(writer.finish(), 0)
    let start = try understudy(["updater", "start", "--node", pair.backup, "--json"])
    XCTAssertEqual(start.status, 0, start.stderr)
    try assertConforms(start.json, to: "updater-stop.schema.json")
    XCTAssertEqual((start.json as? [String: Any])?["removed"] as? Bool, true, start.stdout)
    try pair.waitForBackup()
    try pair.assertSameContent("after updater start")
    XCTAssertTrue((try status(pair.backup))["updaterStop"] is NSNull)
    let codes = events(pair.backup).compactMap { $0["code"] as? Int }
    for code in [9096, 9097, 9098] { XCTAssertTrue(codes.contains(code), "event \(code) missing: \(codes)") }
    for event in events(pair.backup) { try assertConforms(event, to: "event.schema.json") }
  }

  func testStopAtMarkerEndsRightBeforeIt() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    // Set before the marker exists: the next marker of that name from here.
    let stop = try understudy(["updater", "stop", "--node", pair.backup, "--at-marker", "before batch", "--json"])
    XCTAssertEqual(stop.status, 0, stop.stderr)
    try assertConforms(stop.json, to: "updater-stop.schema.json")
    let a = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (1, 'a')"])
    XCTAssertEqual(a.status, 0, a.stderr)
    // Another marker's name does not stop it.
    XCTAssertEqual(try understudy(["rtmark", "--node", pair.primary, "other"]).status, 0)
    let b = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (2, 'b')"])
    let marker = try understudy(["rtmark", "--node", pair.primary, "before batch", "--json"])
    XCTAssertEqual(marker.status, 0, marker.stderr)
    let c = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (3, 'c')"])
    XCTAssertEqual(c.status, 0, c.stderr)
    try waitUntilReached(pair)

    let state = try applied(pair)
    XCTAssertEqual(state.end.description, positionText(marker.json, "position"), "not stopped right before the marker")
    XCTAssertEqual(state.lastTxid, (b.json as? [String: Any])?["txid"] as? Int64 ?? -1)
    XCTAssertEqual(state.rows, 2)
    XCTAssertEqual(positionText(try status(pair.backup), "acked"), try pair.primaryEnd())
    let text = try understudy(["status", "--node", pair.backup])
    XCTAssertTrue(text.stdout.contains("stop point  marker 'before batch' (reached"), text.stdout)

    XCTAssertEqual(try understudy(["updater", "start", "--node", pair.backup]).status, 0)
    try pair.waitForBackup()
    try pair.assertSameContent("after updater start")
    XCTAssertEqual(try applied(pair).rows, 3)
  }

  func testAPointAlreadyPassedIsRefused() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    let a = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (1, 'a')"])
    try pair.sql("INSERT INTO t VALUES (2, 'b')")
    try pair.waitForBackup()
    let micros = try commitMicros(pair.primary, at: try XCTUnwrap(positionText(a.json, "position")))
    let end = try pair.primaryEnd()

    let refused = try understudy(["updater", "stop", "--node", pair.backup, "--at", unixSeconds(micros)])
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("already passed"), refused.stderr)
    XCTAssertTrue(refused.stderr.contains("applied up to \(end)"), refused.stderr)
    XCTAssertTrue(refused.stderr.contains("scrt_ra -F"), refused.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backup + "/state/updater-stop.json"))
    let json = try understudy(["updater", "stop", "--node", pair.backup, "--at", unixSeconds(micros - 1), "--json"])
    XCTAssertEqual(json.status, 1)
    try assertConforms(json.json, to: "error.schema.json")
    // The time of the last transaction applied is not passed: it stops right there.
    let last = try commitMicros(pair.primary, at: try XCTUnwrap(applied(pair).last?.description))
    let exact = try understudy(["updater", "stop", "--node", pair.backup, "--at", RestoreTimeText.utc(last)])
    XCTAssertEqual(exact.status, 0, exact.stderr)
    try pair.sql("INSERT INTO t VALUES (3, 'c')")
    try waitUntilReached(pair)
    XCTAssertEqual(try applied(pair).end.description, end)
    // A stop file that cannot be read holds the updater (it cannot guess the point) and
    // is named; `updater start` removes it and the updater applies on.
    let stopFile = pair.backup + "/state/updater-stop.json"
    try Data("{\"id\":".utf8).write(to: URL(fileURLWithPath: stopFile))
    XCTAssertTrue(try eventually(10) { events(pair.backup).contains { $0["code"] as? Int == 9099 } })
    usleep(500_000)
    XCTAssertEqual(try applied(pair).rows, 2, "applied on past a stop file it could not read")
    let broken = try understudy(["status", "--node", pair.backup])
    XCTAssertEqual(broken.status, 1)
    XCTAssertTrue(broken.stderr.contains(stopFile), broken.stderr)
    XCTAssertEqual(try understudy(["updater", "start", "--node", pair.backup]).status, 0)
    try pair.waitForBackup()
    XCTAssertEqual(try applied(pair).rows, 3)
    // Bad input names what is wrong.
    let bad = try understudy(["updater", "stop", "--node", pair.backup, "--at", "yesterday"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("cannot read the time 'yesterday'"), bad.stderr)
    let primary = try understudy(["updater", "stop", "--node", pair.primary, "--at-marker", "m"])
    XCTAssertEqual(primary.status, 1)
    XCTAssertTrue(primary.stderr.contains("needs a backup node"), primary.stderr)
  }

  func testAKilledDaemonComesBackStoppedAtTheSamePoint() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    var backup = daemons.backup
    let a = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO t VALUES (1, 'a')"])
    try pair.waitForBackup()
    let point = try commitMicros(pair.primary, at: try XCTUnwrap(positionText(a.json, "position")))
    XCTAssertEqual(try understudy(["updater", "stop", "--node", pair.backup, "--at", unixSeconds(point)]).status, 0)
    try pair.sql("INSERT INTO t VALUES (2, 'b')")
    try pair.sql("INSERT INTO t VALUES (3, 'c')")
    try waitUntilReached(pair)
    let held = try applied(pair)
    XCTAssertEqual(held.rows, 1)

    backup.kill()
    try pair.sql("INSERT INTO t VALUES (4, 'd')")
    // Without a daemon the stop is only written; it says when it takes effect.
    let offline = try understudy(["updater", "stop", "--node", pair.backup, "--at", unixSeconds(point)])
    XCTAssertEqual(offline.status, 0, offline.stderr)
    XCTAssertTrue(offline.stdout.contains("no daemon runs"), offline.stdout)
    backup = try Daemon(node: pair.backup)
    defer { withExtendedLifetime(backup) {} }
    try waitUntilReached(pair)
    XCTAssertTrue(
      try eventually(20) { positionText(try status(pair.backup), "acked") == (try pair.primaryEnd()) },
      "the restarted receiver did not receive the rest")
    XCTAssertEqual(try applied(pair), held, "the restarted updater did not stop at the same point")

    XCTAssertEqual(try understudy(["updater", "start", "--node", pair.backup]).status, 0)
    try pair.waitForBackup()
    try pair.assertSameContent("after updater start")
  }

  func testTakeoverAppliesPastTheStopPoint() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    let daemons = try pair.startDaemons()
    defer { withExtendedLifetime(daemons) {} }
    XCTAssertEqual(try understudy(["updater", "stop", "--node", pair.backup, "--at-marker", "m"]).status, 0)
    try pair.sql("INSERT INTO t VALUES (1, 'a')")
    XCTAssertEqual(try understudy(["rtmark", "--node", pair.primary, "m"]).status, 0)
    try pair.sql("INSERT INTO t VALUES (2, 'b')")
    try waitUntilReached(pair)
    XCTAssertEqual(try applied(pair).rows, 1)
    // The primary is lost: a takeover applies everything the backup received, as RDF's does.
    let end = try pair.primaryEnd()
    try daemons.primary.stop()
    let takeover = try understudy(["takeover", "--node", pair.backup, "--json"])
    XCTAssertEqual(takeover.status, 0, takeover.stderr)
    let state = try applied(pair)
    XCTAssertEqual(state.rows, 2)
    XCTAssertEqual(state.lastTxid, 3)
    XCTAssertEqual(positionText(takeover.json, "safe"), end)
  }

  // MARK: helpers

  /// The backup database's own position and rows.
  struct Applied: Equatable {
    var lastTxid: Int64
    var last: MATPosition?
    var end: MATPosition
    var rows: Int64
  }

  func applied(_ pair: Pair) throws -> Applied {
    let db = try Connection(path: pair.backupDB, mode: .readOnly)
    try db.execute("BEGIN")
    defer { try? db.execute("COMMIT") }
    let row = try XCTUnwrap(
      try db.query("SELECT last_txid, last_sno, last_rba, end_sno, end_rba FROM understudy_state").first)
    func int(_ i: Int) -> Int64? { if case .integer(let v) = row[i] { v } else { nil } }
    let rows = try XCTUnwrap(try db.scalarInt("SELECT count(*) FROM t"))
    // Rows go in as 1, 2, 3…: more rows than the largest id, or a gap, would be a row from later.
    XCTAssertEqual(try db.scalarInt("SELECT coalesce(max(id), 0) FROM t"), rows)
    return Applied(
      lastTxid: int(0) ?? -1,
      last: int(1).map { MATPosition(sno: UInt32($0), rba: UInt64(int(2)!)) },
      end: MATPosition(sno: UInt32(int(3)!), rba: UInt64(int(4)!)), rows: rows)
  }

  /// Checks the backup holds every record stamped at or before `micros` and none after:
  /// its last record is stamped at or before, the next one in the image trail after.
  @discardableResult
  func assertStandsExactly(at micros: Int64, _ pair: Pair, line: UInt = #line) throws -> Applied {
    let state = try applied(pair)
    let last = try XCTUnwrap(state.last)
    let records = try imageRecords(pair.backup, from: last)
    XCTAssertGreaterThanOrEqual(records.count, 2, "nothing after the applied end", line: line)
    XCTAssertEqual(records[0].end, state.end, line: line)
    XCTAssertLessThanOrEqual(records[0].record.commitMicros, micros, "applied a record stamped after", line: line)
    XCTAssertGreaterThan(records[1].record.commitMicros, micros, "stopped before a record it should apply", line: line)
    // One row per transaction after the CREATE TABLE (txid 1): the rows end with it too.
    XCTAssertEqual(state.rows, state.lastTxid - 1, line: line)
    return state
  }

  func waitUntilReached(_ pair: Pair, beyond: MATPosition? = nil, line: UInt = #line) throws {
    let reached = try eventually(20) {
      let s = try status(pair.backup)
      guard ((s["updaterStop"] as? [String: Any])?["reached"] as? Bool) == true else { return false }
      guard let beyond else { return true }
      return try applied(pair).end > beyond
    }
    let now = try status(pair.backup)
    XCTAssertTrue(reached, "the updater did not reach its stop point: \(now)", line: line)
  }

  func status(_ node: String) throws -> [String: Any] {
    let outcome = try understudy(["status", "--node", node, "--json"])
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
    return try XCTUnwrap(outcome.json as? [String: Any], outcome.stdout)
  }

  /// Every whole record of the backup's image trail from `position` on.
  func imageRecords(_ node: String, from position: MATPosition) throws -> [PositionedRecord] {
    try TrailReader(directory: NodeLayout(root: node).image, from: position).readAll().records
  }

  /// The commit time of the primary's record at `position`, from `trail dump`.
  func commitMicros(_ primary: String, at position: String) throws -> Int64 {
    let dump = try understudy(["trail", "dump", "--node", primary, "--from", position, "--json"])
    XCTAssertEqual(dump.status, 0, dump.stderr)
    let records = try XCTUnwrap((dump.json as? [String: Any])?["records"] as? [[String: Any]])
    return try XCTUnwrap(records.first?["commitMicros"] as? Int64, dump.stdout)
  }

  func unixSeconds(_ micros: Int64) -> String { String(format: "%lld.%06lld", micros / 1_000_000, micros % 1_000_000) }
}

/// `YYYY-MM-DD HH:MM:SS.ffffffZ`, the form `RestoreTime.parse` reads back exactly.
enum RestoreTimeText {
  static func utc(_ micros: Int64) -> String {
    var seconds = time_t(micros / 1_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return String(
      format: "%04d-%02d-%02d %02d:%02d:%02d.%06lldZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
      parts.tm_hour, parts.tm_min, parts.tm_sec, micros % 1_000_000)
  }
}

/// `understudy sql --each-line` fed INSERTs of ids 1, 2, 3… on a thread of its own,
/// one transaction each, until `finish`, which ends its input and waits for it.
final class Writer: @unchecked Sendable {
  private let process: Process
  private let input = Pipe()
  private let lock = NSLock()
  private var stopping = false
  private let done = DispatchSemaphore(value: 0)

  init(node: String) throws {
    process = understudyExecutable.process(["sql", "--node", node, "--each-line"])
    process.standardInput = input
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    signal(SIGPIPE, SIG_IGN)
    Thread { [self] in
      var id = 1
      while !isStopping {
        guard
          (try? input.fileHandleForWriting.write(contentsOf: Data("INSERT INTO t VALUES (\(id), 'row')\n".utf8)))
            != nil
        else { break }
        id += 1
        usleep(2000)
      }
      try? input.fileHandleForWriting.close()
      done.signal()
    }.start()
  }

  private var isStopping: Bool {
    lock.lock()
    defer { lock.unlock() }
    return stopping
  }

  /// Ends the input and waits for the writer; its exit status.
  func finish() -> Int32 {
    lock.lock()
    stopping = true
    lock.unlock()
    done.wait()
    process.waitUntilExit()
    return process.terminationStatus
  }

  deinit { if process.isRunning { process.terminate() } }
}
