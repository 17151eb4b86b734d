// `bench replicate`: one primary and one backup on loopback, as real daemon processes.
// In one run: plain SQLite's single-writer commit rate, the primary's rate alone and with
// the backup attached, the backup's apply rate while it drains that burst, and the
// commit-to-applied lag of every commit at half the attached rate (exact percentiles
// over all samples).

import AuditTrail
import Backup
import Foundation
import Link
import Node
import Primary
import SQLiteSupport

enum ReplicateBenchmark {
  struct Result {
    var seconds: Double
    var plainRate: Double
    var aloneRate: Double
    var attachedRate: Double
    var applyRate: Double
    var pacedRate: Double
    var lagMillis: [Double]  // sorted

    var attachCost: Double { 1 - attachedRate / aloneRate }
    func lag(_ q: Double) -> Double {
      lagMillis.isEmpty ? 0 : lagMillis[min(lagMillis.count - 1, Int(Double(lagMillis.count) * q))]
    }
  }

  static let payload = "payload of a typical row, about sixty bytes long...."

  static func run(dir: String, seconds: Double, progress: (String) -> Void) throws -> Result {
    progress("plain SQLite, 1 writer…")
    let plain = try CommitBenchmark.plainSQLite(dir: dir, writers: 1, seconds: seconds)
    let port = Listener.ephemeralPort()
    let primary = dir + "/primary"
    let backup = dir + "/backup"
    try PrimarySetup.initPrimary(.init(node: primary, database: dir + "/primary.sqlite", listen: "127.0.0.1:\(port)"))
    let db = try AuditedDatabase.open(node: primary)
    defer { db.close() }
    _ = try db.write { try $0.execute(CommitBenchmark.table) }
    func commit() throws -> CommitInfo {
      try db.write { try $0.execute(CommitBenchmark.insert, [.integer(1), .text(payload)]) }.commit!
    }

    progress("Understudy primary alone…")
    let alone = try timed(seconds) { _ = try commit() }

    progress("starting the primary and backup daemons (initial copy)…")
    let daemons = [try DaemonProcess(node: primary, log: dir + "/primary.log")]
    try BackupSetup.initBackup(
      .init(
        node: backup, database: dir + "/backup.sqlite", primary: "127.0.0.1:\(port)",
        secretFile: primary + "/secret.key", retentionSeconds: 0))
    let all = daemons + [try DaemonProcess(node: backup, log: dir + "/backup.log")]
    defer { for d in all { d.stop() } }
    let end = try commit().end
    _ = try AppliedWait.wait(node: backup, for: end, timeout: 60)

    progress("Understudy primary with the backup attached…")
    let burstStart = Clock.monotonicSeconds()
    var last = end
    let attached = try timed(seconds) { last = try commit().end }
    _ = try AppliedWait.wait(node: backup, for: last, timeout: 300)
    let drained = Clock.monotonicSeconds() - burstStart
    let applyRate = Double(attached.commits) / drained

    progress("lag at half the attached rate…")
    let lags = try pacedLag(
      db: db, commit: commit, backupDatabase: dir + "/backup.sqlite", rate: attached.rate / 2, seconds: seconds)
    progress("")
    return Result(
      seconds: seconds, plainRate: plain.rate, aloneRate: alone.rate, attachedRate: attached.rate,
      applyRate: applyRate, pacedRate: attached.rate / 2, lagMillis: lags.sorted())
  }

  static func timed(_ seconds: Double, _ body: () throws -> Void) throws -> CommitBenchmark.Measurement {
    let start = Clock.monotonicSeconds()
    var n = 0
    while Clock.monotonicSeconds() - start < seconds {
      try body()
      n += 1
    }
    return .init(commits: n, seconds: Clock.monotonicSeconds() - start)
  }

  /// Commits at a fixed rate while another thread watches the backup's applied position;
  /// each commit's lag is from its durable commit to the first poll that sees it applied.
  static func pacedLag(
    db: AuditedDatabase, commit: () throws -> CommitInfo, backupDatabase: String, rate: Double, seconds: Double
  ) throws -> [Double] {
    let watcher = Watcher(database: backupDatabase)
    let thread = Thread { watcher.run() }
    thread.start()
    let start = Clock.monotonicSeconds()
    var i = 0
    while Clock.monotonicSeconds() - start < seconds {
      let due = start + Double(i) / rate
      let wait = due - Clock.monotonicSeconds()
      if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
      let info = try commit()
      watcher.committed(end: info.end, at: Clock.monotonicSeconds())
      i += 1
    }
    return try watcher.finish()
  }

  final class Watcher: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private let database: String
    private var pending: [(end: MATPosition, at: Double)] = []
    private var lags: [Double] = []
    private var done = false
    private var failure: Error?
    private let finished = DispatchSemaphore(value: 0)

    init(database: String) { self.database = database }

    func committed(end: MATPosition, at: Double) {
      lock.lock()
      pending.append((end, at))
      lock.unlock()
    }

    func run() {
      defer { finished.signal() }
      do {
        let db = try Connection(path: database, mode: .readOnly)
        let statement = try db.prepare("SELECT end_sno, end_rba FROM understudy_state WHERE id = 1")
        while true {
          let rows = try statement.rows()
          statement.reset()  // ends the read transaction, so the next poll sees new commits
          let now = Clock.monotonicSeconds()
          var applied = MATPosition(sno: 0, rba: 0)
          if case .integer(let sno) = rows.first?[0], case .integer(let rba) = rows.first?[1] {
            applied = MATPosition(sno: UInt32(sno), rba: UInt64(rba))
          }
          lock.lock()
          while let first = pending.first, first.end <= applied {
            lags.append((now - first.at) * 1000)
            pending.removeFirst()
          }
          let stop = done && pending.isEmpty
          lock.unlock()
          if stop { return }
          usleep(500)
        }
      } catch {
        lock.lock()
        failure = error
        lock.unlock()
      }
    }

    func finish() throws -> [Double] {
      lock.lock()
      done = true
      lock.unlock()
      finished.wait()
      if let failure { throw failure }
      return lags
    }
  }
}
