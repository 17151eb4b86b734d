import ArgumentParser
import AuditTrail
import Backup
import Foundation
import Link
import Node
import Primary
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
      of its audit trail, and that the backup holds exactly the same content. Exits non-zero if
      any check fails. (Takeover and file recovery join the demo as they are built.)
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
      var primaryDaemon = try DaemonProcess(node: node, log: root + "/primary.log")
      try BackupSetup.initBackup(
        .init(
          node: backup, database: root + "/backup.sqlite", primary: "127.0.0.1:\(port)",
          secretFile: node + "/secret.key", retentionSeconds: 0))
      var backupDaemon = try DaemonProcess(node: backup, log: root + "/backup.log")
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
        let writer = try ChildWriter(executable: ChildWriter.selfExecutable(), node: node, failpoint: failpoint)
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
          backupDaemon = try DaemonProcess(node: backup, log: root + "/backup.log")
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
      let replaySum = try DatabaseChecksum.compute(Connection(path: root + "/replayed.sqlite", mode: .readOnly))
      check(primarySum == replaySum, "database equals a fresh replay of its \(count) audited transactions to \(end)")
      Output.line("   checksum \(primarySum.checksum)")
      Output.line("9. the backup: wait until it has applied the primary's whole trail, then compare")
      let primaryEnd = try NodeStatus.read(node: node).trailEnd
      _ = try AppliedWait.wait(node: backup, for: primaryEnd, timeout: 120)
      let b = try BackupStatus.read(node: backup)
      Output.line(
        "   applied \(b.applied.map(\.description) ?? "-"), acked \(b.acked.map(\.description) ?? "-"), link \(b.connected ? "connected" : "down"), updater rtd \(b.rtdUpdater) s"
      )
      let backupSum = try DatabaseChecksum.compute(Connection(path: root + "/backup.sqlite", mode: .readOnly))
      check(backupSum == primarySum, "the backup holds exactly the primary's content (checksum \(backupSum.checksum))")
      check(b.updaterStopped == nil, "the backup's updater applied every transaction once, without conflict")
      _ = primaryDaemon
      Output.line(failures == 0 ? "demo passed" : "demo FAILED: \(failures) check(s)")
      if failures > 0 { throw ExitCode(1) }
    }
  }
}
