// The write path under faults a tired operator or a hostile environment brings: a writer
// left open through a switchover, a disk that fills under it. Whatever happens, every
// acknowledged transaction is kept, nothing the primary does not keep reaches a backup,
// and `sql --each-line` stops at its first failing line.

import AuditTrail
import Foundation
import Link
import Node
import TestSupport
import XCTest

final class WritePathFaultTests: XCTestCase {
  /// Issue 12, item 1: a writer streaming through a switchover kept committing on the
  /// demoted node. Its acknowledged lines must all be on the new primary, none may commit
  /// on the old one after the hand-over, and the run stops at its first refused line.
  func testAWriterStreamingThroughASwitchoverStopsAtItsFirstRefusal() throws {
    let pair = try Pair(self, backupListens: true)
    let daemons = try pair.startDaemons()
    defer {
      try? daemons.primary.stop()
      try? daemons.backup.stop()
    }
    try pair.sql("CREATE TABLE sw(id INTEGER PRIMARY KEY)")
    try pair.waitForBackup()

    let writer = try LineFeeder(["sql", "--node", pair.primary, "--each-line", "--json"])
    writer.feed(lines: 3000, every: 0.002) { "INSERT INTO sw VALUES (\($0))" }
    usleep(800_000)
    let over = try understudy(["switchover", "--node", pair.primary, "--timeout", "30", "--json"])
    XCTAssertEqual(over.status, 0, over.stderr)
    let output = writer.finish()

    // Acknowledgements are a prefix 1…k, then at most one error, then nothing.
    var acknowledged = 0
    var errors = 0
    for line in output.stdout.split(separator: "\n") {
      let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      if object["error"] != nil {
        errors += 1
        continue
      }
      guard errors == 0, object["line"] as? Int == acknowledged + 1 else {
        XCTFail("after \(acknowledged) acknowledgements and \(errors) errors: \(line)")
        break
      }
      acknowledged += 1
    }
    XCTAssertGreaterThan(acknowledged, 10, "the writer committed before the switchover")
    XCTAssertLessThan(acknowledged, 3000, "the writer was stopped by the switchover")
    XCTAssertEqual(errors, 1, output.stdout.suffix(500) + output.stderr)
    XCTAssertNotEqual(output.status, 0)

    // The new primary holds exactly the acknowledged rows; the demoted node follows it.
    XCTAssertTrue(try eventually(20) { try role(pair.backup) == "primary" && role(pair.primary) == "backup" })
    let count = try understudy(["query", "--node", pair.backup, "--json", "SELECT count(*) AS n, max(id) AS m FROM sw"])
    let row = try XCTUnwrap(((count.json as? [String: Any])?["rows"] as? [[Int]])?.first, count.stdout + count.stderr)
    XCTAssertEqual(row, [acknowledged, acknowledged], "the new primary holds exactly the acknowledged rows")
    let write = try understudy(["sql", "--node", pair.backup, "--json", "INSERT INTO sw VALUES (100000)"])
    XCTAssertEqual(write.status, 0, write.stderr)
    let end = try XCTUnwrap(positionText(write.json, "end"))
    let waited = try understudy(["wait", "--node", pair.primary, "--applied", end, "--timeout", "30"])
    XCTAssertEqual(waited.status, 0, waited.stderr)
    XCTAssertEqual(try pair.checksum(pair.primary), try pair.checksum(pair.backup), "the demoted node diverged")
  }

