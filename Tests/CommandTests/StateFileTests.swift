// State files that cannot be read, with real corrupted bytes: each is an error naming
// the file, never a silent default. Above all `state/backups.json`, without which an old
// primary cannot learn that it was taken over: it must not serve.

import Foundation
import TestSupport
import XCTest

final class StateFileTests: XCTestCase {
  func testAnOldPrimaryWithACorruptBackupsFileDoesNotServe() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    var primary: Daemon
    let backup: Daemon
    (primary, backup) = try pair.startDaemons()
    let known = pair.primary + "/state/backups.json"
    XCTAssertTrue(eventually(10) { FileManager.default.fileExists(atPath: known) }, "the backup never registered")
    primary.kill()
    try backup.stop()
    let takeover = try understudy(["takeover", "--node", pair.backup, "--force"])
    XCTAssertEqual(takeover.status, 0, takeover.stderr)
    let newPrimary = try Daemon(node: pair.backup)
    defer { try? newPrimary.stop() }

    // Cut mid-entry, as a crash of a careless writer or a bad edit would leave it.
    try Data(#"[{"listen": "127.0.0.1:174"#.utf8).write(to: URL(fileURLWithPath: known))
    let servedBefore = events(pair.primary).filter { $0["code"] as? Int == 9001 }.count
    primary = try Daemon(node: pair.primary)
    guard eventually(10, { !primary.isRunning }) else {
      return XCTFail("the old primary serves without knowing its backups: \(events(pair.primary).suffix(2))")
    }
    XCTAssertNotEqual(primary.process.terminationStatus, 0)
    let log = try String(contentsOfFile: pair.primary + ".log", encoding: .utf8)
    XCTAssertTrue(log.contains(known), "the error does not name \(known): \(log.suffix(800))")
    XCTAssertTrue(log.contains("must not serve"), String(log.suffix(800)))
    XCTAssertEqual(events(pair.primary).filter { $0["code"] as? Int == 9001 }.count, servedBefore, "it served")
    // Status shows it (and nothing else breaks); recover says it too.
    let status = try understudy(["status", "--node", pair.primary, "--json"])
    XCTAssertEqual(status.status, 0, status.stderr)
    try assertConforms(status.json, to: "status.schema.json")
    let problem = (status.json as? [String: Any])?["fencingProblem"] as? String ?? ""
    XCTAssertTrue(problem.contains(known), status.stdout)
    let text = try understudy(["status", "--node", pair.primary])
    XCTAssertTrue(text.stdout.contains("FENCING BROKEN: cannot read \(known)"), text.stdout)
    let recover = try understudy(["recover", "--node", pair.primary, "--to-mat", "1:64"])
    XCTAssertEqual(recover.status, 1, recover.stdout)
    XCTAssertTrue(recover.stderr.contains(known), recover.stderr)
  }

  func testCorruptStateFilesAreErrorsNamingThem() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    let (primary, backup) = try pair.startDaemons()

    // attached.json, while the daemon runs: status says which file, it does not guess.
    // (Nothing attaches meanwhile, so the daemon does not rewrite it.)
    let attached = pair.primary + "/state/attached.json"
    try backup.stop()
    try primary.stop()
    let restarted = try Daemon(node: pair.primary)
    XCTAssertTrue(eventually(10) { FileManager.default.fileExists(atPath: attached) })
    try Data("[{\"peer\":".utf8).write(to: URL(fileURLWithPath: attached))
    let status = try understudy(["status", "--node", pair.primary, "--json"])
    XCTAssertEqual(status.status, 1, status.stdout)
    XCTAssertTrue(status.stderr.contains(attached), status.stderr)
    XCTAssertNotNil((status.json as? [String: Any])?["error"], status.stdout)

    // daemon.pid holding no pid: `stop` says so instead of "not running".
    let pidFile = pair.primary + "/state/daemon.pid"
    let pid = try String(contentsOfFile: pidFile, encoding: .utf8)
    try Data("\0\0garbage".utf8).write(to: URL(fileURLWithPath: pidFile))
    let stop = try understudy(["stop", "--node", pair.primary])
    XCTAssertEqual(stop.status, 1, stop.stdout)
    XCTAssertTrue(stop.stderr.contains(pidFile), stop.stderr)
    XCTAssertTrue(restarted.isRunning)
    try Data(pid.utf8).write(to: URL(fileURLWithPath: pidFile))
    try restarted.stop()

    // safe.json on the backup: status and the daemon name it.
    let safe = pair.backup + "/state/safe.json"
    XCTAssertTrue(FileManager.default.fileExists(atPath: safe))
    try Data("{\"safe\":{\"sno\":1,".utf8).write(to: URL(fileURLWithPath: safe))
    let backupStatus = try understudy(["status", "--node", pair.backup])
    XCTAssertEqual(backupStatus.status, 1, backupStatus.stdout)
    XCTAssertTrue(backupStatus.stderr.contains(safe), backupStatus.stderr)
    let backupAgain = try Daemon(node: pair.backup)
    XCTAssertTrue(eventually(10) { !backupAgain.isRunning }, "the backup daemon ran on an unreadable safe.json")
    let log = try String(contentsOfFile: pair.backup + ".log", encoding: .utf8)
    XCTAssertTrue(log.contains(safe), String(log.suffix(800)))
  }
}
