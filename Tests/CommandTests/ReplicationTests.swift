// Replication between two real processes on 127.0.0.1: the initial copy, streaming,
// rollover on both sides, status, wait, events, and what the backup refuses.

import Foundation
import TestSupport
import XCTest

final class ReplicationTests: XCTestCase {
  func testTenThousandTransactionsReachTheBackupExactly() throws {
    // Small trail files: both sides roll over many times.
    let pair = try Pair(self, trailFileSize: 16384)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)", "INSERT INTO t VALUES (0, 'base', 0)")
    let primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    // A second daemon on the same node is refused.
    let second = try understudy(["start", "--node", pair.backup])
    XCTAssertEqual(second.status, 1)
    XCTAssertTrue(second.stderr.contains("already has a running daemon"), second.stderr)

    var lines: [String] = []
    for i in 1...10_000 {
      lines.append(
        i % 10 == 0
          ? "UPDATE t SET n = n + 1 WHERE id = \(i / 2)"
          : "INSERT INTO t VALUES (\(i), 'row \(i)', \(i))")
    }
    // Stop the backup part way: it must catch up across the primary's roll-overs.
    let first = try understudy(
      ["sql", "--node", pair.primary, "--each-line"], stdin: lines[..<4000].joined(separator: "\n"))
    XCTAssertEqual(first.status, 0, first.stderr)
    try backup.stop()
    let rest = try understudy(
      ["sql", "--node", pair.primary, "--each-line"], stdin: lines[4000...].joined(separator: "\n"))
    XCTAssertEqual(rest.status, 0, rest.stderr)
    let restarted = try Daemon(node: pair.backup)
    try pair.waitForBackup()
    try pair.assertSameContent("after 10,000 transactions")

    let status = try understudy(["status", "--node", pair.backup, "--json"])
    XCTAssertEqual(status.status, 0, status.stderr)
    try assertConforms(status.json, to: "status.schema.json")
    let s = try XCTUnwrap(status.json as? [String: Any])
    XCTAssertEqual(s["role"] as? String, "backup")
    XCTAssertEqual(positionText(s, "applied"), try pair.primaryEnd())
    XCTAssertEqual((s["backlog"] as? [String: Any])?["records"] as? Int, 0)
    XCTAssertTrue(
      try eventually(10) {
        (try understudy(["status", "--node", pair.backup, "--json"]).json as? [String: Any])?["connected"] as? Bool
          == true
      })
    // The purger records the safe position and, with retention 0, removes applied files.
    XCTAssertTrue(
      try eventually(5) {
        positionText(try understudy(["status", "--node", pair.backup, "--json"]).json, "safe")
          == (try pair.primaryEnd())
      })
    let image = try FileManager.default.contentsOfDirectory(atPath: pair.backup + "/image").filter {
      $0.hasPrefix("AA")
    }
    XCTAssertTrue(image.count <= 2, "image files left: \(image.sorted())")
    // And the primary's MAT (over 50 files of 64 KiB) goes too, once the backup has it all.
    let mat = {
      try FileManager.default.contentsOfDirectory(atPath: pair.primary + "/mat").filter { $0.hasPrefix("AA") }
    }
    XCTAssertTrue(try eventually(5) { try mat().count <= 2 }, "MAT files left: \(((try? mat()) ?? []).sorted())")
    XCTAssertTrue(events(pair.primary).contains { $0["code"] as? Int == 9041 })

    // `wait` for a position the primary has not reached times out with a message.
    let tooFar = try understudy(["wait", "--node", pair.backup, "--applied", "9999:64", "--timeout", "0.3"])
    XCTAssertEqual(tooFar.status, 1)
    XCTAssertTrue(tooFar.stderr.contains("not 9999:64"), tooFar.stderr)
    // Writing on a backup is refused.
    let write = try understudy(["sql", "--node", pair.backup, "INSERT INTO t VALUES (-1, 'x', 0)"])
    XCTAssertEqual(write.status, 1)
    XCTAssertTrue(write.stderr.contains("needs a primary node"), write.stderr)

