// `bench replicate`: one primary and one backup on loopback, as real daemon processes.
// In one run: plain SQLite's single-writer commit rate; then the primary alone and with
// the backup attached in turns (A B A B … A), each attached part against the mean of the
// alone parts on either side of it, so that a disk whose speed drifts over seconds (this
// one does, by a factor of two) weighs the same on both sides of each ratio; the
// backup's catch-up rate and its apply rate while it drains each attached burst; and the
// commit-to-applied lag of every commit at half the attached rate (exact percentiles
// over all samples).

import AuditTrail
import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import SQLiteSupport

enum ReplicateBenchmark {
  struct Round {
    var aloneRate: Double
    var attachedRate: Double
    var applyRate: Double
    /// The backlog of the alone part before, over the time from starting the backup
    /// daemon until it had applied all of it: what the backup applies when it is behind.
    var catchUpRate: Double
    var attachCost: Double { 1 - attachedRate / aloneRate }
  }

  struct Result {
    var seconds: Double
    var plainRate: Double
    var rounds: [Round]
    var lagMillis: [Double]  // sorted

    /// Medians over the rounds.
    var aloneRate: Double { median(rounds.map(\.aloneRate)) }
    var attachedRate: Double { median(rounds.map(\.attachedRate)) }
    var applyRate: Double { median(rounds.map(\.applyRate)) }
    var catchUpRate: Double { median(rounds.map(\.catchUpRate)) }
    var attachCost: Double { median(rounds.map(\.attachCost)) }
    /// The rate of the lag measurement: half the attached rate.
    var pacedRate: Double { attachedRate / 2 }
    func lag(_ q: Double) -> Double {
      lagMillis.isEmpty ? 0 : lagMillis[min(lagMillis.count - 1, Int(Double(lagMillis.count) * q))]
    }
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
  }

  static let payload = "payload of a typical row, about sixty bytes long...."

  /// The backup node lives in `backupRoot`: beside the primary by default, as the target
  /// says, or on another disk to see what the backup's own disk traffic costs a primary
  /// that shares one.
  /// `environment` is laid over the daemons' (plaintext links: `UNDERSTUDY_LINK_PLAINTEXT=1`).
  static func run(
    dir: String, backupRoot: String, seconds: Double, rounds: Int, environment: [String: String] = [:],
    progress: (String) -> Void
  ) throws -> Result {
    progress("plain SQLite, 1 writer…")
    let plain = try CommitBenchmark.plainSQLite(dir: dir, writers: 1, seconds: seconds)
    let port = Listener.ephemeralPort()
    let primary = dir + "/primary"
    let backup = backupRoot + "/backup"
    let backupDatabase = backupRoot + "/backup.sqlite"
    try PrimarySetup.initPrimary(.init(node: primary, database: dir + "/primary.sqlite", listen: "127.0.0.1:\(port)"))
    let db = try AuditedDatabase.open(node: primary)
    defer { db.close() }
    _ = try db.write { try $0.execute(CommitBenchmark.table) }
    var end = MATPosition(sno: 1, rba: 0)
    func commit() throws -> CommitInfo {
      let info = try db.write { try $0.execute(CommitBenchmark.insert, [.integer(1), .text(payload)]) }.commit!
      end = info.end
      return info
    }

    progress("starting the primary and backup daemons (initial copy)…")
    let primaryDaemon = try DaemonProcess(
      executable: .current, node: primary, log: dir + "/primary.log", environment: environment)
    defer { primaryDaemon.stop() }
    try BackupSetup.initBackup(
      .init(
        node: backup, database: backupDatabase, primary: "127.0.0.1:\(port)",
        secretFile: primary + "/secret.key", retentionSeconds: 0))
    var backupDaemon: DaemonProcess? = try DaemonProcess(
      executable: .current, node: backup, log: dir + "/backup.log", environment: environment)
    defer { backupDaemon?.stop() }
    _ = try commit()
    _ = try AppliedWait.wait(node: backup, for: end, timeout: 60)

    /// Starts the backup and waits until it has caught up on `backlog` commits; their rate.
    func startBackup(backlog: Int) throws -> Double {
      let start = Clock.monotonicSeconds()
      backupDaemon = try DaemonProcess(
        executable: .current, node: backup, log: dir + "/backup.log", environment: environment)
      _ = try AppliedWait.wait(node: backup, for: end, timeout: 300)
      return Double(backlog) / (Clock.monotonicSeconds() - start)
    }
    func stopBackup() {
      backupDaemon?.stop()
      backupDaemon = nil
    }
    stopBackup()
    progress("the primary alone…")
    var aloneBefore = try timed(seconds) { _ = try commit() }
    var measured: [Round] = []
    for round in 1...rounds {
      let catchUp = try startBackup(backlog: aloneBefore.commits)
      progress("round \(round) of \(rounds): with the backup attached…")
      let burstStart = Clock.monotonicSeconds()
      let attached = try timed(seconds) { _ = try commit() }
      _ = try AppliedWait.wait(node: backup, for: end, timeout: 300)
      let drained = Clock.monotonicSeconds() - burstStart
      stopBackup()
      progress("round \(round) of \(rounds): the primary alone…")
      let aloneAfter = try timed(seconds) { _ = try commit() }
      measured.append(
        Round(
          aloneRate: (aloneBefore.rate + aloneAfter.rate) / 2, attachedRate: attached.rate,
          applyRate: Double(attached.commits) / drained, catchUpRate: catchUp))
      aloneBefore = aloneAfter
    }
    _ = try startBackup(backlog: aloneBefore.commits)

    var result = Result(seconds: seconds, plainRate: plain.rate, rounds: measured, lagMillis: [])
    progress("lag at half the attached rate…")
    result.lagMillis = try pacedLag(
      db: db, commit: commit, backupDatabase: backupDatabase, rate: result.pacedRate, seconds: seconds
    ).sorted()
    progress("")
    return result
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
