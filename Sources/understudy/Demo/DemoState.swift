// What a demo's steps share — a primary and a backup on 127.0.0.1 in one directory, their
// daemons, the seeded random choices, the transfers a writer reported durable, the step
// number and the tally of checks — and the building blocks a demo is made of: run and
// kill a writer, wait for a node to apply another's trail, check the balances.
// DemoSteps.swift tells `understudy demo`'s story with them.

import Backup
import Foundation
import Harness
import Link
import Node
import Primary
import SQLiteSupport

final class DemoState {
  let root: String
  var rng: SeededGenerator
  /// The original primary: node directory, database, listen port.
  let primary: String
  var primaryDatabase: String { root + "/bank.sqlite" }
  let port: UInt16
  /// The backup: node directory, database, listen port (it can become the primary).
  let backup: String
  var backupDatabase: String { root + "/backup.sqlite" }
  var backupPort: UInt16 = 0
  var primaryDaemon: DaemonProcess?
  var backupDaemon: DaemonProcess?
  /// Ledger id -> txid of every transfer a writer acknowledged.
  var acknowledged: [Int: Int64] = [:]
  /// The last ledger id used.
  var line = 0
  private(set) var step = 0
  private(set) var failures = 0

  init(root: String, seed: UInt64) {
    self.root = root
    rng = SeededGenerator(seed: seed)
    primary = root + "/primary"
    backup = root + "/backup"
    port = Listener.ephemeralPort()
  }

  /// Prints the next step's numbered heading.
  func heading(_ text: String) {
    step += 1
    Output.line("\(step). \(text)")
  }

  func check(_ ok: Bool, _ what: String) {
    Output.line("   \(ok ? "ok  " : "FAIL") \(what)")
    if !ok { failures += 1 }
  }

  // MARK: - Daemons

  /// Each daemon's output goes to `NODE.log` beside its node.
  func startPrimaryDaemon() throws { primaryDaemon = try DaemonProcess(executable: .current, node: primary) }
  func startBackupDaemon() throws { backupDaemon = try DaemonProcess(executable: .current, node: backup) }

  /// Stops both daemons cleanly, the backup first.
  func stopDaemons() {
    backupDaemon?.stop()
    primaryDaemon?.stop()
  }

  /// Waits until `follower` has applied `leader`'s whole trail.
  func waitUntilApplied(by follower: String, of leader: String, timeout: Double) throws {
    _ = try AppliedWait.wait(node: follower, for: try NodeStatus.read(node: leader).trailEnd, timeout: timeout)
  }

  // MARK: - Transfers

  /// The next transfer: a new ledger id, a random account (1–20) and amount (±50).
  func nextTransfer() -> (id: Int, account: Int, amount: Int) {
    line += 1
    let account = Int.random(in: 1...20, using: &rng)
    let amount = Int.random(in: -50...50, using: &rng)
    return (line, account, amount)
  }

  /// Checks that the 20 accounts' 1,000 each plus the ledger's movements is what they hold.
  func checkBalances(_ db: SQLiteSupport.Connection, _ what: String) throws {
    let total = try db.scalarInt("SELECT sum(balance) FROM accounts") ?? 0
    let moved = try db.scalarInt("SELECT coalesce(sum(amount), 0) FROM ledger") ?? 0
    check(total == 20_000 + moved, "\(what): 20000 + ledger \(moved) = \(total)")
  }

  // MARK: - A writer process

  /// `sql --each-line` on the primary. It numbers its input lines from 1; `firstLine` maps
  /// them back to ledger ids.
  struct Writer {
    let child: ChildWriter
    let firstLine: Int
  }

  func startWriter(failpoint: String?) throws -> Writer {
    Writer(child: try ChildWriter(executable: .current, node: primary, failpoint: failpoint), firstLine: line)
  }

  /// Sends transfers, 50 lines at a time, until `count` are acknowledged or the writer died.
  func feed(_ writer: Writer, untilAcknowledged count: Int) {
    var acked = 0
    while acked < count && !writer.child.exited {
      for _ in 0..<50 {
        let t = nextTransfer()
        writer.child.send(
          "INSERT INTO ledger VALUES (\(t.id), \(t.account), \(t.amount)); UPDATE accounts SET balance = balance + \(t.amount) WHERE id = \(t.account)"
        )
      }
      while let ack = writer.child.pollAck() {
        acknowledged[writer.firstLine + ack.line] = ack.txid
        acked += 1
      }
    }
  }

  /// SIGKILLs the writer (if it has not died by itself) and records every ack it printed.
  func kill(_ writer: Writer) {
    writer.child.kill()
    for ack in writer.child.drainAcks() { acknowledged[writer.firstLine + ack.line] = ack.txid }
  }
}