    let codes = Set(events(pair.backup).compactMap { $0["code"] as? Int })
    for code in [771, 773, 9020, 9021, 9010, 9040] {
      XCTAssertTrue(codes.contains(code), "event \(code) missing: \(codes)")
    }
    let log = try understudy(["events", "--node", pair.backup, "--json"])
    XCTAssertEqual(log.status, 0)
    for line in log.jsonLines { try assertConforms(line, to: "event.schema.json") }
    try restarted.stop()
    try primary.stop()
  }

  func testUpdaterStopsAtAConflictAndNamesIt() throws {
    let pair = try Pair(self)
    try pair.sql(
      "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER)", "INSERT INTO accounts VALUES (7, 100)")
    let primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    try pair.waitForBackup()
    // Someone changes the backup behind replication's back.
    let outside = try understudy(["query", "--node", pair.backup, "SELECT 1"])
    XCTAssertEqual(outside.status, 0)
    let sqlite = Process()
    sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    sqlite.arguments = [
      "python3", "-c",
      "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE accounts SET balance = 1 WHERE id = 7'); c.commit()",
      pair.backupDB,
    ]
    try sqlite.run()
    sqlite.waitUntilExit()
    XCTAssertEqual(sqlite.terminationStatus, 0)
    try pair.sql("UPDATE accounts SET balance = 150 WHERE id = 7")
    let wait = try understudy(["wait", "--node", pair.backup, "--applied", try pair.primaryEnd(), "--timeout", "3"])
    XCTAssertEqual(wait.status, 1)
    XCTAssertTrue(wait.stderr.contains("accounts"), wait.stderr)
    let conflict = try XCTUnwrap(events(pair.backup).first { $0["code"] as? Int == 9030 })
    let message = conflict["message"] as? String ?? ""
    XCTAssertTrue(message.contains("transaction 2 ") && message.contains("accounts") && message.contains("7"), message)
    let status = try understudy(["status", "--node", pair.backup, "--json"])
    XCTAssertNotNil((status.json as? [String: Any])?["updaterStopped"] as? String)
    try backup.stop()
    try primary.stop()
  }

  func testWrongSecretAndWrongContextAreRefusedAndNothingIsWritten() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    let primary = try Daemon(node: pair.primary)
    let wrongKey = pair.root + "/wrong.key"
    try "0123456789abcdef0123456789abcdef\n".write(toFile: wrongKey, atomically: true, encoding: .utf8)
    for (name, extra, expected) in [
      ("badsecret", ["--secret-file", wrongKey], "secret"),
      ("badcontext", ["--secret-file", pair.primary + "/secret.key", "--context", "payroll"], "context 'payroll'"),
    ] {
      let node = pair.root + "/" + name
      let made = try understudy(
        ["init", "backup", "--node", node, "--db", node + ".db", "--primary", "127.0.0.1:\(pair.port)"] + extra)
      XCTAssertEqual(made.status, 0, made.stderr)
      let daemon = try Daemon(node: node)
      XCTAssertTrue(
        eventually(10) {
          events(node).contains { $0["code"] as? Int == 9012 && ($0["message"] as? String ?? "").contains(expected) }
        },
        "\(name): \(events(node))")
      XCTAssertFalse(FileManager.default.fileExists(atPath: node + ".db"), "\(name) wrote a database")
      XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: node + "/image"), [], name)
      XCTAssertTrue(
        try eventually(3) {
          let status = try understudy(["status", "--node", node, "--json"]).json as? [String: Any]
          return status?["connected"] as? Bool == false && (status?["lastError"] as? String ?? "").contains(expected)
        }, name)
      try daemon.stop()
    }
    // The primary logged both refusals and is still serving a good backup.
    let refusals = events(pair.primary).filter { $0["code"] as? Int == 9012 }
    XCTAssertGreaterThanOrEqual(refusals.count, 2, "\(refusals)")
    let backup = try Daemon(node: pair.backup)
    try pair.waitForBackup()
    try pair.assertSameContent()
    try backup.stop()
    try primary.stop()
  }
}
