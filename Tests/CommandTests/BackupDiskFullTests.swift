// The backup's database on a disk that fills up, for real: a small tmpfs (we run as
// root in CI; skipped where mount is not allowed). The updater must roll back whatever
// SQLite did, say what and where, show it in `status`, and carry on by itself once
// there is room again.

import Foundation
import Node
import TestSupport
import XCTest

final class BackupDiskFullTests: XCTestCase {
  func mountTmpfs(_ directory: String, size: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let mount = Process()
    mount.executableURL = URL(fileURLWithPath: "/bin/mount")
    mount.arguments = ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", directory]
    mount.standardError = FileHandle.nullDevice
    mount.standardOutput = FileHandle.nullDevice
    do { try mount.run() } catch { throw XCTSkip("cannot run mount: \(error)") }
    mount.waitUntilExit()
    guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a tmpfs here (not root?)") }
    addTeardownBlock {
      let umount = Process()
      umount.executableURL = URL(fileURLWithPath: "/bin/umount")
      umount.arguments = ["-l", directory]
      try? umount.run()
      umount.waitUntilExit()
    }
  }

  /// Writes `path` until the file system says it is full; returns the bytes written.
  func fill(_ path: String) -> Int {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    defer { close(fd) }
    let chunk = [UInt8](repeating: 0xAB, count: 64 << 10)
    var total = 0
    while true {
      let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n <= 0 { break }
      total += n
    }
    // Smaller pieces, down to the last free page.
    while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, 512) }) > 0 { total += 512 }
    fsync(fd)
    return total
  }

  func status(_ node: String) throws -> [String: Any] {
    let outcome = try understudy(["status", "--node", node, "--json"])
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
    try assertConforms(outcome.json, to: "status.schema.json")
    return try XCTUnwrap(outcome.json as? [String: Any], outcome.stdout)
  }

  func testAFullDiskHoldsTheUpdaterWhichResumesByItselfOnceThereIsRoom() throws {
    let pair = try Pair(self)
    let disk = pair.root + "/disk"
    try mountTmpfs(disk, size: "8m")
    let database = disk + "/backup.db"
    let layout = NodeLayout(root: pair.backup)
    var config = try layout.loadConfig()
    config.database = database
    try layout.saveConfig(config)

    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", "INSERT INTO t VALUES (0, randomblob(1000))")
    let (primary, backup) = try pair.startDaemons()
    let filled = fill(disk + "/filler")
    XCTAssertGreaterThan(filled, 1 << 20)

    // The primary commits far more than the backup's disk can hold now.
    for i in 0..<12 {
      try pair.sql(
        "INSERT INTO t VALUES (\(2 * i + 1), randomblob(100000))",
        "INSERT INTO t VALUES (\(2 * i + 2), randomblob(100000))")
    }
    let end = try pair.primaryEnd()
    XCTAssertTrue(
      eventually(30) {
        events(pair.backup).contains {
          $0["code"] as? Int == 700 && ($0["message"] as? String ?? "").contains(database)
        }
      }, "no 700 naming \(database): \(events(pair.backup).suffix(5))")
    // The daemon publishes its state every 0.25 s: the event can be ahead of it.
    var waiting = try status(pair.backup)
    XCTAssertTrue(
      try eventually(5) {
        waiting = try status(pair.backup)
        return waiting["updaterWaiting"] is String
      })
    let reason = try XCTUnwrap(waiting["updaterWaiting"] as? String, "\(waiting)")
    XCTAssertTrue(reason.contains(database) && reason.contains("full"), reason)
    XCTAssertTrue(waiting["updaterStopped"] is NSNull, "\(waiting)")
    XCTAssertNotEqual(positionText(waiting, "applied"), end)
    let text = try understudy(["status", "--node", pair.backup])
    XCTAssertTrue(
      text.stdout.contains("UPDATER WAITING"), "status exited \(text.status): \(text.stdout) \(text.stderr)")
    // Still waiting a few retries later, not dead.
    sleep(3)
    XCTAssertFalse(events(pair.backup).contains { $0["code"] as? Int == 821 }, "\(events(pair.backup).suffix(5))")
    XCTAssertTrue(backup.isRunning)

    // Room again: it catches up by itself, no restart.
    try FileManager.default.removeItem(atPath: disk + "/filler")
    try pair.waitForBackup(timeout: 60)
    try pair.assertSameContent()
    // `wait` reads the database; the published state may be a quarter second behind it.
    var resumed = try status(pair.backup)
    XCTAssertTrue(
      try eventually(5) {
        resumed = try status(pair.backup)
        return resumed["updaterWaiting"] is NSNull
      }, "\(resumed)")
    // Logged right after the batch that went in, which `wait` may see first.
    XCTAssertTrue(
      eventually(5) {
        events(pair.backup).contains {
          $0["code"] as? Int == 773 && ($0["message"] as? String ?? "").contains("resumed")
        }
      }, "no 773 'resumed': \(events(pair.backup).suffix(5))")
    XCTAssertFalse(events(pair.backup).contains { [821, 9030].contains($0["code"] as? Int ?? 0) })
    for e in events(pair.backup) where [700, 773].contains(e["code"] as? Int ?? 0) {
      print("disk full: \(e["code"]!) \(e["message"]!)")
    }
    try backup.stop()
    try primary.stop()
  }
}
