// Planned switchover with real daemons on 127.0.0.1: the roles swap and swap back with
// nothing lost; a backup that cannot apply the switchover record in time makes the
// switchover abandon cleanly; a switchover command killed mid-way finishes when run again.

import Foundation
import Node
import TestSupport
import XCTest

final class SwitchoverTests: XCTestCase {
  func testSwitchoverSwapsRolesAndBackWithNothingLost() throws {
    let (pair, a, b) = try runningPair()
    defer {
      try? a.stop()
      try? b.stop()
    }
    try pair.sql("INSERT INTO t VALUES (2, 'two')")
    // The primary's status names its attached backup (published by the daemon within 0.2 s).
    var status = try understudy(["status", "--node", pair.primary, "--json"])
    XCTAssertTrue(
      try eventually(5) {
        status = try understudy(["status", "--node", pair.primary, "--json"])
        return ((status.json as? [String: Any])?["backups"] as? [Any])?.count == 1
      }, status.stdout)
    try assertConforms(status.json, to: "status.schema.json")
    try assertConforms(try stateFile(pair.primary, "attached.json"), to: "state-attached.schema.json")
    try assertConforms(try stateFile(pair.primary, "backups.json"), to: "state-backups.schema.json")
    try assertConforms(try stateFile(pair.backup, "backup-runtime.json"), to: "state-backup-runtime.schema.json")
    XCTAssertTrue(eventually(5) { FileManager.default.fileExists(atPath: pair.backup + "/state/safe.json") })
    try assertConforms(try stateFile(pair.backup, "safe.json"), to: "state-safe.schema.json")

    let over = try understudy(["switchover", "--node", pair.primary, "--timeout", "30", "--json"])
    XCTAssertEqual(over.status, 0, over.stderr + log(pair.primary) + log(pair.backup))
    try assertConforms(over.json, to: "switchover.schema.json")
    let result = try XCTUnwrap(over.json as? [String: Any])
    XCTAssertEqual(result["generation"] as? Int, 2)
    let journal = try stateFile(pair.primary, "switchover.json")
    try assertConforms(journal, to: "state-switchover.schema.json")
    XCTAssertEqual((journal as? [String: Any])?["phase"] as? String, "complete")
    // The backup copied its database in this same link session: it knows its generation.
    let refusals = events(pair.backup).filter { ($0["message"] as? String ?? "").contains("cannot become the primary") }
    XCTAssertEqual(refusals.count, 0, "the promotion was refused first: \(refusals)")

    XCTAssertTrue(try eventually(20) { try role(pair.backup) == "primary" && role(pair.primary) == "backup" })
    let promotion = try stateFile(pair.backup, "promotion.json")
    try assertConforms(promotion, to: "state-promotion.schema.json")
    XCTAssertEqual((promotion as? [String: Any])?["complete"] as? Bool, true)
    XCTAssertEqual(try pair.checksum(pair.primary), try pair.checksum(pair.backup))
    XCTAssertEqual(result["checksum"] as? String, try pair.checksum(pair.backup), "nothing lost at the hand-over")
    let refused = try understudy(["sql", "--node", pair.primary, "INSERT INTO t VALUES (3, 'x')"])
    XCTAssertNotEqual(refused.status, 0, "the old primary is a backup now")
    let write = try understudy(["sql", "--node", pair.backup, "--json", "INSERT INTO t VALUES (3, 'three')"])
    XCTAssertEqual(write.status, 0, write.stderr)
    let end = try XCTUnwrap(positionText(write.json, "end"))
    let waited = try understudy(["wait", "--node", pair.primary, "--applied", end, "--timeout", "30"])
    XCTAssertEqual(waited.status, 0, waited.stderr + log(pair.primary))

    // And back again, through the daemons' role change, with no restart.
    let back = try understudy(["switchover", "--node", pair.backup, "--timeout", "30", "--json"])
    XCTAssertEqual(back.status, 0, back.stderr + log(pair.primary) + log(pair.backup))
    XCTAssertEqual((back.json as? [String: Any])?["generation"] as? Int, 3)
    XCTAssertTrue(try eventually(20) { try role(pair.primary) == "primary" && role(pair.backup) == "backup" })
    try pair.sql("INSERT INTO t VALUES (4, 'four')")
    try pair.waitForBackup()
    try pair.assertSameContent("after switching back")
    XCTAssertTrue(a.isRunning && b.isRunning, "both daemons went on in their new roles")
  }

