// `understudy demo --mimix`: the MIMIX cycle as an operator types it, on two servers on
// loopback (prod and dr, each with its own home): setup, failover with production lost
// while transactions are unshipped, writes on the recovery server, resync, failback. The
// pair, the writer, the disaster and the checks are the plain demo's steps; every MIMIX
// command runs as its own process, printed with what it said.

import Apply
import AuditTrail
import Foundation
import Harness
import MIMIX
import Node
import Primary
import SQLiteSupport

extension DemoState {
  var productionHome: String { root + "/prod-home" }
  var recoveryHome: String { root + "/dr-home" }

  func runMIMIX() throws {
    defer {
      for node in [primary, backup] { _ = try? DaemonLock.stopIfRunning(NodeLayout(root: node)) }
    }
    try createPrimary()
    try startBackup()
    try registerContext()
    try mimix("setup on both servers", [("prod", productionHome), ("dr", recoveryHome)], ["-F", "2", "setup"])

    heading("production works: a writer process commits transfers, the recovery server applies them")
    let writer = try startWriter(failpoint: nil)
    feed(writer, untilAcknowledged: 300)
    kill(writer)
    try waitUntilApplied(by: backup, of: primary, timeout: 60)
    let shipped = try DatabaseChecksum.current(databaseAt: backupDatabase).checksum
    Output.line("   \(acknowledged.count) transfers acknowledged and applied on dr; checksum \(shipped)")
    try validateReplica(shipped: shipped)
    let lost = try disasterUnshipped()

    let failover = try mimix("failover on the recovery server", [("dr", recoveryHome)], ["failover"])
    let takeover = (failover.first?["details"] as? [String: Any])?["takeover"] as? [String: Any]
    check(
      (takeover?["fileRecovery"] as? [String: Any])?["available"] as? Bool == true,
      "the takeover reported 888: production can be recovered, not copied")
    check(takeover?["checksum"] as? String == shipped, "dr holds exactly what production had shipped")

    heading("the application runs on dr: 10 transfers")
    try commitTransfers(on: backup, count: 10)

    let resync = try mimix(
      "resync, on production first, then on dr", [("prod", productionHome), ("dr", recoveryHome)], ["resync"])
    let decided = resync.first?["details"] as? [String: Any]
    check(decided?["fullCopy"] as? Bool == false, "resync was file recovery to the 888 position, not a full copy")
    let recover = (resync.first?["steps"] as? [[String: Any]])?.first {
      ($0["command"] as? String)?.contains("recover --node") == true
    }
    check(
      (recover?["details"] as? [String: Any])?["undone"] as? Int == lost.count,
      "it undid exactly the \(lost.count) transactions dr never received, listed in the lost-transactions report")
    let inSync = try sameChecksum()
    check(inSync, "production applied dr's 10 transfers: both checksums equal")

    _ = try mimix(
      "failback, on dr first, then on production", [("dr", recoveryHome), ("prod", productionHome)], ["failback"])
    check(try NodeLayout(root: primary).loadConfig().role == .primary, "prod is production again")
    check(try NodeLayout(root: backup).loadConfig().role == .backup, "dr is its recovery server again")
    try commitTransfers(on: primary, count: 5)
    try waitUntilApplied(by: backup, of: primary, timeout: 60)
    check(try sameChecksum(), "5 more transfers on prod reach dr; both checksums equal")
    let conn = try Connection(path: primaryDatabase, mode: .readOnly)
    try checkBalances(conn, "balances add up on prod")
  }

  /// MIMIX's step before a failover: a snapshot of the replica, checked by "the
  /// application" (the balances), then released.
  private func validateReplica(shipped: String) throws {
    heading("validate the replica before failing over: a snapshot on dr, checked, released")
    let command = ["scrt_ra", "-C", "1", "-X"]
    Output.line("   dr$ \(command.joined(separator: " "))")
    let outcome = try Executable.current.run(command + ["--json", "--home", recoveryHome])
    let snapshot = (try? JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8))) as? [String: Any] ?? [:]
    check(outcome.status == 0, "scrt_ra -X on dr succeeded\(outcome.status == 0 ? "" : ": " + outcome.stderr)")
    guard let path = snapshot["path"] as? String else { return }
    let at = (snapshot["position"] as? [String: Any]).map { "\($0["sno"] ?? "?"):\($0["rba"] ?? "?")" } ?? "?"
    Output.line("      snapshot \(path) at \(at), checksum \(snapshot["checksum"] ?? "")")
    check(snapshot["checksum"] as? String == shipped, "the snapshot holds what dr holds")
    try checkBalances(try Connection(path: path, mode: .readOnly), "balances add up in the snapshot")
    let released = try Executable.current.run(["scrt_ra", "-C", "1", "-W", "--home", recoveryHome])
    check(released.status == 0, "scrt_ra -W released it")
  }

  /// Registers the pair's nodes as context 1 on two servers, and restarts the backup's
  /// daemon so that production learns the recovery server's name.
  private func registerContext() throws {
    heading(
      "register the nodes as MIMIX context 1: server prod (home \(productionHome)), server dr (home \(recoveryHome))")
    _ = try ServerHome(path: productionHome).register(
      id: ContextID(1), node: primary, server: "prod", role: .production, production: nil)
    _ = try ServerHome(path: recoveryHome).register(
      id: ContextID(1), node: backup, server: "dr", role: .recovery, production: "127.0.0.1:\(port)")
    backupDaemon?.stop()
    try startBackupDaemon()
    let deadline = Clock.monotonicSeconds() + 20
    while try !Fencing.knownBackups(NodeLayout(root: primary)).contains(where: { $0.server == "dr" }) {
      guard Clock.monotonicSeconds() < deadline else {
        throw MIMIXError.noRecoveryServer(context: ContextID(1), unnamed: [])
      }
      usleep(50_000)
    }
    check(true, "prod knows its recovery server dr")
  }

  /// Runs `rtdr -C 1 -q ARGS` on each server in turn, as its own process, and prints
  /// what each said; returns their JSON documents.
  @discardableResult
  private func mimix(_ what: String, _ servers: [(String, String)], _ arguments: [String]) throws -> [[String: Any]] {
    heading(what)
    var documents: [[String: Any]] = []
    for (name, home) in servers {
      let command = ["rtdr", "-C", "1", "-q"] + arguments
      Output.line("   \(name)$ \(command.joined(separator: " "))")
      let outcome = try Executable.current.run(command + ["--json", "--home", home])
      let document = (try? JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8))) as? [String: Any] ?? [:]
      for step in document["steps"] as? [[String: Any]] ?? [] {
        Output.line("      \(step["result"] as? String ?? "")")
      }
      Output.line("      \(document["result"] as? String ?? outcome.stderr)")
      check(outcome.status == 0, "rtdr \(arguments.last ?? "") on \(name) succeeded")
      documents.append(document)
    }
    return documents
  }

  private func sameChecksum() throws -> Bool {
    try DatabaseChecksum.current(databaseAt: primaryDatabase) == DatabaseChecksum.current(databaseAt: backupDatabase)
  }

  /// Transfers on account 1, committed on `node` (whichever is primary now).
  func commitTransfers(on node: String, count: Int) throws {
    let db = try AuditedDatabase.open(node: node)
    defer { db.close() }
    for i in 1...count {
      line += 1
      _ = try db.write { tx in
        try tx.execute("INSERT INTO ledger VALUES (?, 1, ?)", [.integer(Int64(2_000_000 + line)), .integer(Int64(i))])
        try tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = 1", [.integer(Int64(i))])
      }
    }
    Output.line("   \(count) transfers committed on \(node)")
  }
}