  /// A line refused before its statement ran (here: a write block, set and lifted while
  /// the writer streams) stops the run like a failing statement: the lines after it would
  /// otherwise commit once the block is gone, behind the error the caller was shown.
  func testEachLineStopsAtALineRefusedBeforeItRan() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/p"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", root + "/p.db"]).status, 0)
    XCTAssertEqual(try understudy(["sql", "--node", node, "CREATE TABLE t(id INTEGER PRIMARY KEY)"]).status, 0)
    let writer = try LineFeeder(["sql", "--node", node, "--each-line", "--json"])
    writer.feed(lines: 1500, every: 0.002) { "INSERT INTO t VALUES (\($0))" }
    usleep(500_000)
    let block = node + "/state/writes-blocked"
    XCTAssertTrue(FileManager.default.createFile(atPath: block, contents: Data("test block\n".utf8)))
    usleep(300_000)
    unlink(block)
    let output = writer.finish()
    XCTAssertNotEqual(output.status, 0)
    let objects = output.jsonLines.compactMap { $0 as? [String: Any] }
    let acknowledged = objects.compactMap { $0["line"] as? Int }
    let error = try XCTUnwrap(objects.last?["error"] as? String, output.stdout.suffix(300) + output.stderr)
    XCTAssertTrue(error.contains("test block"), error)
    // "line N: …": the failing line comes right after the acknowledged ones, and is the last.
    let failing = Int(error.dropFirst(5).prefix { $0.isNumber })
    XCTAssertEqual(acknowledged, Array(1..<(failing ?? 1)), "acknowledged lines are not 1…\(failing ?? 0) - 1")
    let count = try understudy(["query", "--node", node, "--json", "SELECT count(*) FROM t"])
    XCTAssertEqual(((count.json as? [String: Any])?["rows"] as? [[Int]])?.first, [acknowledged.count])
  }

  /// Issue 12, items 2, 3 and 14: the primary's database on a small filesystem that
  /// fills (its node and MAT elsewhere). The transaction whose COMMIT fails is committed
  /// all the same (durable in the MAT): `sql` says so and exits 0; the next is refused
  /// with the path named and nothing durable; the backup holds exactly what the primary
  /// keeps; and once there is space again, the next write takes the rest in by itself.
  func testADatabaseDiskThatFillsLosesNothingAndResumesWhenThereIsSpace() throws {
    let disk = try SmallDisk(self, megabytes: 6)
    let pair = try Pair(self, primaryDatabase: disk.path + "/primary.db")
    let daemons = try pair.startDaemons()
    defer {
      try? daemons.primary.stop()
      try? daemons.backup.stop()
    }
    try pair.sql("CREATE TABLE d(id INTEGER PRIMARY KEY, b BLOB)")
    // Paced, so that groups stay small and the disk fills in the middle of the run.
    let writer = try LineFeeder(["sql", "--node", pair.primary, "--each-line", "--json"])
    writer.feed(lines: 200, every: 0.005) { "INSERT INTO d VALUES (\($0), randomblob(100000))" }
    let run = writer.finish()
    XCTAssertEqual(run.status, 1, run.stderr)
    let objects = run.jsonLines.compactMap { $0 as? [String: Any] }
    let acknowledged = objects.compactMap { $0["line"] as? Int }
    XCTAssertEqual(acknowledged, Array(1..<(acknowledged.count + 1)), String(run.stdout.suffix(400)))
    XCTAssertGreaterThan(acknowledged.count, 0, run.stdout + run.stderr)
    XCTAssertLessThan(acknowledged.count, 200, "the disk never filled")
    let error = try XCTUnwrap(objects.last?["error"] as? String)
    XCTAssertTrue(error.contains(disk.path), "the error names the database: \(error)")
    for object in objects.dropLast() { try assertConforms(object, to: "sql.schema.json") }
    // A line whose COMMIT failed after its MAT sync is committed, and says so.
    if let pending = objects.dropLast().last?["pending"] as? String {
      XCTAssertTrue(pending.contains("full"), pending)
      XCTAssertTrue(run.stderr.contains("is committed (durable in the Master Audit Trail"), run.stderr)
    }

    // Whatever the last acknowledged line was told, it is committed: it reaches the backup.
    try pair.waitForBackup()
    let backupRows = try rows(pair.backup, "SELECT count(*), max(id) FROM d")
    XCTAssertEqual(backupRows, [acknowledged.count, acknowledged.count], "the backup holds every acknowledged line")

    try disk.grow(megabytes: 64)
    let after = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO d VALUES (1000, 'x')"])
    XCTAssertEqual(after.status, 0, after.stderr)
    XCTAssertNil((after.json as? [String: Any])?["pending"], after.stdout)
    XCTAssertEqual(try rows(pair.primary, "SELECT count(*) FROM d"), [acknowledged.count + 1])
    try pair.waitForBackup()
    try pair.assertSameContent("after the disk had space again")
  }

  /// The MAT's own disk fills: a group whose MAT write fails is refused whole, naming the
  /// file, and nothing of it reaches the backup (the extractor shipped a record of a
  /// batch still being written, which the writer then undid and wrote over: the backup
  /// applied a row the primary never kept, and the primary called its own MAT corrupt).
  func testAMATDiskThatFillsShipsNothingThePrimaryDoesNotKeep() throws {
    // Sized as the report had it. A slow disk (a failpoint's pause before each new MAT
    // file) keeps a group's synced first records past the committed end for longer than
    // the extractor's grace before the append fails.
    let disk = try SmallDisk(self, megabytes: 40)
    let pair = try Pair(self, trailFileSize: 4 << 20, primaryNode: disk.path + "/primary")
    let daemons = try pair.startDaemons()
    defer {
      try? daemons.primary.stop()
      try? daemons.backup.stop()
    }
    try pair.sql("CREATE TABLE d(id INTEGER PRIMARY KEY, b BLOB)")
    let lines = (1...500).map { "INSERT INTO d VALUES (\($0), randomblob(100000))" }.joined(separator: "\n")
    let run = try understudy(
      ["sql", "--node", pair.primary, "--each-line", "--json"], stdin: lines + "\n",
      environment: ["UNDERSTUDY_FAILPOINT": "slow-roll-over:1"])
    XCTAssertEqual(run.status, 1, run.stderr)
    let error = try XCTUnwrap(run.jsonLines.compactMap { ($0 as? [String: Any])?["error"] as? String }.last)
    XCTAssertTrue(error.contains(disk.path) && error.contains("No space left"), error)
    usleep(300_000)  // time for the extractor to ship anything it wrongly would
    try disk.grow(megabytes: 64)
    let after = try understudy(["sql", "--node", pair.primary, "--json", "INSERT INTO d VALUES (1000, 'x')"])
    XCTAssertEqual(after.status, 0, after.stderr)
    try pair.waitForBackup()
    try pair.assertSameContent("the backup holds what the primary keeps")
    XCTAssertNoThrow(try TrailVerification.verify(TrailDirectory(path: pair.primary + "/mat")), "the MAT reads whole")
  }

  private func rows(_ node: String, _ sql: String) throws -> [Int] {
    let outcome = try understudy(["query", "--node", node, "--json", sql])
    return try XCTUnwrap(
      ((outcome.json as? [String: Any])?["rows"] as? [[Int]])?.first, outcome.stdout + outcome.stderr)
  }

  private func role(_ node: String) throws -> String? {
    (try understudy(["status", "--node", node, "--json"]).json as? [String: Any])?["role"] as? String
  }
}