  func testASwitchoverTheBackupCannotConfirmIsAbandonedAndWritesResume() throws {
    let (pair, a, b) = try runningPair()
    defer {
      kill(b.process.processIdentifier, SIGCONT)
      try? a.stop()
      try? b.stop()
    }
    // Frozen, the backup keeps its link open but applies nothing.
    kill(b.process.processIdentifier, SIGSTOP)
    let over = try understudy(["switchover", "--node", pair.primary, "--timeout", "1", "--json"])
    XCTAssertEqual(over.status, 1)
    XCTAssertTrue(over.stderr.contains("abandoned"), over.stderr)
    try assertConforms(over.json, to: "error.schema.json")
    XCTAssertTrue(events(pair.primary).contains { $0["code"] as? Int == 9063 })
    let journal = try stateFile(pair.primary, "switchover.json")
    try assertConforms(journal, to: "state-switchover.schema.json")
    XCTAssertEqual((journal as? [String: Any])?["phase"] as? String, "abandoned")

    try pair.sql("INSERT INTO t VALUES (2, 'after the abandoned switchover')")
    kill(b.process.processIdentifier, SIGCONT)
    try pair.waitForBackup()
    try pair.assertSameContent("the backup applied the switchover record and its cancellation, and nothing else")
    XCTAssertEqual(try role(pair.backup), "backup", "an abandoned switchover never promotes the backup")
    XCTAssertEqual(try role(pair.primary), "primary")
  }

  func testASwitchoverCommandKilledMidwayFinishesWhenRunAgain() throws {
    let seed = UInt64.random(in: 1...999_999)
    print("SwitchoverTests seed \(seed)")
    var rng = SeededGenerator(seed: seed)
    let (pair, a, b) = try runningPair()
    defer {
      try? a.stop()
      try? b.stop()
    }

    let process = try startUnderstudy(["switchover", "--node", pair.primary, "--timeout", "30"])
    usleep(UInt32.random(in: 0...300_000, using: &rng))
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()

    // Run again: it goes on from its journal, whatever step the kill interrupted.
    var again = try understudy(["switchover", "--node", pair.primary, "--timeout", "30"])
    if again.status != 0, again.stderr.contains("needs a primary node") {
      again = Outcome(status: 0, stdout: "", stderr: "")  // the killed run had finished
    }
    XCTAssertEqual(again.status, 0, again.stderr + log(pair.primary) + log(pair.backup))
    XCTAssertTrue(try eventually(20) { try role(pair.backup) == "primary" && role(pair.primary) == "backup" })
    let write = try understudy(["sql", "--node", pair.backup, "--json", "INSERT INTO t VALUES (2, 'two')"])
    XCTAssertEqual(write.status, 0, write.stderr)
    let end = try XCTUnwrap(positionText(write.json, "end"))
    XCTAssertEqual(try understudy(["wait", "--node", pair.primary, "--applied", end, "--timeout", "30"]).status, 0)
    XCTAssertEqual(try pair.checksum(pair.primary), try pair.checksum(pair.backup))
  }

  func testDaemonsKilledDuringTheHandOverFinishItWhenRestarted() throws {
    for victim in ["old primary", "new primary", "both"] {
      let (pair, a, b) = try runningPair()
      var daemons = (a: a, b: b)
      defer {
        try? daemons.a.stop()
        try? daemons.b.stop()
      }
      let process = try startUnderstudy(["switchover", "--node", pair.primary, "--timeout", "30"])
      // Kill at the hand-over itself: once the switchover is committed.
      XCTAssertTrue(
        eventually(20) {
          let text = (try? String(contentsOfFile: pair.primary + "/state/switchover.json", encoding: .utf8)) ?? ""
          return text.contains("\"committed\"") || text.contains("\"promoted\"") || text.contains("\"complete\"")
        }, "\(victim): the switchover never committed")
      if victim != "new primary" { daemons.a.kill() }
      if victim != "old primary" { daemons.b.kill() }
      if victim != "new primary" { daemons.a = try Daemon(node: pair.primary) }
      if victim != "old primary" { daemons.b = try Daemon(node: pair.backup) }
      process.waitUntilExit()
      XCTAssertTrue(
        try eventually(30) { try role(pair.backup) == "primary" && role(pair.primary) == "backup" },
        "\(victim): roles did not swap" + log(pair.primary) + log(pair.backup))
      let write = try understudy(["sql", "--node", pair.backup, "--json", "INSERT INTO t VALUES (2, 'two')"])
      XCTAssertEqual(write.status, 0, "\(victim): \(write.stderr)")
      let end = try XCTUnwrap(positionText(write.json, "end"))
      let waited = try understudy(["wait", "--node", pair.primary, "--applied", end, "--timeout", "30"])
      XCTAssertEqual(waited.status, 0, "\(victim): \(waited.stderr)" + log(pair.primary))
      XCTAssertEqual(try pair.checksum(pair.primary), try pair.checksum(pair.backup), victim)
    }
  }

  /// A primary and a backup that can become one, both daemons running, one table replicated.
  private func runningPair() throws -> (Pair, Daemon, Daemon) {
    let pair = try Pair(self, backupListens: true)
    let a = try Daemon(node: pair.primary)
    let b = try Daemon(node: pair.backup)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    try pair.waitForBackup()
    return (pair, a, b)
  }

  private func role(_ node: String) throws -> String? {
    (try understudy(["status", "--node", node, "--json"]).json as? [String: Any])?["role"] as? String
  }

  private func log(_ node: String) -> String {
    "\n--- \(node).log\n" + ((try? String(contentsOfFile: node + ".log", encoding: .utf8)) ?? "")
  }
}
