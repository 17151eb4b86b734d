// The primary's MAT is bounded (issue 12, item 13): files go once the database and every
// registered backup have passed them; a stopped backup holds them back, up to a cap past
// which it is dropped and needs a full copy.

import Foundation
import Node
import TestSupport
import XCTest

final class MATRetentionTests: XCTestCase {
  func testMATFilesGoOnceTheBackupHasThemAndStreamingGoesOn() throws {
    let pair = try Pair(self, trailFileSize: 4096)
    let daemons = try pair.startDaemons()
    defer {
      try? daemons.primary.stop()
      try? daemons.backup.stop()
    }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try writeRows(pair, 1...300)
    try pair.waitForBackup()
    XCTAssertTrue(
      try eventually(10) { try status(pair.primary)["trailFiles"] as? Int ?? 99 <= 2 },
      "old MAT files stay: \((try? status(pair.primary)) ?? [:])")
    let s = try status(pair.primary)
    try assertConforms(s, to: "status.schema.json")
    XCTAssertGreaterThan((s["oldestKept"] as? [String: Any])?["sno"] as? Int ?? 0, 1)
    XCTAssertGreaterThan(s["matBytes"] as? Int ?? 0, 0)
    XCTAssertEqual((s["retainedFor"] as? [Any])?.count, 1, "the backup is registered")
    try assertConforms(try stateFile(pair.primary, "retained.json"), to: "state-retained.schema.json")
    XCTAssertTrue(events(pair.primary).contains { $0["code"] as? Int == 9041 })
    // The database reopens on what is left, and the backup streams on.
    try writeRows(pair, 301...320)
    try pair.waitForBackup()
    try pair.assertSameContent()
  }

  func testAStoppedBackupHoldsTheMATBackUntilItPassesTheCap() throws {
    let pair = try Pair(self, trailFileSize: 4096, primaryOptions: ["--max-retained-bytes", "40000"])
    var daemons = try pair.startDaemons()
    defer {
      try? daemons.primary.stop()
      try? daemons.backup.stop()
    }
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    try pair.waitForBackup()
    try daemons.backup.stop()
    let firstKept = try XCTUnwrap((try status(pair.primary)["oldestKept"] as? [String: Any])?["sno"] as? Int)

    // Under the cap: everything from the stopped backup's position stays.
    try writeRows(pair, 1...60)
    usleep(1_500_000)  // more than a purge interval
    XCTAssertEqual((try status(pair.primary)["oldestKept"] as? [String: Any])?["sno"] as? Int, firstKept)
    XCTAssertFalse(events(pair.primary).contains { $0["code"] as? Int == 9042 })

    // Past it: the backup is dropped (9042) and the files go.
    try writeRows(pair, 61...400)
    XCTAssertTrue(
      eventually(10) { events(pair.primary).contains { $0["code"] as? Int == 9042 } }, "no 9042")
    XCTAssertTrue(
      try eventually(10) { try status(pair.primary)["trailFiles"] as? Int ?? 99 <= 2 }, "the files stayed")
    let retained = try XCTUnwrap(try status(pair.primary)["retainedFor"] as? [[String: Any]])
    XCTAssertEqual(retained.map { $0["dropped"] as? Bool }, [true])

    // The backup, back, is refused with what to do; nothing is applied.
    daemons.backup = try Daemon(node: pair.backup)
    XCTAssertTrue(
      eventually(10) {
        events(pair.backup).contains { ($0["message"] as? String ?? "").contains("needs a full copy") }
      }, "the backup was not told it needs a full copy")
  }

  /// A backup that becomes a primary writes MAT files of its own: of the size given at
  /// init (it was always 64 MiB, which a small disk could not take at promotion).
  func testInitBackupTakesTheTrailFileSizeItWillWriteAsAPrimary() throws {
    let root = try temporaryDirectory(self)
    let key = root + "/key"
    XCTAssertTrue(
      FileManager.default.createFile(
        atPath: key, contents: Data((String(repeating: "k", count: 32) + "\n").utf8),
        attributes: [.posixPermissions: 0o600]))
    let base = ["init", "backup", "--db", root + "/b.db", "--primary", "127.0.0.1:1", "--secret-file", key]
    let small = try understudy(base + ["--node", root + "/small", "--trail-file-size", "1000"])
    XCTAssertEqual(small.status, 1)
    XCTAssertTrue(small.stderr.contains("below 4096"), small.stderr)
    XCTAssertEqual(try understudy(base + ["--node", root + "/b", "--trail-file-size", "8192"]).status, 0)
    XCTAssertEqual(try NodeLayout(root: root + "/b").loadConfig().trailFileSize, 8192)
  }

  private func writeRows(_ pair: Pair, _ ids: ClosedRange<Int>) throws {
    let lines = ids.map { "INSERT INTO t VALUES (\($0), '\(String(repeating: "x", count: 200))')" }
    let run = try understudy(
      ["sql", "--node", pair.primary, "--each-line"], stdin: lines.joined(separator: "\n") + "\n")
    XCTAssertEqual(run.status, 0, run.stderr)
  }

  private func status(_ node: String) throws -> [String: Any] {
    let outcome = try understudy(["status", "--node", node, "--json"])
    return try XCTUnwrap(outcome.json as? [String: Any], outcome.stdout + outcome.stderr)
  }
}
