// Adversarial tests of the MIMIX layer: an interrupted drain, a statemap marked at the
// wrong moment, corrupt home files, two resyncs at once. Each one shows a problem (or
// proves a suspicion wrong); real processes on loopback, like MIMIXTests.

import Foundation
import TestSupport
import XCTest

final class MIMIXAdversarialTests: XCTestCase {
  /// An operator presses Ctrl-C (SIGINT) while `rtstop -S` waits for a slow backup: the
  /// daemon keeps running, and production must accept writes again. Found: the drain's
  /// write block stays (its `defer` never runs), production refuses every write with
  /// "the context is draining" while nothing drains, until someone thinks of rtstart.
  /// Fixed in ContextDaemon.drainAndStop for SIGINT, SIGTERM, SIGHUP; a SIGKILL still
  /// leaves the block (rtstart clears it).
  func testAnInterruptedDrainLeavesProductionWritable() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let drPid = try XCTUnwrap(dr.daemonPid)
    kill(drPid, SIGSTOP)  // attached, but applies nothing
    defer { kill(drPid, SIGCONT) }
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (100, 'after the backup stalled')"])
    let drain = try startUnderstudy(["rtstop", "-C", "1", "-S", "--timeout", "60", "--home", prod.home])
    let blocked = prod.node + "/state/writes-blocked"
    XCTAssertTrue(
      try eventually(30) { FileManager.default.fileExists(atPath: blocked) },
      "the drain blocks writes (drain running: \(drain.isRunning); prod: \(events(prod.node).suffix(3)))")
    kill(drain.processIdentifier, SIGINT)
    drain.waitUntilExit()
    kill(drPid, SIGCONT)
    XCTAssertNotNil(prod.daemonPid, "the interrupted drain did not stop the daemon")
    let write = try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (101, 'after the Ctrl-C')"])
    XCTAssertEqual(
      write.status, 0, "production refuses writes after an interrupted rtstop -S, its daemon running: \(write.stderr)")
    let status = try understudy(["status", "--node", prod.node, "--json"])
    XCTAssertNil((status.json as? [String: Any])?["writesBlocked"] as? String, status.stdout)
  }

  /// `rtstop -S` SIGKILLed while it drains: it cannot lift its block itself, so the
  /// primary's daemon does, once the block's holder is gone (9086).
  func testASIGKILLedDrainsBlockIsLiftedByTheDaemon() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let drPid = try XCTUnwrap(dr.daemonPid)
    kill(drPid, SIGSTOP)
    defer { kill(drPid, SIGCONT) }
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (100, 'after the backup stalled')"])
    let drain = try startUnderstudy(["rtstop", "-C", "1", "-S", "--timeout", "60", "--home", prod.home])
    let blocked = prod.node + "/state/writes-blocked"
    XCTAssertTrue(try eventually(30) { FileManager.default.fileExists(atPath: blocked) }, "the drain blocks writes")
    kill(drain.processIdentifier, SIGKILL)
    drain.waitUntilExit()
    XCTAssertTrue(try eventually(10) { !FileManager.default.fileExists(atPath: blocked) }, "the daemon lifts the block")
    // Logged just after the block file goes.
    XCTAssertTrue(eventually(5) { events(prod.node).contains { $0["code"] as? Int == 9086 } })
    let write = try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (101, 'after the kill')"])
    XCTAssertEqual(write.status, 0, write.stderr)
    kill(drPid, SIGCONT)
    try pair.waitForReplica()
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// resync on production is killed right after it recorded its decision (file recovery);
  /// then the operator marks the acting production's statemap dirty (rtstop -F, scconfig
  /// -M, rtstart) and runs resync again. It must finish (a full copy, as the mark asks).
  /// Found: the recorded decision wins; the acting production refuses the follow (dirty
  /// statemap) and every re-run repeats the same refusal: no re-run can finish. Fixed in
  /// RTDR.resyncProduction: a dirty answer overrides a recorded file-recovery decision.
  func testAStatemapMarkedAfterTheResyncDecisionDoesNotWedgeTheResync() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 2)
    try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (500, 'written on dr')"])
    let killed = try prod.rtdr(["-q", "resync"], environment: ["UNDERSTUDY_FAILPOINT": "rtdr-step:1"])
    XCTAssertNotEqual(killed.status, 0)
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1", "-F"]).status, 0)
    XCTAssertEqual(try dr.command("scconfig", ["-C", "1", "-M"]).status, 0)
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    for attempt in 1...2 {
      let rerun = try prod.rtdr(["-q", "--json", "resync"])
      XCTAssertEqual(rerun.status, 0, "re-run \(attempt) of resync: \(rerun.stderr)")
      if rerun.status == 0 {
        let details = (rerun.json as? [String: Any])?["details"] as? [String: Any]
        XCTAssertEqual(details?["fullCopy"] as? Bool, true, "the dirty statemap asks for a full copy: \(rerun.stdout)")
        break
      }
    }
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// The statemap is marked dirty on the acting production after production's resync
  /// ended in sync (the operator learns late that production's disk is bad). Found: the
  /// re-run resync says "in sync" and copies nothing (the mark is ignored: production
  /// already follows), the failback goes through, and the dirty mark survives on the
  /// recovery server into the next cycle, where a resync is a full copy for a reason
  /// that is a cycle old. Fixed in RTDR.resyncProduction: a follower of a dirty acting
  /// production that had no full copy makes one (Follow allows it on a backup).
  func testAStatemapMarkAfterTheResyncIsNotSilentlyIgnored() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 2)
    XCTAssertEqual(try prod.rtdr(["-q", "resync"]).status, 0)
    XCTAssertEqual(try dr.command("rtstop", ["-C", "1", "-F"]).status, 0)
    XCTAssertEqual(try dr.command("scconfig", ["-C", "1", "-M"]).status, 0)
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    let rerun = try prod.rtdr(["-q", "--json", "resync"])
    let details = (rerun.json as? [String: Any])?["details"] as? [String: Any]
    XCTAssertTrue(
      rerun.status != 0 || details?["fullCopy"] as? Bool == true,
      "resync after scconfig -M neither copies nor refuses: \(rerun.stdout) \(rerun.stderr)")
    // The cycle is finished; the next one must not inherit the old mark.
    XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0)
    XCTAssertEqual(try prod.rtdr(["-q", "failback"]).status, 0)
    let printed = try dr.command("scconfig", ["-C", "1", "-P"])
    XCTAssertTrue(printed.stdout.contains("clean"), "the mark outlives the cycle: \(printed.stdout)")
    try pair.waitForReplica()
    try pair.loseProduction(unshipped: 1)
    XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0)
    let second = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(second.status, 0, second.stderr)
    let why = ((second.json as? [String: Any])?["details"] as? [String: Any])?["why"] as? String
    XCTAssertFalse(why?.contains("statemap is dirty") == true, "second cycle: \(why ?? second.stdout)")
  }

  /// A corrupt context file, state file or statemap is an error naming the file, never a
  /// silent default, for every command that reads it.
  func testCorruptHomeFilesAreErrorsNamingTheFile() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    func refused(_ server: MIMIXServer, _ name: String, _ arguments: [String], names path: String, line: UInt = #line)
      throws
    {
      let outcome =
        name == "rtdr" ? try server.rtdr(arguments) : try server.command(name, arguments)
      XCTAssertNotEqual(outcome.status, 0, "\(name) \(arguments): \(outcome.stdout)", line: line)
      XCTAssertTrue(outcome.stderr.contains(path), "\(name) \(arguments): \(outcome.stderr)", line: line)
    }
    let state = prod.home + "/contexts/1.state.json"
    try Data("{\"active\": ".utf8).write(to: URL(fileURLWithPath: state))
    try refused(prod, "rtdr", ["-n", "resync"], names: state)
    try refused(prod, "rtstop", ["-C", "1", "-F"], names: state)
    unlink(state)
    let config = dr.home + "/contexts/1.json"
    let saved = try Data(contentsOf: URL(fileURLWithPath: config))
    try Data("not json".utf8).write(to: URL(fileURLWithPath: config))
    try refused(dr, "rtdr", ["-n", "failover"], names: config)
    try refused(dr, "rtstart", ["-C", "1"], names: config)
    try refused(dr, "scconfig", ["-C", "1", "-P"], names: config)
    try saved.write(to: URL(fileURLWithPath: config))
    // The failover context's ID: the refusal names the one to use.
    let wrong = try mimix("rtdr", ["-C", "2", "-q", "failover", "--home", dr.home])
    XCTAssertNotEqual(wrong.status, 0)
    XCTAssertTrue(wrong.stderr.contains("run the command with -C 1"), wrong.stderr)
    // A corrupt statemap on the acting production: production's resync names it.
    try pair.loseProduction(unshipped: 1)
    XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0)
    let statemap = dr.node + "/state/statemap.json"
    try Data("{".utf8).write(to: URL(fileURLWithPath: statemap))
    try refused(dr, "scconfig", ["-C", "1", "-P"], names: statemap)
    try refused(prod, "rtdr", ["-q", "-n", "resync"], names: statemap)
  }

  /// Two `rtdr resync` on production at once (two terminals at 3 a.m.), then the same
  /// command again: it ends in sync, with what the recovery server holds.
  func testTwoResyncsAtOnceOnProductionThenARerunEndInSync() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 3)
    try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (700, 'on dr')"])
    let a = try startUnderstudy(["rtdr", "-C", "1", "-q", "resync", "--home", prod.home, "--timeout", "60"])
    let b = try startUnderstudy(["rtdr", "-C", "1", "-q", "resync", "--home", prod.home, "--timeout", "60"])
    a.waitUntilExit()
    b.waitUntilExit()
    let rerun = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(
      rerun.status, 0, "after two resyncs at once (\(a.terminationStatus), \(b.terminationStatus)): \(rerun.stderr)")
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
    XCTAssertEqual(try prod.count("t"), try dr.count("t"))
  }

  /// `rtstop -S` with a writer streaming on production, then rtstart, three times: the
  /// writer is either refused by the drain's block (naming it) or goes on after it; every
  /// write it was acknowledged reaches the backup; nothing committed is lost. (Fine.)
  func testADrainWithAWriterStreamingLosesNothingAcknowledged() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY)"])
    for round in 0..<3 {
      let writer = try LineFeeder(["sql", "--node", prod.node, "--each-line", "--json"])
      let base = round * 100_000
      writer.feed(lines: 2500, every: 0.0005) { "INSERT INTO w VALUES (\(base + $0))" }
      usleep(600_000)
      let drained = try prod.command("rtstop", ["-C", "1", "-S"])
      XCTAssertEqual(drained.status, 0, drained.stderr)
      XCTAssertFalse(
        FileManager.default.fileExists(atPath: prod.node + "/state/writes-blocked"),
        "round \(round): writes allowed again after the drain")
      XCTAssertEqual(try prod.command("rtstart", ["-C", "1"]).status, 0)
      let done = writer.finish()
      XCTAssertTrue(
        done.status == 0 || done.stderr.contains("draining"), "round \(round): \(done.status) \(done.stderr)")
      let acked = done.jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }
      XCTAssertEqual(acked, Array(0..<acked.count).map { $0 + 1 })
      try pair.waitForReplica()
      let onBackup = try understudy([
        "query", "--node", dr.node, "--json", "SELECT count(*) FROM w WHERE id > \(base) AND id < \(base + 100_000)",
      ])
      let count = ((onBackup.json as? [String: Any])?["rows"] as? [[Int]])?.first?.first ?? -1
      XCTAssertGreaterThanOrEqual(count, acked.count, "round \(round): every acknowledged write is on the backup")
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "round \(round)")
    }
  }

  /// rtstart on a node whose daemon cannot serve (its listen port taken by another
  /// process): an error naming the daemon's log, within the timeout.
  func testRTStartOnABrokenNodeNamesTheLog() throws {
    let pair = try MIMIXPair(self)
    let prod = pair.production
    XCTAssertEqual(try prod.command("rtstop", ["-C", "1"]).status, 0)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(prod.port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    XCTAssertEqual(bound, 0)
    XCTAssertEqual(listen(fd, 4), 0)
    let started = Date()
    let outcome = try prod.command("rtstart", ["-C", "1", "--timeout", "10"])
    XCTAssertNotEqual(outcome.status, 0, outcome.stdout)
    XCTAssertTrue(outcome.stderr.contains(prod.node + "/daemon.log"), outcome.stderr)
    XCTAssertLessThan(Date().timeIntervalSince(started), 30)
    XCTAssertNil(prod.daemonPid, "no daemon left behind")
  }

  /// `rtdr -f failback` on the recovery server SIGKILLed at random moments (inside the
  /// switchover, not only at step ends), then run again, then failback on production:
  /// the two servers end equal, production primary, every write on the recovery server kept.
  func testAFailbackKilledAtARandomMomentThenRerunEndsEqual() throws {
    var rng = SeededGenerator(seed: testSeed("rtdr failback kill"))
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    for cycle in 1...3 {
      try pair.loseProduction(unshipped: 1)
      XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0, "cycle \(cycle)")
      for i in 0..<20 {
        try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (\(cycle * 10_000 + i), 'dr')"])
      }
      let resync = try prod.rtdr(["-q", "resync"])
      XCTAssertEqual(resync.status, 0, "cycle \(cycle): \(resync.stderr)")
      let drCount = try dr.count("t")
      let process = try startUnderstudy([
        "rtdr", "-C", "1", "-q", "-f", "failback", "--home", dr.home, "--timeout", "60",
      ])
      let delay = UInt32.random(in: 20_000...900_000, using: &rng)
      usleep(delay)
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      let rerun = try dr.rtdr(["-q", "-f", "failback"])
      XCTAssertEqual(rerun.status, 0, "cycle \(cycle), killed after \(delay) us: \(rerun.stderr)")
      let back = try prod.rtdr(["-q", "failback"])
      XCTAssertEqual(back.status, 0, "cycle \(cycle), killed after \(delay) us: \(back.stderr)")
      XCTAssertEqual(try prod.role(), "primary", "cycle \(cycle)")
      XCTAssertEqual(try dr.role(), "backup", "cycle \(cycle)")
      XCTAssertEqual(try prod.count("t"), drCount, "cycle \(cycle)")
      try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (\(cycle * 10_000 + 999), 'prod')"])
      try pair.waitForReplica()
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "cycle \(cycle)")
    }
  }

  /// After the failover, the operator marks the statemap dirty on the wrong server: the
  /// revived production (its node still says primary; it was down during the takeover).
  /// It must be refused, or the resync must honour it. Found: scconfig -M succeeds and
  /// says "the next resync is a full copy", and the resync is a file recovery. Fixed in
  /// StatemapMark: refused unless the context failed over to this server.
  func testAStatemapMarkOnTheLostProductionIsNotAPromiseItBreaks() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 2)
    XCTAssertEqual(try prod.command("rtstop", ["-C", "1", "-F"]).status, 0)
    let marked = try prod.command("scconfig", ["-C", "1", "-M"])
    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    let details = (resync.json as? [String: Any])?["details"] as? [String: Any]
    XCTAssertTrue(
      marked.status != 0 || details?["fullCopy"] as? Bool == true,
      "scconfig -M said \(marked.stdout.debugDescription); the resync: \(details?["why"] ?? resync.stdout)")
  }

  /// rtstart on the lost production after the failover (the operator brings its daemon
  /// back before the resync): it must not serve writes as a second production.
  func testRTStartOnTheLostProductionAfterTheFailoverTakesNoWrites() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 1)
    let started = try prod.command("rtstart", ["-C", "1"])
    usleep(3_000_000)
    let write = try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (4242, 'second production')"])
    XCTAssertNotEqual(
      write.status, 0,
      "rtstart (\(started.status): \(started.stdout)\(started.stderr)) left the lost production taking writes")
    let resync = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// A full-copy resync (dirty statemap) SIGKILLed at random moments, then run again:
  /// in sync, the statemap clean, and the cycle goes on, three times over.
  func testAFullCopyResyncKilledAtARandomMomentThenRerunEndsInSync() throws {
    var rng = SeededGenerator(seed: testSeed("rtdr full copy kill"))
    let pair = try MIMIXPair(self, rows: 300)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    for cycle in 1...3 {
      try pair.loseProduction(unshipped: 2)
      XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0, "cycle \(cycle)")
      try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (\(5000 + cycle), 'dr')"])
      XCTAssertEqual(try dr.command("rtstop", ["-C", "1", "-F"]).status, 0)
      XCTAssertEqual(try dr.command("scconfig", ["-C", "1", "-M"]).status, 0)
      XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
      let process = try startUnderstudy(["rtdr", "-C", "1", "-q", "resync", "--home", prod.home, "--timeout", "60"])
      let delay = UInt32.random(in: 30_000...1_200_000, using: &rng)
      usleep(delay)
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      let rerun = try prod.rtdr(["-q", "--json", "resync"])
      XCTAssertEqual(rerun.status, 0, "cycle \(cycle), killed after \(delay) us: \(rerun.stderr)")
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "cycle \(cycle), killed after \(delay) us")
      XCTAssertTrue(
        try eventually(10) { try dr.command("scconfig", ["-C", "1", "-P"]).stdout.contains("clean") },
        "cycle \(cycle), killed after \(delay) us")
      XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0, "cycle \(cycle)")
      let back = try prod.rtdr(["-q", "failback"])
      XCTAssertEqual(back.status, 0, "cycle \(cycle): \(back.stderr)")
      try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (\(6000 + cycle), 'prod')"])
      try pair.waitForReplica()
      XCTAssertEqual(try prod.checksum(), try dr.checksum(), "cycle \(cycle)")
    }
  }

  /// The acting production's daemon crashed after the resync (SIGKILL), and the operator
  /// runs failback there: it must refuse (or start the daemon) saying what to do, and
  /// after `rtstart` the failback finishes with nothing lost. Found: it read the dead
  /// daemon's attached file and said "production has not caught up … run -f failback to
  /// wait for the drain" (which waits for a drain that never comes); after `rtstart`, a
  /// failback at once said "failback before resync: run resync on both servers" because
  /// production's receiver, in its 5 s backoff, had not attached again within 2 s. Fixed
  /// in RTDR.failbackAtSite: refused without the daemon, naming rtstart; an absent
  /// production is waited for 7 s (RTDR.reconnectGrace), also in waitInSync.
  func testAFailbackWithTheActingProductionsDaemonDeadSaysWhatToDo() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 1)
    try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (800, 'dr')"])
    XCTAssertEqual(try prod.rtdr(["-q", "resync"]).status, 0)
    dr.killDaemon()
    let failback = try dr.rtdr(["-q", "failback"])
    if failback.status != 0 {
      XCTAssertTrue(
        failback.stderr.contains("rtstart") || failback.stderr.contains("daemon"),
        "the refusal names the daemon: \(failback.stderr)")
      XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
      let again = try dr.rtdr(["-q", "-f", "failback"])
      XCTAssertEqual(again.status, 0, again.stderr)
    }
    let back = try prod.rtdr(["-q", "failback"])
    XCTAssertEqual(back.status, 0, back.stderr)
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertEqual(try prod.count("t"), try dr.count("t"))
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }

  /// failback started on both servers at once, while a slow writer streams on the acting
  /// production (no -f): whatever each says, running them again in order ends with
  /// production primary and every acknowledged write on it. (Fine.)
  func testFailbackOnBothServersAtOnceWithAWriterLosesNothing() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.failOver(unshipped: 1)
    XCTAssertEqual(try prod.rtdr(["-q", "resync"]).status, 0)
    try understudy(["sql", "--node", dr.node, "CREATE TABLE d(id INTEGER PRIMARY KEY)"])
    try pair.waitForReplica(from: dr)
    let writer = try LineFeeder(["sql", "--node", dr.node, "--each-line", "--json"])
    writer.feed(lines: 400, every: 0.02) { "INSERT INTO d VALUES (\($0))" }
    usleep(500_000)
    let a = try startUnderstudy(["rtdr", "-C", "1", "-q", "failback", "--home", dr.home, "--timeout", "60"])
    let b = try startUnderstudy(["rtdr", "-C", "1", "-q", "failback", "--home", prod.home, "--timeout", "60"])
    a.waitUntilExit()
    b.waitUntilExit()
    let acked = writer.finish().jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }
    if a.terminationStatus != 0 {
      let again = try dr.rtdr(["-q", "-f", "failback"])
      XCTAssertEqual(again.status, 0, again.stderr)
    }
    let back = try prod.rtdr(["-q", "failback"])
    XCTAssertEqual(back.status, 0, "(first runs \(a.terminationStatus), \(b.terminationStatus)): \(back.stderr)")
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertGreaterThanOrEqual(try prod.count("d"), acked.count)
    XCTAssertEqual(try prod.checksum(), try dr.checksum())
  }
}
