// The steps of `understudy demo`, in the order it runs them: each prints its numbered
// heading, what it did and its checks. The results a later step checks against are
// returned and passed on.

import Apply
import AuditTrail
import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import Procedures
import SQLiteSupport

extension DemoState {
  // MARK: - The pair

  /// A primary with small trail files, and a bank: 20 accounts of 1,000 and a ledger.
  func createPrimary() throws {
    heading("create a primary node listening on 127.0.0.1:\(port), with small (256 KiB) audit trail files")
    // The MAT is kept for an hour after the backup has it: step 8 rebuilds the database from
    // the whole trail (with it purged, a fast backup left only the last files to replay).
    try PrimarySetup.initPrimary(
      .init(
        node: primary, database: primaryDatabase, listen: "127.0.0.1:\(port)", trailFileSize: 256 << 10,
        matRetentionSeconds: 3600))
    let db = try AuditedDatabase.open(node: primary)
    _ = try db.write { tx in
      try tx.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)")
      for i in 1...20 {
        try tx.execute("INSERT INTO accounts VALUES (?, ?, 1000)", [.integer(Int64(i)), .text("owner \(i)")])
      }
      try tx.execute("CREATE TABLE ledger(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, amount INTEGER NOT NULL)")
    }
    db.close()
  }

  /// Starts the primary's daemon, creates a backup with a listen address of its own, and
  /// starts its daemon (its first start copies the primary's database).
  func startBackup() throws {
    Output.line("   start its daemon; create a backup node and start it: it copies the database, then streams")
    try startPrimaryDaemon()
    backupPort = Listener.ephemeralPort()
    try BackupSetup.initBackup(
      .init(
        node: backup, database: backupDatabase, primary: "127.0.0.1:\(port)",
        secretFile: primary + "/secret.key", listen: "127.0.0.1:\(backupPort)", retentionSeconds: 0))
    try startBackupDaemon()
  }

  // MARK: - Crashes

  /// Three writers, each killed and the node reopened after it: at a random moment, right
  /// after its MAT sync, halfway through a MAT write; the backup is SIGKILLed during the
  /// second.
  func writerKills() throws {
    let rounds: [(String, String?)] = [
      ("killed at a random moment", nil),
      (
        "killed right after its MAT sync, before SQLite commits",
        "after-trail-sync:\(Int.random(in: 2...4, using: &rng))"
      ),
      (
        "killed halfway through writing its records to the MAT",
        "torn-trail-write:\(Int.random(in: 2...4, using: &rng))"
      ),
    ]
    for (i, (what, failpoint)) in rounds.enumerated() {
      try writerKill(what, failpoint: failpoint, alsoKillBackup: i == 1)
      try reopen()
    }
  }

  /// A writer commits transfers until a random number are acknowledged (or it dies at
  /// `failpoint`), then is SIGKILLed.
  func writerKill(_ what: String, failpoint: String?, alsoKillBackup: Bool) throws {
    let killAfter = Int.random(in: 300...1500, using: &rng)
    heading("a writer process commits transfers, one transaction a line; \(what)")
    let writer = try startWriter(failpoint: failpoint)
    feed(writer, untilAcknowledged: killAfter)
    let diedByItself = writer.child.exited
    if alsoKillBackup { try backupKill() }
    kill(writer)
    let status = try NodeStatus.read(node: primary)
    Output.line(
      "   \(diedByItself ? "it died at its failpoint" : "SIGKILL") with \(acknowledged.count) transactions acknowledged so far (last txid \(acknowledged.values.max() ?? 0))"
    )
    Output.line(
      "   trail ends at \(status.trailEnd) in \(status.trailFiles) files; the database holds up to \(status.databaseEnd)"
        + (status.tornTail.map { "; torn tail at \($0)" } ?? ""))
  }

  /// The backup daemon SIGKILLed mid-stream and started again.
  func backupKill() throws {
    backupDaemon?.kill()
    Output.line("   the backup daemon is SIGKILLed too, mid-stream, and started again")
    try startBackupDaemon()
  }

  /// Reopens the primary: recovery replays what the database lacks and cuts a torn tail.
  func reopen() throws {
    heading("reopen the node: recovery replays what the database lacks and cuts a torn tail")
    let reopened = try AuditedDatabase.open(node: primary)
    let r = reopened.recovery
    Output.line(
      "   replayed \(r.replayed) transaction(s); "
        + (r.tornTail.map { "cut a torn tail of \(r.tornBytes) bytes at \($0)" } ?? "no torn tail")
        + "; trail end \(r.end)")
    reopened.close()
  }

  // MARK: - Checks

  /// Every acknowledged transfer is in the primary's database, the balances add up, and
  /// the database equals a fresh replay of its trail; returns its checksum.
  func verifyAcked() throws -> DatabaseChecksum {
    heading("check what was promised")
    let conn = try Connection(path: primaryDatabase, mode: .readOnly)
    let present = Set(
      try conn.query("SELECT id FROM ledger").compactMap { row -> Int? in
        if case .integer(let v) = row[0] { return Int(v) }
        return nil
      })
    check(
      acknowledged.keys.allSatisfy(present.contains),
      "every acknowledged transaction is in the database (\(acknowledged.count))")
    try checkBalances(conn, "balances add up")
    let primarySum = try DatabaseChecksum.compute(conn)
    let (count, end) = try Replay.rebuild(trail: NodeLayout(root: primary).mat, into: root + "/replayed.sqlite")
    let replaySum = try DatabaseChecksum.current(databaseAt: root + "/replayed.sqlite")
    check(primarySum == replaySum, "database equals a fresh replay of its \(count) audited transactions to \(end)")
    Output.line("   checksum \(primarySum.checksum)")
    return primarySum
  }

  /// Waits until the backup has applied the primary's whole trail and compares their
  /// content; returns what the backup applied.
  func verifyBackup(_ primarySum: DatabaseChecksum) throws -> MATPosition? {
    heading("the backup: wait until it has applied the primary's whole trail, then compare")
    try waitUntilApplied(by: backup, of: primary, timeout: 120)
    let b = try BackupStatus.read(node: backup)
    Output.line(
      "   applied \(b.applied.map(\.description) ?? "-"), acked \(b.acked.map(\.description) ?? "-"), link \(b.connected ? "connected" : "down"), updater rtd \(b.rtdUpdater) s"
    )
    let backupSum = try DatabaseChecksum.current(databaseAt: backupDatabase)
    check(backupSum == primarySum, "the backup holds exactly the primary's content (checksum \(backupSum.checksum))")
    check(b.updaterStopped == nil, "the backup's updater applied every transaction once, without conflict")
    return b.applied
  }

  // MARK: - Disaster and takeover

  /// With the backup stopped, the primary commits transfers that are never shipped, then
  /// its daemon is SIGKILLed; returns their txids.
  func disasterUnshipped() throws -> [TransactionID] {
    heading("disaster: the link goes down (the backup daemon stops) while the primary commits more transfers")
    backupDaemon?.stop()
    let writes = try AuditedDatabase.open(node: primary)
    var lost: [TransactionID] = []
    for _ in 0..<25 {
      let t = nextTransfer()
      let commit = try writes.write { tx in
        try tx.execute(
          "INSERT INTO ledger VALUES (?, ?, ?)",
          [.integer(Int64(t.id)), .integer(Int64(t.account)), .integer(Int64(t.amount))])
        try tx.execute(
          "UPDATE accounts SET balance = balance + ? WHERE id = ?",
          [.integer(Int64(t.amount)), .integer(Int64(t.account))])
      }.commit!
      lost.append(commit.txid)
    }
    writes.close()
    Output.line(
      "   \(lost.count) transactions committed and durable on the primary, never shipped (txids \(lost.first!)…\(lost.last!))"
    )
    primaryDaemon?.kill()
    Output.line("   the primary's daemon is SIGKILLed: the primary is lost")
    return lost
  }

  /// Takeover on the backup: its 888 position is what it applied, its content what the
  /// old primary had shipped, and a second run reports the same.
  func takeover(applied: MATPosition?, primarySum: DatabaseChecksum) throws -> TakeoverResult {
    heading("takeover on the backup")
    let takeover = try Takeover.run(node: backup, force: false)
    Output.line("   735 safe MAT position \(takeover.safe)")
    Output.line(
      "   888 file-recovery position \(takeover.fileRecovery.map(\.description) ?? "none (858: \(takeover.reason ?? ""))")"
    )
    Output.line(
      "   generation \(takeover.generation), its own MAT from \(takeover.matStart), checksum \(takeover.checksum)")
    check(
      takeover.fileRecovery == applied,
      "the 888 position is the end of the last transaction the backup applied (\(applied.map(\.description) ?? "-"))"
    )
    check(takeover.checksum == primarySum.checksum, "the new primary holds exactly what the old one had shipped")
    check(try Takeover.run(node: backup, force: false) == takeover, "takeover run again reports the same")
    return takeover
  }

  /// The backup's daemon starts again as the new primary and takes 10 transfers.
  func newPrimaryTakesWrites() throws {
    heading("the new primary serves on 127.0.0.1:\(backupPort) and takes writes")
    try startBackupDaemon()
    try DaemonProcess.waitUntilListening(port: backupPort)
    let newPrimary = try AuditedDatabase.open(node: backup)
    for i in 1...10 {
      _ = try newPrimary.write { tx in
        try tx.execute("INSERT INTO ledger VALUES (?, 1, ?)", [.integer(Int64(1_000_000 + i)), .integer(Int64(i))])
        try tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = 1", [.integer(Int64(i))])
      }
    }
    newPrimary.close()
    Output.line("   10 transfers committed on the new primary")
  }

  // MARK: - Back to two nodes

  /// File recovery of the old primary to the takeover's 888 position: it undoes exactly
  /// the `lost` transactions, and ends at the takeover's checksum.
  func recover(to takeover: TakeoverResult, lost: [TransactionID]) throws {
    heading("file recovery of the old primary to the 888 position")
    let recovery = try FileRecovery.run(
      node: primary, to: takeover.fileRecovery ?? takeover.safe, report: root + "/lost-transactions.jsonl")
    let report = try String(contentsOfFile: recovery.report, encoding: .utf8).split(separator: "\n")
    Output.line("   undid \(recovery.undone) transactions; the lost-transactions report \(recovery.report) begins:")
    for entry in report.prefix(2) { Output.line("     \(entry.prefix(150))…") }
    let reported = report.compactMap { line -> TransactionID? in
      guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let txid = object["txid"] as? Int
      else { return nil }
      return TransactionID(UInt64(txid))
    }
    check(reported == lost, "the report lists exactly the \(lost.count) unshipped transactions, in order")
    check(
      recovery.checksum == takeover.checksum,
      "the recovered checksum equals the 888 event's (\(recovery.checksum.prefix(16))…)")
  }

  /// The old primary follows the new one and catches up; returns the new primary's checksum.
  func follow() throws -> String {
    heading("the old primary follows the new one")
    let follow = try Follow.run(
      node: primary, primary: "127.0.0.1:\(backupPort)", secretFile: backup + "/secret.key", fullCopy: false)
    Output.line(
      "   its database is proven to be the base of generation \(follow.generation); streaming from \(follow.from.map(\.description) ?? "-")"
    )
    try startPrimaryDaemon()
    try waitUntilApplied(by: primary, of: backup, timeout: 60)
    let followerSum = try DatabaseChecksum.current(databaseAt: primaryDatabase).checksum
    let newPrimarySum = try DatabaseChecksum.current(databaseAt: backupDatabase).checksum
    check(followerSum == newPrimarySum, "the old primary caught up with the new one: equal checksums")
    return newPrimarySum
  }

  /// A planned switchover puts the original primary back; a write on it reaches the backup.
  func switchover(newPrimarySum: String) throws {
    heading("planned switchover back: the original primary becomes the primary again")
    let switchover = try Switchover.run(node: backup, timeout: 30)
    Output.line(
      "   switchover record at \(switchover.record); generation \(switchover.generation) served by \(switchover.newPrimaryAddress)"
    )
    let back = try AuditedDatabase.open(node: primary)
    _ = try back.write { tx in
      try tx.execute("INSERT INTO ledger VALUES (2000000, 2, 5)")
      try tx.execute("UPDATE accounts SET balance = balance + 5 WHERE id = 2")
    }
    back.close()
    try waitUntilApplied(by: backup, of: primary, timeout: 60)
    let finalPrimary = try DatabaseChecksum.current(databaseAt: primaryDatabase).checksum
    let finalBackup = try DatabaseChecksum.current(databaseAt: backupDatabase).checksum
    check(
      switchover.checksum == newPrimarySum,
      "nothing was lost in the switchover (checksum at hand-over equals the new primary's)")
    check(
      finalPrimary == finalBackup,
      "roles are back and the backup follows: equal checksums \(finalPrimary.prefix(16))…")
    try checkBalances(try Connection(path: primaryDatabase, mode: .readOnly), "balances still add up")
  }
}
