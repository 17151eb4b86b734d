import ArgumentParser
import AuditTrail
import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import Procedures
import SQLiteSupport

struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the story so far on this machine and check every step.",
    discussion: """
      Creates a primary node and a backup node on 127.0.0.1 in a temporary directory and runs
      both daemons (the backup copies the primary's database, then streams). A writer process
      commits transfers and is killed with SIGKILL in the middle of its work, three times; the
      backup daemon is SIGKILLed and restarted too. After each writer kill the node is reopened
      (recovery replays the audit trail and cuts a torn tail). Then it checks that every
      transaction the writer reported durable is there, that the database equals a fresh replay
      of its audit trail, and that the backup holds exactly the same content.

      Then the disaster: with the link down, the primary commits transfers that are never
      shipped, and its daemon is SIGKILLed. The backup takes over (735, 888), takes writes as
      the new primary, the old primary is recovered to the 888 position (listing every
      transaction it undid), follows the new primary, and a planned switchover puts the roles
      back. Checksums are compared at every hand-over. Exits non-zero if any check fails.
      """)

  @Option(help: "Seed for the moment of the kill (default: random; printed).")
  var seed: UInt64?
  @Option(help: "Keep the demo's files here instead of a temporary directory.")
  var dir: String?

  func run() throws {
    try reporting(json: false) {
      let seed = seed ?? UInt64.random(in: 1...999_999)
      var rng = SeededGenerator(seed: seed)
      let root = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-demo")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
      let node = root + "/primary"
      var failures = 0
      func check(_ ok: Bool, _ what: String) {
        Output.line("   \(ok ? "ok  " : "FAIL") \(what)")
        if !ok { failures += 1 }
      }

      Output.line("Understudy demo (seed \(seed)) in \(root)")
      let port = Listener.ephemeralPort()
      Output.line("1. create a primary node listening on 127.0.0.1:\(port), with small (256 KiB) audit trail files")
      try PrimarySetup.initPrimary(
        .init(node: node, database: root + "/bank.sqlite", listen: "127.0.0.1:\(port)", trailFileSize: 256 << 10))
      let db = try AuditedDatabase.open(node: node)
      _ = try db.write { tx in
        try tx.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)")
        for i in 1...20 {
          try tx.execute("INSERT INTO accounts VALUES (?, ?, 1000)", [.integer(Int64(i)), .text("owner \(i)")])
        }
        try tx.execute("CREATE TABLE ledger(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, amount INTEGER NOT NULL)")
      }
      db.close()
      let backup = root + "/backup"
      Output.line("   start its daemon; create a backup node and start it: it copies the database, then streams")
      var primaryDaemon = try DaemonProcess(executable: .current, node: node, log: root + "/primary.log")
      let backupPort = Listener.ephemeralPort()
      try BackupSetup.initBackup(
        .init(
          node: backup, database: root + "/backup.sqlite", primary: "127.0.0.1:\(port)",
          secretFile: node + "/secret.key", listen: "127.0.0.1:\(backupPort)", retentionSeconds: 0))
      var backupDaemon = try DaemonProcess(executable: .current, node: backup, log: root + "/backup.log")
      defer {
        backupDaemon.stop()
        primaryDaemon.stop()
      }

      var acknowledged: [Int: Int64] = [:]  // ledger id -> txid
      var line = 0
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
        let step = 2 + i * 2
        let killAfter = Int.random(in: 300...1500, using: &rng)
        Output.line("\(step). a writer process commits transfers, one transaction a line; \(what)")
        let writer = try ChildWriter(executable: .current, node: node, failpoint: failpoint)
        let firstLine = line  // the child numbers its input lines from 1
        var acked = 0
        while acked < killAfter && !writer.exited {
          for _ in 0..<50 {
            line += 1
            let account = Int.random(in: 1...20, using: &rng)
            let amount = Int.random(in: -50...50, using: &rng)
            writer.send(
              "INSERT INTO ledger VALUES (\(line), \(account), \(amount)); UPDATE accounts SET balance = balance + \(amount) WHERE id = \(account)"
            )
          }
          while let ack = writer.pollAck() {
            acknowledged[firstLine + ack.line] = ack.txid
            acked += 1
          }
        }
        let diedByItself = writer.exited
        if i == 1 {
          backupDaemon.kill()
          Output.line("   the backup daemon is SIGKILLed too, mid-stream, and started again")
          backupDaemon = try DaemonProcess(executable: .current, node: backup, log: root + "/backup.log")
        }
        writer.kill()
        for ack in writer.drainAcks() { acknowledged[firstLine + ack.line] = ack.txid }
        let status = try NodeStatus.read(node: node)
        Output.line(
          "   \(diedByItself ? "it died at its failpoint" : "SIGKILL") with \(acknowledged.count) transactions acknowledged so far (last txid \(acknowledged.values.max() ?? 0))"
        )
        Output.line(
          "   trail ends at \(status.trailEnd) in \(status.trailFiles) files; the database holds up to \(status.databaseEnd)"
            + (status.tornTail.map { "; torn tail at \($0)" } ?? ""))
        Output.line("\(step + 1). reopen the node: recovery replays what the database lacks and cuts a torn tail")
        let reopened = try AuditedDatabase.open(node: node)
        let r = reopened.recovery
        Output.line(
          "   replayed \(r.replayed) transaction(s); "
            + (r.tornTail.map { "cut a torn tail of \(r.tornBytes) bytes at \($0)" } ?? "no torn tail")
            + "; trail end \(r.end)")
        reopened.close()
      }

      Output.line("8. check what was promised")
      let conn = try Connection(path: root + "/bank.sqlite", mode: .readOnly)
      let present = Set(
        try conn.query("SELECT id FROM ledger").compactMap { row -> Int? in
          if case .integer(let v) = row[0] { return Int(v) }
          return nil
        })
      check(
        acknowledged.keys.allSatisfy(present.contains),
        "every acknowledged transaction is in the database (\(acknowledged.count))")
      let total = try conn.scalarInt("SELECT sum(balance) FROM accounts") ?? 0
      let moved = try conn.scalarInt("SELECT coalesce(sum(amount), 0) FROM ledger") ?? 0
      check(total == 20_000 + moved, "balances add up: 20000 + ledger \(moved) = \(total)")
      let primarySum = try DatabaseChecksum.compute(conn)
      let (count, end) = try Replay.rebuild(trail: NodeLayout(root: node).mat, into: root + "/replayed.sqlite")
      let replaySum = try DatabaseChecksum.compute(databaseAt: root + "/replayed.sqlite")
      check(primarySum == replaySum, "database equals a fresh replay of its \(count) audited transactions to \(end)")
      Output.line("   checksum \(primarySum.checksum)")
      Output.line("9. the backup: wait until it has applied the primary's whole trail, then compare")
      let primaryEnd = try NodeStatus.read(node: node).trailEnd
      _ = try AppliedWait.wait(node: backup, for: primaryEnd, timeout: 120)
      let b = try BackupStatus.read(node: backup)
      Output.line(
        "   applied \(b.applied.map(\.description) ?? "-"), acked \(b.acked.map(\.description) ?? "-"), link \(b.connected ? "connected" : "down"), updater rtd \(b.rtdUpdater) s"
      )
      let backupSum = try DatabaseChecksum.compute(databaseAt: root + "/backup.sqlite")
      check(backupSum == primarySum, "the backup holds exactly the primary's content (checksum \(backupSum.checksum))")
      check(b.updaterStopped == nil, "the backup's updater applied every transaction once, without conflict")

      Output.line("10. disaster: the link goes down (the backup daemon stops) while the primary commits more transfers")
      backupDaemon.stop()
      let writes = try AuditedDatabase.open(node: node)
      var lost: [TransactionID] = []
      for _ in 0..<25 {
        line += 1
        let account = Int.random(in: 1...20, using: &rng)
        let amount = Int.random(in: -50...50, using: &rng)
        let commit = try writes.write { tx in
          try tx.execute(
            "INSERT INTO ledger VALUES (?, ?, ?)",
            [.integer(Int64(line)), .integer(Int64(account)), .integer(Int64(amount))])
          try tx.execute(
            "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            [.integer(Int64(amount)), .integer(Int64(account))])
        }.commit!
        lost.append(commit.txid)
      }
      writes.close()
      Output.line(
        "   \(lost.count) transactions committed and durable on the primary, never shipped (txids \(lost.first!)…\(lost.last!))"
      )
      primaryDaemon.kill()
      Output.line("   the primary's daemon is SIGKILLed: the primary is lost")

      Output.line("11. takeover on the backup")
      let takeover = try Takeover.run(node: backup, force: false)
      Output.line("   735 safe MAT position \(takeover.safe)")
      Output.line(
        "   888 file-recovery position \(takeover.fileRecovery.map(\.description) ?? "none (858: \(takeover.reason ?? ""))")"
      )
      Output.line(
        "   generation \(takeover.generation), its own MAT from \(takeover.matStart), checksum \(takeover.checksum)")
      check(
        takeover.fileRecovery == b.applied,
        "the 888 position is the end of the last transaction the backup applied (\(b.applied.map(\.description) ?? "-"))"
      )
      check(takeover.checksum == primarySum.checksum, "the new primary holds exactly what the old one had shipped")
      check(try Takeover.run(node: backup, force: false) == takeover, "takeover run again reports the same")

      Output.line("12. the new primary serves on 127.0.0.1:\(backupPort) and takes writes")
      backupDaemon = try DaemonProcess(executable: .current, node: backup, log: root + "/backup.log")
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

      Output.line("13. file recovery of the old primary to the 888 position")
      let recovery = try FileRecovery.run(
        node: node, to: takeover.fileRecovery ?? takeover.safe, report: root + "/lost-transactions.jsonl")
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

      Output.line("14. the old primary follows the new one")
      let follow = try Follow.run(
        node: node, primary: "127.0.0.1:\(backupPort)", secretFile: backup + "/secret.key", fullCopy: false)
      Output.line(
        "   its database is proven to be the base of generation \(follow.generation); streaming from \(follow.from.map(\.description) ?? "-")"
      )
      primaryDaemon = try DaemonProcess(executable: .current, node: node, log: root + "/primary.log")
      let newEnd = try NodeStatus.read(node: backup).trailEnd
      _ = try AppliedWait.wait(node: node, for: newEnd, timeout: 60)
      let followerSum = try DatabaseChecksum.compute(databaseAt: root + "/bank.sqlite").checksum
      let newPrimarySum = try DatabaseChecksum.compute(databaseAt: root + "/backup.sqlite")
        .checksum
      check(followerSum == newPrimarySum, "the old primary caught up with the new one: equal checksums")

      Output.line("15. planned switchover back: the original primary becomes the primary again")
      let switchover = try Switchover.run(node: backup, timeout: 30)
      Output.line(
        "   switchover record at \(switchover.record); generation \(switchover.generation) served by \(switchover.newPrimaryAddress)"
      )
      let back = try AuditedDatabase.open(node: node)
      _ = try back.write { tx in
        try tx.execute("INSERT INTO ledger VALUES (2000000, 2, 5)")
        try tx.execute("UPDATE accounts SET balance = balance + 5 WHERE id = 2")
      }
      back.close()
      _ = try AppliedWait.wait(node: backup, for: try NodeStatus.read(node: node).trailEnd, timeout: 60)
      let finalPrimary = try DatabaseChecksum.compute(databaseAt: root + "/bank.sqlite").checksum
      let finalBackup = try DatabaseChecksum.compute(databaseAt: root + "/backup.sqlite")
        .checksum
      check(
        switchover.checksum == newPrimarySum,
        "nothing was lost in the switchover (checksum at hand-over equals the new primary's)")
      check(
        finalPrimary == finalBackup,
        "roles are back and the backup follows: equal checksums \(finalPrimary.prefix(16))…")
      let money = try Connection(path: root + "/bank.sqlite", mode: .readOnly)
      let total2 = try money.scalarInt("SELECT sum(balance) FROM accounts") ?? 0
      let moved2 = try money.scalarInt("SELECT coalesce(sum(amount), 0) FROM ledger") ?? 0
      check(total2 == 20_000 + moved2, "balances still add up: 20000 + ledger \(moved2) = \(total2)")
      Output.line(failures == 0 ? "demo passed" : "demo FAILED: \(failures) check(s)")
      if failures > 0 { throw ExitCode(1) }
    }
  }
}
