// `bench restore`: what a virtual restore (`scrt_ra -D|-S|-t`) K transactions back costs,
// against a full copy of the database, in one run. On loopback with real daemon processes:
// a primary of N rows (filled directly with SQLite), a backup that takes the initial copy
// and then receives and applies max(K) single-row updates of random rows, committed
// through the primary (queued to its committer, so they group-commit), so that they are in
// the MAT and in the backup's image trail. Then, on the backup, while its daemon runs:
// plain copies of the replica (VACUUM INTO, a raw copy of its file, SQLite's online
// backup, which is what a snapshot's copy step is), `scrt_ra -X` (a snapshot, K = 0), and
// for each K the virtual restore to the commit record K back from the replica's end,
// split into the copy and the undo as `ReplicaSnapshot` reports them, each released after.
// The engine runs in-process (`ReplicaSnapshot.take`, what `scrt_ra` calls).

import AuditTrail
import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import Procedures
import SQLiteSupport

enum RestoreBenchmark {
  struct Restore {
    /// Transactions back from the replica's end (0 for `scrt_ra -X`).
    var back: Int
    var undone: Int
    var position: MATPosition
    /// All of `ReplicaSnapshot.take`, as the caller sees it.
    var seconds: Double
    var copySeconds: Double
    var undoSeconds: Double
    var releaseSeconds: Double
    /// What `take` spends outside its copy and undo: checking the target against the
    /// replica's window, pinning the image trail, writing the snapshot's info file.
    var otherSeconds: Double { max(0, seconds - copySeconds - undoSeconds) }
  }

  struct Result {
    var rows: Int
    var bytes: Int
    var transactions: Int
    /// Committing the transactions on the primary until the backup had applied them all.
    var commitSeconds: Double
    /// VACUUM INTO of the replica, synced.
    var vacuumIntoSeconds: Double
    /// A raw copy of the replica's database file (after a checkpoint), synced: the I/O floor.
    var rawCopySeconds: Double
    /// SQLite's online backup of the replica, as a snapshot's copy step runs it (synced by
    /// the destination's commit, as SQLite's default synchronous=FULL does).
    var onlineBackupSeconds: Double
    var snapshot: Restore
    var restores: [Restore]
  }

  static func run(dir: String, rows n: Int, back: [Int], progress: (String) -> Void) throws -> Result {
    let k = back.max() ?? 0
    progress("filling the database with \(n) rows…")
    let database = dir + "/primary.sqlite"
    try RecoverBenchmark.fillItems(database, rows: n)

    let (primary, backup, _, primaryDaemon) = try RecoverBenchmark.pair(dir: dir, database: database)
    defer { primaryDaemon.stop() }
    let replica = dir + "/backup.sqlite"
    progress("initial copy to the backup…")
    let backupDaemon = try DaemonProcess(executable: .current, node: backup, log: dir + "/backup.log")
    defer { backupDaemon.stop() }
    _ = try AppliedWait.wait(node: backup, for: try NodeStatus.read(node: primary).trailEnd, timeout: 600)

    progress("\(k) single-row updates committed on the primary and applied on the backup…")
    let commitStart = Clock.monotonicSeconds()
    try commit(node: primary, rows: n, count: k)
    _ = try AppliedWait.wait(node: backup, for: try NodeStatus.read(node: primary).trailEnd, timeout: 600)
    let commitSeconds = Clock.monotonicSeconds() - commitStart

    // The commit records of the replica's image trail, oldest first.
    let layout = NodeLayout(root: backup)
    let window = try RestoreWindow.find(layout, database: replica, withMarkers: false)
    var commits: [MATPosition] = []
    let reader = try TrailReader(directory: layout.image, from: window.oldest)
    while case .record(let r) = try reader.next(), r.position < window.newest {
      if r.record.type == .commit { commits.append(r.position) }
    }
    guard commits.count >= k else {
      throw CommandError("the backup's image trail holds \(commits.count) commit records, not the \(k) committed")
    }
    // Every copy starts from the database file alone (the raw copy reads nothing else):
    // what the WAL holds is put in it first.
    try Connection(path: replica).query("PRAGMA wal_checkpoint(TRUNCATE)")
    let bytes = (try FileManager.default.attributesOfItem(atPath: replica)[.size] as? Int) ?? 0

    progress("plain copies of the replica…")
    let vacuumInto = try time { try RecoverBenchmark.vacuumInto(replica, dir + "/vacuum-copy.sqlite") }
    unlink(dir + "/vacuum-copy.sqlite")
    let rawCopy = try time { try copyFile(replica, to: dir + "/raw-copy.sqlite") }
    unlink(dir + "/raw-copy.sqlite")
    let onlineBackup = try time {
      try Connection(path: replica, mode: .readOnly).backup(into: dir + "/online-backup.sqlite")
    }
    unlink(dir + "/online-backup.sqlite")

    progress("scrt_ra -X (a snapshot)…")
    let snapshot = try restore(node: backup, target: nil, back: 0)
    var restores: [Restore] = []
    for b in back {
      let position = b == 0 ? window.newest : commits[commits.count - b]
      progress("virtual restore \(b) transactions back, to \(position)…")
      let r = try restore(node: backup, target: .position(position), back: b)
      guard r.undone == b, r.position == position else {
        throw CommandError(
          "the restore to \(position) undid \(r.undone) transactions, not \(b), and stands at \(r.position)")
      }
      restores.append(r)
    }
    return Result(
      rows: n, bytes: bytes, transactions: k, commitSeconds: commitSeconds, vacuumIntoSeconds: vacuumInto,
      rawCopySeconds: rawCopy, onlineBackupSeconds: onlineBackup, snapshot: snapshot, restores: restores)
  }