/// `understudy ARGS` fed lines on standard input at a pace, as a streaming application
/// would; it may stop reading (a pipe it closed is no error for the feeder).
final class LineFeeder: @unchecked Sendable {
  // @unchecked: `process` and the pipes are set in init and only read afterwards; the
  // feeding thread touches nothing but the write end.
  let process = Process()
  private let input = Pipe()
  private let output = Pipe()
  private let errors = Pipe()
  private let fed = DispatchSemaphore(value: 0)

  init(_ arguments: [String], environment: [String: String] = [:]) throws {
    process.executableURL = URL(fileURLWithPath: understudyBinary)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors
    try process.run()
  }

  /// Writes `lines` lines from another thread, one every `every` seconds, then closes.
  func feed(lines: Int, every: Double, _ line: @escaping @Sendable (Int) -> String) {
    let handle = input.fileHandleForWriting
    Thread { [fed] in
      signal(SIGPIPE, SIG_IGN)
      for i in 1...lines {
        guard (try? handle.write(contentsOf: Data((line(i) + "\n").utf8))) != nil else { break }
        if every > 0 { usleep(UInt32(every * 1e6)) }
      }
      try? handle.close()
      fed.signal()
    }.start()
  }

  func finish() -> Outcome { Outcome(collecting: process, stdout: output, stderr: errors, fed: fed) }
}

/// A tmpfs of a few megabytes that a test can fill for real (root only: skipped where it
/// cannot be mounted), unmounted at teardown.
struct SmallDisk {
  let path: String

  init(_ test: XCTestCase, megabytes: Int) throws {
    path = try temporaryDirectory(test) + "/disk"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let mount = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
    guard mount == 0 else { throw XCTSkip("cannot mount a tmpfs here (not root?): a full disk needs one") }
    let path = path
    test.addTeardownBlock { _ = try? SmallDisk.run("/bin/umount", ["-l", path]) }
  }

  func grow(megabytes: Int) throws {
    XCTAssertEqual(try Self.run("/bin/mount", ["-o", "remount,size=\(megabytes)m", path]), 0)
  }

  @discardableResult
  private static func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
  }

  private func run(_ tool: String, _ arguments: [String]) throws -> Int32 { try Self.run(tool, arguments) }
}
