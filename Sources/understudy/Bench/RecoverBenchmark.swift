// `bench recover`: what bringing the old primary back costs, for several database
// sizes N at a fixed number K of diverged transactions. For each N, in one run, on
// loopback with real daemon processes: the initial copy of the database to the backup
// over the link (Understudy's full copy, what `follow --full-copy` does), a plain SQLite
// copy of the same database (VACUUM INTO, synced: what anyone can do), takeover time,
// and file-recovery time for the K transactions the backup never received. File
// recovery reads and undoes only those K, so its time should grow with K, not with N.

import AuditTrail
import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import Procedures
import SQLiteSupport

enum RecoverBenchmark {
  struct Row {
    var rows: Int
    var bytes: Int
    var initialCopySeconds: Double
    var plainCopySeconds: Double
    var takeoverSeconds: Double
    var recoverSeconds: Double
    /// The part of file recovery that reads the whole database: its final checksum.
    var recoverChecksumSeconds: Double
    /// Seconds per step of file recovery (probe, replay, decide, undo, fence, checksum, finish).
    var recoverSteps: [String: Double]
    var undone: Int
  }

  static func run(dir: String, sizes: [Int], diverged: Int, progress: (String) -> Void) throws -> [Row] {
    var rows: [Row] = []
    for n in sizes {
      let base = dir + "/n\(n)"
      try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
      rows.append(try measure(dir: base, rows: n, diverged: diverged, progress: progress))
      try? FileManager.default.removeItem(atPath: base)
    }
    return rows
  }

  /// A fresh database of `n` rows in table `items`, filled directly (not audited): the
  /// primary's database before `init primary`.
  static func fillItems(_ database: String, rows n: Int) throws {
    let db = try Connection(path: database, mode: .readWriteCreate)
    try db.execute("PRAGMA journal_mode = WAL")
    try db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, qty INTEGER NOT NULL)")
    try db.execute("BEGIN")
    let insert = try db.cached("INSERT INTO items VALUES (?, ?, ?)")
    for i in 1...n {
      try insert.bind([.integer(Int64(i)), .text("owner of item \(i), about forty bytes"), .integer(0)])
      try insert.run()
      insert.reset()
    }
    try db.execute("COMMIT")
  }

  /// A primary node on `database` in `dir/primary`, its daemon serving on loopback, and a
  /// backup node of it in `dir/backup` (database `dir/backup.sqlite`, listening on
  /// `backupPort`) whose daemon is not started yet.
  static func pair(dir: String, database: String) throws -> (
    primary: String, backup: String, backupPort: UInt16, primaryDaemon: DaemonProcess
  ) {
    let (primaryPort, backupPort) = (Listener.ephemeralPort(), Listener.ephemeralPort())
    let (primary, backup) = (dir + "/primary", dir + "/backup")
    try PrimarySetup.initPrimary(.init(node: primary, database: database, listen: "127.0.0.1:\(primaryPort)"))
    let primaryDaemon = try DaemonProcess(executable: .current, node: primary, log: dir + "/primary.log")
    do {
      try DaemonProcess.waitUntilListening(port: primaryPort)
      try BackupSetup.initBackup(
        .init(
          node: backup, database: dir + "/backup.sqlite", primary: "127.0.0.1:\(primaryPort)",
          secretFile: primary + "/secret.key", listen: "127.0.0.1:\(backupPort)"))
    } catch {
      primaryDaemon.stop()
      throw error
    }
    return (primary, backup, backupPort, primaryDaemon)
  }

  /// A plain SQLite copy, what anyone can do: `VACUUM INTO`, synced.
  static func vacuumInto(_ database: String, _ copy: String) throws {
    let db = try Connection(path: database, mode: .readOnly)
    try db.query("VACUUM INTO ?", [.text(copy)])
    try AuditTrail.FileHandle(path: copy, flags: O_RDONLY).sync()
  }

  static func measure(dir: String, rows n: Int, diverged k: Int, progress: (String) -> Void) throws -> Row {
    progress("N=\(n): filling the database…")
    let database = dir + "/primary.sqlite"
    try RecoverBenchmark.fillItems(database, rows: n)
    let bytes = (try FileManager.default.attributesOfItem(atPath: database)[.size] as? Int) ?? 0

    progress("N=\(n): plain SQLite copy…")
    let plainCopy = try time { try vacuumInto(database, dir + "/plain-copy.sqlite") }
    unlink(dir + "/plain-copy.sqlite")

    let (primary, backup, backupPort, primaryDaemon) = try pair(dir: dir, database: database)
    defer { primaryDaemon.stop() }
    progress("N=\(n): initial copy to the backup over the link…")
    let started = Clock.monotonicSeconds()
    var backupDaemon = try DaemonProcess(executable: .current, node: backup, log: dir + "/backup.log")
    defer { backupDaemon.stop() }
    _ = try AppliedWait.wait(node: backup, for: try NodeStatus.read(node: primary).trailEnd, timeout: 600)
    let initialCopy = Clock.monotonicSeconds() - started

    progress("N=\(n): \(k) transactions the backup never receives…")
    backupDaemon.stop()
    let writes = try AuditedDatabase.open(node: primary)
    var rng = SeededGenerator(seed: UInt64(n))
    for i in 0..<k {
      let id = Int64.random(in: 1...Int64(n), using: &rng)
      _ = try writes.write {
        try $0.execute("UPDATE items SET qty = qty + ? WHERE id = ?", [.integer(Int64(i + 1)), .integer(id)])
      }
    }
    writes.close()
    primaryDaemon.kill()

    progress("N=\(n): takeover…")
    var takeover: TakeoverResult!
    let takeoverTime = try time { takeover = try Takeover.run(node: backup, force: true) }
    backupDaemon = try DaemonProcess(executable: .current, node: backup, log: dir + "/backup.log")
    try DaemonProcess.waitUntilListening(port: backupPort)

    progress("N=\(n): file recovery of the old primary…")
    var recovery: FileRecoveryResult!
    let recoverTime = try time {
      recovery = try FileRecovery.run(node: primary, to: takeover.fileRecovery!, report: dir + "/lost.jsonl")
    }
    guard recovery.checksum == takeover.checksum, recovery.undone == k else {
      throw CommandError(
        "file recovery did not reach the takeover state: undid \(recovery.undone) of \(k), checksum \(recovery.checksum) vs \(takeover.checksum)"
      )
    }
    return Row(
      rows: n, bytes: bytes, initialCopySeconds: initialCopy, plainCopySeconds: plainCopy,
      takeoverSeconds: takeoverTime, recoverSeconds: recoverTime,
      recoverChecksumSeconds: recovery.timings["checksum"] ?? 0, recoverSteps: recovery.timings,
      undone: recovery.undone)
  }

  static func time(_ body: () throws -> Void) throws -> Double {
    let start = Clock.monotonicSeconds()
    try body()
    return Clock.monotonicSeconds() - start
  }
}