  /// `count` single-row updates of random rows, each its own audited transaction, queued
  /// to the primary's committer all at once so that they group-commit.
  static func commit(node: String, rows n: Int, count: Int) throws {
    guard count > 0 else { return }
    let writes = try AuditedDatabase.open(node: node)
    defer { writes.close() }
    let done = DispatchSemaphore(value: 0)
    let failure = FailureBox()
    var rng = SeededGenerator(seed: UInt64(n))
    for i in 0..<count {
      let id = Int64.random(in: 1...Int64(n), using: &rng)
      let qty = Int64(i + 1)
      try writes.submit(
        { try $0.execute("UPDATE items SET qty = qty + ? WHERE id = ?", [.integer(qty), .integer(id)]) },
        completion: { result in
          if case .failure(let error) = result { failure.set(error) }
          done.signal()
        })
    }
    for _ in 0..<count { done.wait() }
    if let error = failure.error { throw error }
  }

  final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    func set(_ error: Error) { lock.withLock { if first == nil { first = error } } }
    var error: Error? { lock.withLock { first } }
  }

  static func restore(node: String, target: RestoreTarget?, back: Int) throws -> Restore {
    var info: ReplicaSnapshot!
    let seconds = try time { info = try ReplicaSnapshot.take(node: node, target: target) }
    let releaseSeconds = try time { _ = try ReplicaSnapshot.release(node: node) }
    return Restore(
      back: back, undone: info.undone, position: info.position, seconds: seconds, copySeconds: info.copySeconds,
      undoSeconds: info.undoSeconds, releaseSeconds: releaseSeconds)
  }

  /// Copies a file in 1 MiB reads and writes, then syncs the copy.
  static func copyFile(_ source: String, to destination: String) throws {
    let from = open(source, O_RDONLY)
    guard from >= 0 else { throw TrailError.io(operation: "open", path: source, errno: errno) }
    defer { close(from) }
    let to = open(destination, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard to >= 0 else { throw TrailError.io(operation: "create", path: destination, errno: errno) }
    defer { close(to) }
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let got = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
      guard got >= 0 else { throw TrailError.io(operation: "read", path: source, errno: errno) }
      if got == 0 { break }
      var written = 0
      while written < got {
        let w = buffer.withUnsafeBytes { write(to, $0.baseAddress! + written, got - written) }
        guard w > 0 else { throw TrailError.io(operation: "write", path: destination, errno: errno) }
        written += w
      }
    }
    guard fsync(to) == 0 else { throw TrailError.io(operation: "fsync", path: destination, errno: errno) }
  }

  static func time(_ body: () throws -> Void) throws -> Double {
    let start = Clock.monotonicSeconds()
    try body()
    return Clock.monotonicSeconds() - start
  }
}
