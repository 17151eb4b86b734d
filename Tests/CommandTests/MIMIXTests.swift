// The MIMIX cycle (issue 13) with real processes: two servers on loopback, each with its
// own home; rtdr, rtstart, rtstop and scconfig run by their own executable names.

import Foundation
import TestSupport
import XCTest

final class MIMIXTests: XCTestCase {
  /// setup, failover with production SIGKILLed while its writer has unshipped
  /// transactions, resync with a writer on the recovery server, failback with that
  /// writer still streaming: every acknowledged write of the recovery server reaches
  /// production, what production lost is listed, and the checksums agree at each hand-over.
  func testTheWholeCycleOnTwoServersWithWritersRunningThrough() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY)"])
    try pair.setUp()
    XCTAssertEqual(try prod.command("scconfig", ["-C", "1", "-P"]).stdout.contains("clean"), true)

    // Production is lost in the middle of its writer's work: the link first, then the writer.
    let writer = try LineFeeder(["sql", "--node", prod.node, "--each-line", "--json"])
    writer.feed(lines: 20000, every: 0.002) { "INSERT INTO w VALUES (\($0))" }
    usleep(800_000)
    prod.killDaemon()
    usleep(300_000)
    kill(writer.process.processIdentifier, SIGKILL)
    let acked = writer.finish().jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }
    XCTAssertGreaterThan(acked.count, 20, "the writer committed on production")

    let failover = try dr.rtdr(["-q", "--json", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    try assertConforms(failover.json, to: "rtdr.schema.json")
    let takeover = try XCTUnwrap(
      ((failover.json as? [String: Any])?["details"] as? [String: Any])?["takeover"] as? [String: Any])
    let recovery = try XCTUnwrap(takeover["fileRecovery"] as? [String: Any])
    XCTAssertEqual(recovery["available"] as? Bool, true, "888, not 858: \(takeover)")
    let position = "\(recovery["sno"] as? Int ?? 0):\(recovery["rba"] as? Int ?? 0)"
    let kept = try dr.count("w")
    XCTAssertLessThan(kept, acked.count, "some of production's writes were never shipped")
    XCTAssertEqual(try dr.role(), "primary")
    XCTAssertEqual(
      events(dr.node).filter { $0["code"] as? Int == 888 }.last.flatMap { positionText($0, "position") }, position)
    // Run again, it reports the same.
    let again = try dr.rtdr(["-q", "--json", "failover"])
    XCTAssertEqual(again.status, 0, again.stderr)
    XCTAssertEqual(
      (((again.json as? [String: Any])?["details"] as? [String: Any])?["takeover"] as? [String: Any])?["checksum"]
        as? String, takeover["checksum"] as? String)

    // The application now runs on the recovery server, through the resync.
    try understudy(["sql", "--node", dr.node, "CREATE TABLE d(id INTEGER PRIMARY KEY)"])
    let drWriter = try LineFeeder(["sql", "--node", dr.node, "--each-line", "--json"])
    drWriter.feed(lines: 6000, every: 0.003) { "INSERT INTO d VALUES (\($0))" }

    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    try assertConforms(resync.json, to: "rtdr.schema.json")
    let resynced = try XCTUnwrap((resync.json as? [String: Any])?["details"] as? [String: Any])
    XCTAssertEqual(resynced["fullCopy"] as? Bool, false, "\(resynced)")
    XCTAssertEqual(positionText(resynced, "to"), position)
    let steps = try XCTUnwrap((resync.json as? [String: Any])?["steps"] as? [[String: Any]])
    let recover = try XCTUnwrap(steps.first { ($0["command"] as? String)?.contains("recover --node") == true })
    let recovered = try XCTUnwrap(recover["details"] as? [String: Any])
    let report = try XCTUnwrap(recovered["report"] as? String)
    let lost = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(recovered["undone"] as? Int, lost.count)
    // Every acknowledged write dr never received is listed; so may be a last one or two
    // that were durable when the writer was killed, before it printed their ack.
    XCTAssertGreaterThanOrEqual(lost.count, acked.count - kept, "every acknowledged write production lost is listed")
    XCTAssertLessThanOrEqual(lost.count, acked.count - kept + 64, "no more than the writer's last group besides")
    XCTAssertTrue((resync.json as? [String: Any])?["result"].map { "\($0)".contains("in sync") } == true)
    let atSite = try dr.rtdr(["-q", "resync"])
    XCTAssertEqual(atSite.status, 0, atSite.stderr)
    XCTAssertTrue(atSite.stdout.contains("in sync"), atSite.stdout)

    // Failback with the writer still streaming on the recovery server (-f: it waits for
    // the drain); the switchover retires the writer.
    let failback = try dr.rtdr(["-q", "-f", "--json", "failback"])
    XCTAssertEqual(failback.status, 0, failback.stderr)
    try assertConforms(failback.json, to: "rtdr.schema.json")
    let drAcked = drWriter.finish().jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }
    XCTAssertGreaterThan(drAcked.count, 10)
    let back = try prod.rtdr(["-q", "--json", "failback"])
    XCTAssertEqual(back.status, 0, back.stderr)
    try assertConforms(back.json, to: "rtdr.schema.json")
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertEqual(try dr.role(), "backup")
    XCTAssertEqual(
      try prod.count("d"), drAcked.count, "every write acknowledged on the recovery server is on production")
    XCTAssertEqual(try prod.count("w"), kept)
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
    let details = try XCTUnwrap((back.json as? [String: Any])?["details"] as? [String: Any])
    XCTAssertEqual(details["checksum"] as? String, details["switchoverChecksum"] as? String)

    // Production writes again, and the recovery server follows.
    try understudy(["sql", "--node", prod.node, "INSERT INTO d VALUES (999999)"])
    try pair.waitForReplica()
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// `understudy demo --mimix` tells the cycle from a fresh directory and checks it.
  func testTheMIMIXDemoPasses() throws {
    let outcome = try understudy(["demo", "--mimix", "--seed", String(testSeed("demo --mimix"))])
    XCTAssertEqual(outcome.status, 0, outcome.stdout.suffix(3000) + outcome.stderr)
    XCTAssertTrue(outcome.stdout.hasSuffix("demo passed\n"), outcome.stdout.suffix(500) + "")
    XCTAssertFalse(outcome.stdout.contains("FAIL"), outcome.stdout)
    XCTAssertTrue(outcome.stdout.contains("undid 25 transactions"), outcome.stdout)
  }

  /// `-n` prints the engine commands and changes nothing on either server, at every
  /// point of the cycle; `no` (or nothing) at the prompt aborts with nothing changed.
  func testDryRunAndANoAtThePromptChangeNothing() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    func assertUnchanged(
      _ what: String, on servers: [MIMIXServer]? = nil, _ body: () throws -> Void, line: UInt = #line
    ) throws {
      let watched = servers ?? [prod, dr]
      let before = try watched.map { try $0.fingerprint() }
      try body()
      let after = try watched.map { try $0.fingerprint() }
      for (a, b) in zip(before, after) {
        let changed = Set(a.keys).symmetricDifference(b.keys).union(a.keys.filter { a[$0] != b[$0] })
        XCTAssertEqual(changed.sorted(), [], "\(what) changed files", line: line)
      }
    }
    func dryRun(_ server: MIMIXServer, _ arguments: [String], mentions: String, line: UInt = #line) throws {
      let outcome = try server.rtdr(["-n"] + arguments)
      XCTAssertEqual(outcome.status, 0, outcome.stderr, line: line)
      XCTAssertTrue(outcome.stdout.contains(mentions), outcome.stdout, line: line)
    }
    // Idle daemons write nothing; the recovery server's, retrying a lost production, would.
    try prod.command("rtstop", ["-C", "1"])
    try dr.command("rtstop", ["-C", "1"])
    try assertUnchanged("setup -n") {
      try dryRun(prod, ["-F", "2", "setup"], mentions: "contexts/2.json")
      try dryRun(dr, ["-F", "2", "setup"], mentions: "contexts/2.json")
    }
    try pair.setUp()
    try pair.loseProduction(unshipped: 3)
    try assertUnchanged("failover -n and a refused prompt") {
      try dryRun(dr, ["failover"], mentions: "understudy takeover --node \(dr.node)")
      try dryRun(dr, ["-f", "failover"], mentions: "--force")
      for answer in ["no\n", "", "y\n", "YES please\n"] {
        let outcome = try dr.rtdr(["-f", "failover"], stdin: answer)
        XCTAssertNotEqual(outcome.status, 0, "answer \(answer.debugDescription)")
        XCTAssertTrue(outcome.stderr.contains("Type yes"), outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("nothing was changed"), outcome.stderr)
      }
    }
    let yes = try dr.rtdr(["failover"], stdin: "yes\n")
    XCTAssertEqual(yes.status, 0, yes.stderr)
    try assertUnchanged("resync -n") {
      try dryRun(prod, ["resync"], mentions: "understudy recover --node \(prod.node) --to-mat")
      try dryRun(dr, ["resync"], mentions: "rtstart -C 2")
      let no = try prod.rtdr(["resync"], stdin: "no\n")
      XCTAssertNotEqual(no.status, 0)
    }
    XCTAssertEqual(try prod.rtdr(["-q", "resync"]).status, 0)
    // Once production's last acknowledgement is in, nothing changes on dr while idle.
    XCTAssertTrue(
      try eventually(10) {
        let status = try understudy(["status", "--node", dr.node, "--json"]).json as? [String: Any]
        let backups = status?["backups"] as? [[String: Any]] ?? []
        return backups.count == 1 && positionText(backups[0], "applied") == positionText(status, "durableEnd")
      })
    usleep(500_000)
    // Production now streams (its runtime file changes with every heartbeat): the
    // recovery server, serving it, is the one to watch.
    try assertUnchanged("failback -n", on: [dr]) {
      try dryRun(dr, ["-f", "failback"], mentions: "understudy switchover --node \(dr.node)")
    }
  }

  /// Production's database is gone: on the acting production the context is stopped,
  /// its statemap marked dirty and started again; resync is then a full copy and says
  /// so, and the completed copy makes the statemap clean.
  func testADirtyStatemapMakesResyncAFullCopyAfterProductionsDatabaseIsDeleted() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 2)
    try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (500, 'written on dr')"])
    for suffix in ["", "-wal", "-shm"] { unlink(prod.database + suffix) }

    let notStopped = try dr.command("scconfig", ["-C", "1", "-M"])
    XCTAssertNotEqual(notStopped.status, 0)
    XCTAssertTrue(notStopped.stderr.contains("rtstop -C 1 -F"), notStopped.stderr)
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1", "-F"]).status, 0)
    let marked = try dr.command("scconfig", ["-C", "1", "-M", "--json"])
    XCTAssertEqual(marked.status, 0, marked.stderr)
    try assertConforms(marked.json, to: "scconfig.schema.json")
    XCTAssertEqual((marked.json as? [String: Any])?["dirty"] as? Bool, true)
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    XCTAssertTrue(try dr.command("scconfig", ["-C", "1", "-P"]).stdout.contains("DIRTY"), "survives a restart")

    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    let details = try XCTUnwrap((resync.json as? [String: Any])?["details"] as? [String: Any])
    XCTAssertEqual(details["fullCopy"] as? Bool, true)
    XCTAssertTrue((details["why"] as? String)?.contains("statemap is dirty") == true, "\(details)")
    XCTAssertTrue(try eventually(10) { try dr.command("scconfig", ["-C", "1", "-P"]).stdout.contains("clean") })
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
    XCTAssertEqual(try prod.count("t"), try dr.count("t"))
    XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0)
    XCTAssertEqual(try prod.rtdr(["-q", "failback"]).status, 0)
    XCTAssertEqual(try prod.role(), "primary")
  }

  /// The recovery server skipped a transaction (`resolve --skip` after an updater
  /// conflict), so its takeover reports 858: resync is a full copy and says why.
  func testResyncAfterAn858IsAFullCopyThatSaysWhy() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    try writeBehindReplication(dr.database, "UPDATE t SET v = 'changed behind replication' WHERE id = 2")
    let update = try understudy(["sql", "--node", prod.node, "--json", "UPDATE t SET v = 'new' WHERE id = 2"])
    let txid = try XCTUnwrap((update.json as? [String: Any])?["txid"] as? Int, update.stdout + update.stderr)
    XCTAssertTrue(eventually(10) { events(dr.node).contains { $0["code"] as? Int == 9030 } })
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1"]).status, 0)
    let resolved = try understudy(["resolve", "--node", dr.node, "--skip", String(txid)])
    XCTAssertEqual(resolved.status, 0, resolved.stderr)
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    try pair.waitForReplica()
    try pair.loseProduction(unshipped: 1)

    let failover = try dr.rtdr(["-q", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    XCTAssertTrue(failover.stdout.contains("858"), failover.stdout)
    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    let details = try XCTUnwrap((resync.json as? [String: Any])?["details"] as? [String: Any])
    XCTAssertEqual(details["fullCopy"] as? Bool, true)
    XCTAssertTrue((details["why"] as? String)?.contains("858") == true, "\(details)")
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// Production with two recovery servers (fan-out): `-s` chooses the second, an unknown
  /// name is refused with both names, the first is refused as the failover site, and the
  /// cycle runs with the chosen one. The other recovery server follows the new production
  /// by itself, without a copy (it holds exactly the new generation's base), and after
  /// the failback follows production again.
  func testFanOutWithTheFailoverSiteChosenBySetupAndTheOtherFollowingByItself() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr2 = try pair.addRecoveryServer(self, name: "dr2")
    let unknown = try prod.rtdr(["-q", "-F", "2", "-s", "dr3", "setup"])
    XCTAssertTrue(unknown.stderr.contains("configured: dr, dr2"), unknown.stderr)
    for server in [prod, dr, dr2] {
      let setup = try server.rtdr(["-q", "-F", "2", "-s", "dr2", "setup"])
      XCTAssertEqual(setup.status, 0, "\(server.name): \(setup.stderr)")
    }
    try pair.loseProduction(unshipped: 2)
    let wrongSite = try dr.rtdr(["-q", "failover"])
    XCTAssertEqual(wrongSite.status, 1)
    XCTAssertTrue(wrongSite.stderr.contains("dr2 is"), wrongSite.stderr)
    XCTAssertEqual(try dr.role(), "backup")
    let copiesBefore = dr.copies
    let failover = try dr2.rtdr(["-q", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    XCTAssertTrue(failover.stdout.contains("dr told"), failover.stdout)

    XCTAssertTrue(try eventually(20) { try dr.follows(dr2) }, "dr follows dr2 by itself: \(events(dr.node).suffix(4))")
    XCTAssertEqual(dr.copies, copiesBefore, "without a copy")
    try understudy(["sql", "--node", dr2.node, "INSERT INTO t VALUES (700, 'on dr2')"])
    try dr.catchesUp(with: dr2)

    let resync = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    XCTAssertTrue(resync.stdout.contains("from dr2"), resync.stdout)
    XCTAssertEqual(try prod.checksum(), try dr2.checksum())
    XCTAssertEqual(try dr2.rtdr(["-q", "-f", "failback"]).status, 0)
    let back = try prod.rtdr(["-q", "failback"])
    XCTAssertEqual(back.status, 0, back.stderr)
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertEqual(try dr2.role(), "backup")
    XCTAssertTrue(try eventually(20) { try dr.follows(prod) }, "dr follows prod again: \(events(dr.node).suffix(4))")
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (701, 'back on prod')"])
    try dr.catchesUp(with: prod)
    try dr2.catchesUp(with: prod)
    XCTAssertEqual(dr.copies, copiesBefore, "and again without a copy")
  }

  /// The other recovery server was down while production committed more, so it holds
  /// less than the new production: the new production sends it the missing records from
  /// its image trail, and it follows without a copy.
  func testARecoveryServerThatHoldsLessCatchesUpFromTheNewProduction() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr2 = try pair.addFailoverSite(self)
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1"]).status, 0)
    for i in 0..<3 {
      try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (\(800 + i), 'dr missed it')"])
    }
    let end = try XCTUnwrap(positionText(try understudy(["status", "--node", prod.node, "--json"]).json, "durableEnd"))
    XCTAssertEqual(try understudy(["wait", "--node", dr2.node, "--applied", end, "--timeout", "30"]).status, 0)
    prod.killDaemon()
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    let copies = dr.copies

    let failover = try dr2.rtdr(["-q", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    XCTAssertTrue(try eventually(20) { try dr.follows(dr2) }, "dr follows dr2: \(events(dr.node).suffix(4))")
    XCTAssertEqual(dr.copies, copies, "without a copy")
    try understudy(["sql", "--node", dr2.node, "INSERT INTO t VALUES (900, 'on dr2')"])
    try dr.catchesUp(with: dr2)
    XCTAssertEqual(try dr.count("t"), try dr2.count("t"))
  }

  /// The other recovery server's daemon is SIGKILLed right after its database was tied
  /// to the new production's MAT, before its config said so: its next start finishes the
  /// follow (the hint is kept until acted on), without a copy and applying nothing old.
  func testAFollowKilledAfterTheRebaseFinishesAtTheNextStart() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr2 = try pair.addFailoverSite(self)
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1"]).status, 0)
    let armed = try mimix(
      "rtstart", ["-C", "1", "--home", dr.home], environment: ["UNDERSTUDY_FAILPOINT": "follow-rebased:1"])
    XCTAssertEqual(armed.status, 0, armed.stderr)
    try pair.loseProduction(unshipped: 0)
    let copies = dr.copies
    XCTAssertEqual(try dr2.rtdr(["-q", "failover"]).status, 0)
    XCTAssertTrue(try eventually(20) { dr.daemonPid == nil }, "the failpoint killed dr's daemon at the rebase")
    XCTAssertEqual(
      try understudy(["status", "--node", dr.node, "--json"]).json.flatMap {
        ($0 as? [String: Any])?["primary"] as? String
      }, prod.address, "killed before its config changed")
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    XCTAssertTrue(
      try eventually(20) { try dr.follows(dr2) }, "dr follows dr2 after the restart: \(events(dr.node).suffix(4))")
    XCTAssertEqual(dr.copies, copies, "without a copy")
    try understudy(["sql", "--node", dr2.node, "INSERT INTO t VALUES (901, 'on dr2')"])
    try dr.catchesUp(with: dr2)
  }

  /// RDF's triple contingency: the chosen recovery server (dr2) was down while production
  /// committed more, which the other one (dr) received. Failover to dr2 names dr and its
  /// position and is refused; with -f it goes ahead and says dr needs a full copy.
  func testFailoverNamesARecoveryServerThatReceivedMore() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr2 = try pair.addFailoverSite(self)
    XCTAssertEqual(try dr2.command("rtstop", ["-C", "1"]).status, 0)
    for i in 0..<3 { try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (\(800 + i), 'dr only')"]) }
    try pair.waitForReplica()
    prod.killDaemon()

    let refused = try dr2.rtdr(["-q", "failover"])
    XCTAssertEqual(refused.status, 1, refused.stdout)
    XCTAssertTrue(refused.stderr.contains("recovery server dr has received up to"), refused.stderr)
    XCTAssertEqual(try dr2.role(), "backup", "nothing changed")
    let forced = try dr2.rtdr(["-q", "-f", "--json", "failover"])
    XCTAssertEqual(forced.status, 0, forced.stderr)
    let ahead = ((forced.json as? [String: Any])?["details"] as? [String: Any])?["ahead"] as? [[String: Any]]
    XCTAssertEqual(ahead?.first?["server"] as? String, "dr", "\(forced.stdout)")
    XCTAssertTrue(
      ((forced.json as? [String: Any])?["result"] as? String)?.contains("dr received more") == true, forced.stdout)
  }

  /// Operations on the wrong server or out of order are refused with what to run
  /// instead, and leave the context able to go on.
  func testRefusalsNameWhatToRunInstead() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    func refused(_ server: MIMIXServer, _ arguments: [String], _ says: String, line: UInt = #line) throws {
      let outcome = try server.rtdr(["-q"] + arguments)
      XCTAssertEqual(outcome.status, 1, "\(arguments): \(outcome.stdout)", line: line)
      XCTAssertTrue(outcome.stderr.contains(says), "\(arguments): \(outcome.stderr)", line: line)
    }
    try refused(dr, ["failover"], "rtdr -C 1 -F <ID> setup")
    try refused(prod, ["-F", "2", "-s", "nosuch", "setup"], "configured: dr")
    try refused(prod, ["-F", "1", "setup"], "-F differs from -C")
    let unknown = try mimix("rtdr", ["-C", "7", "-q", "failover", "--home", prod.home])
    XCTAssertTrue(unknown.stderr.contains("context 7 is not configured"), unknown.stderr)
    XCTAssertTrue(try mimix("rtdr", ["-h"]).stdout.contains("rtdr -C <ID> -F <ID> [-s <hostname>] [-fhmnv] setup"))
    XCTAssertTrue(try mimix("rtdr", ["-m"]).stdout.contains("PROCEDURE"))
    try pair.setUp()
    try refused(prod, ["-F", "3", "setup"], "already has failover context 2")
    try refused(prod, ["failover"], "runs on the recovery server dr")
    try refused(prod, ["resync"], "run `rtdr -C 1 failover` on dr first")
    try refused(dr, ["resync"], "run `rtdr -C 1 failover` on dr first")
    try refused(dr, ["failback"], "run `rtdr -C 1 failover` on dr first")
    try refused(dr, ["failover"], "production at \(prod.address) still answers")
    let statemap = try dr.command("scconfig", ["-C", "1", "-M"])
    XCTAssertTrue(statemap.stderr.contains("acting production server"), statemap.stderr)
    let drain = try dr.command("rtstop", ["-C", "1", "-S"])
    XCTAssertTrue(drain.stderr.contains("runs on the production server"), drain.stderr)

    // The refused failover left nothing to finish: the cycle goes on.
    try pair.loseProduction(unshipped: 1)
    XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0)
    try refused(dr, ["failback"], "failback before resync")
    try refused(prod, ["failback"], "run `rtdr -C 1 failover` on dr first")
    let resync = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    try refused(prod, ["failback"], "failback runs first on the recovery server dr")
    XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0)
    XCTAssertEqual(try prod.rtdr(["-q", "failback"]).status, 0)
    // Drained stop on production, then a clean start.
    let drained = try prod.command("rtstop", ["-C", "1", "-S", "--json"])
    XCTAssertEqual(drained.status, 0, drained.stderr)
    try assertConforms(drained.json, to: "rtstop.schema.json")
    let started = try prod.command("rtstart", ["-C", "1", "--json"])
    XCTAssertEqual(started.status, 0, started.stderr)
    try assertConforms(started.json, to: "rtstart.schema.json")
  }

  /// A SIGKILL after a seeded random step of each operation (and one at a random moment
  /// inside one), then the same command again: the cycle ends as an uninterrupted one,
  /// twice over.
  func testAKillAtAnyStepThenTheSameCommandEndsTheSame() throws {
    var rng = SeededGenerator(seed: testSeed("rtdr kill"))
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    func killedThenRerun(_ server: MIMIXServer, _ arguments: [String], steps: Int, line: UInt = #line) throws {
      let k = Int.random(in: 1...steps, using: &rng)
      let killed = try server.rtdr(["-q"] + arguments, environment: ["UNDERSTUDY_FAILPOINT": "rtdr-step:\(k)"])
      XCTAssertNotEqual(killed.status, 0, "\(arguments) killed after step \(k): \(killed.stdout)", line: line)
      let rerun = try server.rtdr(["-q"] + arguments)
      XCTAssertEqual(rerun.status, 0, "\(arguments) after a kill at step \(k): \(rerun.stderr)", line: line)
    }
    try killedThenRerun(prod, ["-F", "2", "setup"], steps: 2)
    try killedThenRerun(dr, ["-F", "2", "setup"], steps: 2)
    for cycle in 1...2 {
      try pair.loseProduction(unshipped: 2)
      try killedThenRerun(dr, ["failover"], steps: 3)
      XCTAssertEqual(try dr.role(), "primary", "cycle \(cycle)")
      try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (\(1000 + cycle), 'on dr')"])
      if cycle == 2 {
        // A kill at a random moment, not at a step's end.
        let process = try startUnderstudy(["rtdr", "-C", "1", "-q", "resync", "--home", prod.home])
        usleep(UInt32.random(in: 50_000...1_500_000, using: &rng))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let rerun = try prod.rtdr(["-q", "resync"])
        XCTAssertEqual(rerun.status, 0, "resync after a kill at a random moment: \(rerun.stderr)")
      } else {
        try killedThenRerun(prod, ["resync"], steps: 6)
      }
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "cycle \(cycle): in sync after resync")
      try killedThenRerun(dr, ["-f", "failback"], steps: 2)
      try killedThenRerun(prod, ["failback"], steps: 3)
      XCTAssertEqual(try prod.role(), "primary", "cycle \(cycle)")
      XCTAssertEqual(try dr.role(), "backup", "cycle \(cycle)")
      try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (\(2000 + cycle), 'back on prod')"])
      try pair.waitForReplica()
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "cycle \(cycle): equal after failback")
    }
  }
}
