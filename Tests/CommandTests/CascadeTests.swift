// Cascades (issue 13, item 6): a recovery server passes on what it received to a next hop,
// the same bytes at the same positions and generation; the MIMIX cycle over a chain
// prod → dr → dr3, failing over to either hop, with real processes on loopback.

import Foundation
import TestSupport
import XCTest

final class CascadeTests: XCTestCase {
  /// The next hop receives exactly the primary's records (its image trail files are the
  /// primary's MAT files byte for byte) while a writer streams, through a SIGKILL of
  /// the relay in the middle, and its database ends equal to production's.
  func testARelayPassesOnTheSameBytesThroughAKillOfTheRelay() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr3 = try pair.addRecoveryServer(self, name: "dr3", behind: dr)
    XCTAssertEqual(dr3.copies, 1, "dr3's initial copy came from the relay")
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY, pad TEXT)"])
    let writer = try LineFeeder(["sql", "--node", prod.node, "--each-line", "--json"])
    writer.feed(lines: 1500, every: 0.002) { "INSERT INTO w VALUES (\($0), hex(randomblob(200)))" }
    usleep(1_200_000)
    dr.killDaemon()
    usleep(500_000)
    XCTAssertEqual(try dr.command("rtstart", ["-C", "1"]).status, 0)
    let acked = writer.finish().jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }
    XCTAssertEqual(acked.count, 1500, "the writer on production never waits for the cascade")

    try dr3.catchesUp(with: prod)
    XCTAssertEqual(try dr3.count("w"), 1500)
    XCTAssertTrue(try dr3.relayed(by: dr), "dr3 still streams from the relay")
    XCTAssertTrue(
      events(dr3.node).contains { $0["code"] as? Int == 9001 || ($0["message"] as? String)?.contains("relay") == true })
    // Every file both hold whole, after dr3's first: the same bytes as the relay's image
    // trail (production's MAT has purged them; the relay's trail is that MAT's copy).
    let relayed = try FileManager.default.contentsOfDirectory(atPath: dr.node + "/image").sorted()
    let image = Set(try FileManager.default.contentsOfDirectory(atPath: dr3.node + "/image"))
    let shared = relayed.filter(image.contains).dropFirst().dropLast()
    XCTAssertGreaterThan(shared.count, 3, "several whole files shipped through the relay: \(relayed) \(image)")
    for name in shared {
      XCTAssertEqual(
        try Data(contentsOf: URL(fileURLWithPath: dr.node + "/image/" + name)),
        try Data(contentsOf: URL(fileURLWithPath: dr3.node + "/image/" + name)), "\(name) is the same on both")
    }
    let last = try XCTUnwrap(relayed.last)
    let mat = try Data(contentsOf: URL(fileURLWithPath: prod.node + "/mat/" + last))
    let tail = try Data(contentsOf: URL(fileURLWithPath: dr3.node + "/image/" + last))
    XCTAssertEqual(mat.count, tail.count, "production's current MAT file and dr3's copy have one size")
  }

  /// A relay that keeps no applied image trail of its own (retention 0) still keeps what
  /// its next hop needs while that one is down (`relayed.json`), though production's MAT
  /// no longer does; the next hop then catches up without a copy, and the files go.
  func testARelayKeepsTheImageTrailItsNextHopStillNeeds() throws {
    let pair = try MIMIXPair(self, retention: 0)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr3 = try pair.addRecoveryServer(self, name: "dr3", behind: dr)
    XCTAssertEqual(try dr3.command("rtstop", ["-C", "1"]).status, 0)
    let stoppedAt = try XCTUnwrap(
      positionText(try understudy(["status", "--node", dr3.node, "--json"]).json, "durableEnd"))
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY, pad TEXT)"])
    for i in 0..<12 {
      let rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20)"
      let insert = try understudy([
        "sql", "--node", prod.node, "\(rows) INSERT INTO w SELECT \(i * 100) + x, hex(randomblob(500)) FROM c",
      ])
      XCTAssertEqual(insert.status, 0, insert.stderr)
    }
    try pair.waitForReplica()
    let firstNeeded = "AA" + String(format: "%08d", Int(stoppedAt.split(separator: ":")[0])!)
    // Production's MAT and the relay's purger have had time to drop what nobody needs.
    XCTAssertTrue(
      try eventually(10) {
        try !FileManager.default.contentsOfDirectory(atPath: prod.node + "/mat").contains(firstNeeded)
      }, "production keeps no MAT for a node that is not its backup")
    sleep(3)
    let kept = try FileManager.default.contentsOfDirectory(atPath: dr.node + "/image")
    XCTAssertTrue(kept.contains(firstNeeded), "the relay keeps \(firstNeeded) for dr3: \(kept.sorted())")
    let relayed = try JSONSerialization.jsonObject(
      with: Data(contentsOf: URL(fileURLWithPath: dr.node + "/state/relayed.json")))
    try assertConforms(relayed, to: "state-relayed.schema.json")
    XCTAssertEqual((relayed as? [[String: Any]])?.count, 1, "\(relayed)")

    XCTAssertEqual(try dr3.command("rtstart", ["-C", "1"]).status, 0)
    try dr3.catchesUp(with: prod)
    XCTAssertEqual(dr3.copies, 1, "caught up from the relay's image trail, not copied again")
    XCTAssertTrue(
      try eventually(10) {
        try !FileManager.default.contentsOfDirectory(atPath: dr.node + "/image").contains(firstNeeded)
      }, "once dr3 has it, the relay removes it")
  }

  /// setup on the three servers (the site is the first hop), production lost, failover on
  /// dr: dr3 goes on as dr's backup by itself, without a copy; resync and failback
  /// return production, and both recovery servers follow it, all equal.
  func testTheCycleOverACascadeFailingOverToTheFirstHop() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr3 = try pair.addRecoveryServer(self, name: "dr3", behind: dr)
    for server in [prod, dr, dr3] {
      let setup = try server.rtdr(["-q", "-F", "2", "--json", "setup"])
      XCTAssertEqual(setup.status, 0, "\(server.name): \(setup.stderr)")
      let details = (setup.json as? [String: Any])?["details"] as? [String: Any]
      XCTAssertEqual(details?["site"] as? String, "dr", "\(server.name): the first hop is the default site")
      let names = (details?["servers"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted()
      XCTAssertEqual(names, ["dr", "dr3", "prod"], "\(server.name) knows the whole chain")
    }
    try pair.loseProduction(unshipped: 2)
    let copies = dr3.copies
    let failover = try dr.rtdr(["-q", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    XCTAssertTrue(try eventually(20) { try dr3.follows(dr) }, "dr3 follows dr: \(events(dr3.node).suffix(4))")
    XCTAssertEqual(dr3.copies, copies, "without a copy")
    try understudy(["sql", "--node", dr.node, "INSERT INTO t VALUES (700, 'on dr')"])
    try dr3.catchesUp(with: dr)

    let resync = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    XCTAssertTrue(resync.stdout.contains("in sync"), resync.stdout)
    XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0)
    let back = try prod.rtdr(["-q", "failback"])
    XCTAssertEqual(back.status, 0, back.stderr)
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertEqual(try dr.role(), "backup")
    XCTAssertTrue(try eventually(20) { try dr3.follows(prod) }, "dr3 follows prod: \(events(dr3.node).suffix(4))")
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (701, 'back on prod')"])
    try dr.catchesUp(with: prod)
    try dr3.catchesUp(with: prod)
    XCTAssertEqual(dr3.copies, copies, "and again without a copy")
  }

  /// Adversarial (adversarial-2): after the cycle over a cascade, dr3 follows prod
  /// directly (fan-out) and never acknowledges to dr again, but dr's `relayed.json` still
  /// names dr3 at a position of the cascade's time: dr's purger keeps every image file
  /// from there on, for good (no expiry, unlike MAT retention's 9042).
  func testAfterFailbackTheFormerRelayNoLongerKeepsImageTrailForTheOldNextHop() throws {
    let pair = try MIMIXPair(self, retention: 0)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr3 = try pair.addRecoveryServer(self, name: "dr3", behind: dr)
    for server in [prod, dr, dr3] {
      let setup = try server.rtdr(["-q", "-F", "2", "--json", "setup"])
      XCTAssertEqual(setup.status, 0, "\(server.name): \(setup.stderr)")
    }
    try pair.loseProduction(unshipped: 2)
    XCTAssertEqual(try dr.rtdr(["-q", "failover"]).status, 0)
    XCTAssertTrue(try eventually(20) { try dr3.follows(dr) })
    XCTAssertEqual(try prod.rtdr(["-q", "resync"]).status, 0)
    XCTAssertEqual(try dr.rtdr(["-q", "-f", "failback"]).status, 0)
    XCTAssertEqual(try prod.rtdr(["-q", "failback"]).status, 0)
    XCTAssertTrue(try eventually(20) { try dr3.follows(prod) })
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY, pad TEXT)"])
    for i in 0..<12 {
      let rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20)"
      XCTAssertEqual(
        try understudy([
          "sql", "--node", prod.node, "\(rows) INSERT INTO w SELECT \(i * 100) + x, hex(randomblob(500)) FROM c",
        ]).status, 0)
    }
    try dr.catchesUp(with: prod)
    try dr3.catchesUp(with: prod)
    let relayedPath = dr.node + "/state/relayed.json"
    let relayed = (try? String(contentsOfFile: relayedPath, encoding: .utf8)) ?? "none"
    print("ADV dr relayed.json after failback: \(relayed.replacingOccurrences(of: "\n", with: " "))")
    print(
      "ADV dr status: \(try understudy(["status", "--node", dr.node, "--json"]).stdout.replacingOccurrences(of: "\n", with: " ").prefix(600))"
    )
    sleep(3)
    let files = try FileManager.default.contentsOfDirectory(atPath: dr.node + "/image").sorted()
    print("ADV dr image files: \(files)")
    XCTAssertLessThanOrEqual(
      files.count, 2,
      "dr (retention 0) purges what nobody needs: \(files), relayed.json \(relayed.replacingOccurrences(of: "\n", with: " "))"
    )
  }

  /// `-s dr3`: the failover goes to the second hop, with a writer on production until it
  /// is lost and the relay dr still up; it is SIGKILLed after a seeded step and run again.
  /// dr3 first receives what dr holds (so dr is not ahead), takes over, and dr follows dr3
  /// by itself; production, which knew only dr, learns of dr3 through it (829), resyncs
  /// from dr3 and fails back; everything dr3 held is on production.
  func testFailoverToTheSecondHopOfACascade() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    let dr3 = try pair.addRecoveryServer(self, name: "dr3", behind: dr)
    for server in [prod, dr, dr3] {
      let setup = try server.rtdr(["-q", "-F", "2", "-s", "dr3", "setup"])
      XCTAssertEqual(setup.status, 0, "\(server.name): \(setup.stderr)")
    }
    try understudy(["sql", "--node", prod.node, "CREATE TABLE w(id INTEGER PRIMARY KEY)"])
    let writer = try LineFeeder(["sql", "--node", prod.node, "--each-line", "--json"])
    writer.feed(lines: 20000, every: 0.002) { "INSERT INTO w VALUES (\($0))" }
    usleep(800_000)
    prod.killDaemon()
    kill(writer.process.processIdentifier, SIGKILL)
    _ = writer.finish()
    let drCopies = dr.copies

    let refused = try dr.rtdr(["-q", "failover"])
    XCTAssertEqual(refused.status, 1, "dr is not the site")
    // Killed after a seeded step, then run again.
    var rng = SeededGenerator(seed: testSeed("second-hop failover kill"))
    let k = Int.random(in: 1...4, using: &rng)
    let killed = try dr3.rtdr(["-q", "failover"], environment: ["UNDERSTUDY_FAILPOINT": "rtdr-step:\(k)"])
    XCTAssertNotEqual(killed.status, 0, "killed after step \(k): \(killed.stdout)")
    XCTAssertFalse(killed.stderr.contains("received more"), "no -f needed while the relay is up: \(killed.stderr)")
    let failover = try dr3.rtdr(["-q", "--json", "failover"])
    XCTAssertEqual(failover.status, 0, "after a kill at step \(k): \(failover.stderr)")
    let details = (failover.json as? [String: Any])?["details"] as? [String: Any]
    XCTAssertEqual((details?["ahead"] as? [Any])?.count, 0, "dr held nothing dr3 did not")
    XCTAssertEqual(try dr3.role(), "primary")
    XCTAssertTrue(try eventually(20) { try dr.follows(dr3) }, "dr follows dr3: \(events(dr.node).suffix(4))")
    XCTAssertEqual(dr.copies, drCopies, "without a copy")
    let kept = try dr3.count("w")
    XCTAssertGreaterThan(kept, 20)

    let resync = try prod.rtdr(["-q", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    XCTAssertTrue(resync.stdout.contains("from dr3"), resync.stdout)
    XCTAssertEqual(try prod.checksum(), try dr3.checksum())
    XCTAssertEqual(try dr3.rtdr(["-q", "-f", "failback"]).status, 0)
    let back = try prod.rtdr(["-q", "failback"])
    XCTAssertEqual(back.status, 0, back.stderr)
    XCTAssertEqual(try prod.role(), "primary")
    XCTAssertEqual(try prod.count("w"), kept)
    XCTAssertTrue(try eventually(20) { try dr.follows(prod) }, "dr follows prod: \(events(dr.node).suffix(4))")
    try understudy(["sql", "--node", prod.node, "INSERT INTO t VALUES (701, 'back on prod')"])
    try dr.catchesUp(with: prod)
    try dr3.catchesUp(with: prod)
  }
}
