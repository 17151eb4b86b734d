// Two `understudy takeover` runs at once on one backup, as real processes: neither may
// be killed by the other (takeover used to stop "the daemon" by signalling the pid in the
// daemon lock's pid file, which may be the other takeover). One does the takeover; the
// other waits for it, says so, and reports the same answer.

import Foundation
import TestSupport
import XCTest

final class TakeoverConcurrencyTests: XCTestCase {
  struct Finished {
    var status: Int32
    var signalled: Bool
    var stdout: String
    var stderr: String
  }

  /// Starts `understudy ARGS` and returns a way to wait for it.
  func launch(_ arguments: [String]) throws -> () -> Finished {
    try launchProcess(arguments).wait
  }

  func launchProcess(_ arguments: [String]) throws -> (pid: Int32, wait: () -> Finished) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: understudyBinary)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return (
      process.processIdentifier,
      {
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Finished(
          status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
          stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
      }
    )
  }

  func testTwoTakeoversAtOnceNeitherIsKilledAndBothGiveTheSameAnswer() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    let (primary, backup) = try pair.startDaemons()
    let end = try pair.primaryEnd()
    primary.kill()
    XCTAssertTrue(
      try eventually(10) {
        (try understudy(["status", "--node", pair.backup, "--json"]).json as? [String: Any])?["connected"] as? Bool
          == false
      })

    let runs = try (0..<2).map { _ in try launch(["takeover", "--node", pair.backup, "--json"]) }
    let results = runs.map { $0() }
    for (i, r) in results.enumerated() {
      XCTAssertFalse(r.signalled, "takeover \(i) was killed by signal \(r.status): \(r.stderr)")
    }
    let succeeded = results.filter { $0.status == 0 }
    XCTAssertGreaterThanOrEqual(succeeded.count, 1, "\(results)")
    for r in results where r.status != 0 {
      // Refused: then it says why, clearly, naming the node.
      XCTAssertTrue(r.stderr.contains("another takeover of \(pair.backup) is running"), r.stderr)
    }
    for r in succeeded {
      XCTAssertEqual(positionText(r.json, "fileRecovery"), end, r.stdout)
      XCTAssertEqual(r.stdout, succeeded[0].stdout)
    }
    XCTAssertEqual(events(pair.backup).filter { $0["code"] as? Int == 888 }.count, 1)
    XCTAssertEqual(events(pair.backup).filter { $0["code"] as? Int == 724 }.count, 1)
    XCTAssertFalse(backup.isRunning)
    // The node is a primary now; a third run reports the same.
    let third = try understudy(["takeover", "--node", pair.backup, "--json"])
    XCTAssertEqual(third.status, 0, third.stderr)
    XCTAssertEqual(third.stdout, succeeded[0].stdout)
  }

  /// While another takeover holds the node (here the test holds its lock, as a running
  /// takeover does), a takeover says so, naming the holder, and waits; then finishes.
  func testATakeoverWaitsForOneThatIsRunningAndSaysSo() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    let (primary, backup) = try pair.startDaemons()
    let end = try pair.primaryEnd()
    primary.kill()
    try backup.stop()

    let fd = open(pair.backup + "/state/takeover.lock", O_RDWR | O_CREAT, 0o644)
    XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
    _ = Array("\(getpid())\n".utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    let (pid, run) = try launchProcess(["takeover", "--node", pair.backup, "--json"])
    sleep(1)
    // As `understudy stop` or another takeover would signal it: it must not die of it.
    kill(pid, SIGTERM)
    sleep(1)
    XCTAssertFalse(
      events(pair.backup).contains { $0["code"] as? Int == 9050 }, "it took over while another takeover ran")
    close(fd)  // the other takeover ends
    let result = run()
    XCTAssertFalse(result.signalled, "killed by signal \(result.status)")
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stderr.contains("SIGTERM ignored"), result.stderr)
    XCTAssertTrue(
      result.stderr.contains("another takeover of \(pair.backup) is running (pid \(getpid())); waiting"), result.stderr)
    XCTAssertEqual(positionText(result.json, "fileRecovery"), end, result.stdout)
  }
}

extension TakeoverConcurrencyTests.Finished {
  var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
}
