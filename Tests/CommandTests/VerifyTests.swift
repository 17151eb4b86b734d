// The kept checksum (Schemas/checksum.md) on real nodes: `verify` catches a row changed
// behind Understudy's back on the backup, naming the table; takeover and file recovery
// print the checksum a full scan gives, without scanning.

import Foundation
import SQLiteSupport
import TestSupport
import XCTest

final class VerifyTests: XCTestCase {
  func testARowChangedBehindUnderstudysBackIsCaughtByVerifyNamingTheTable() throws {
    let pair = try MIMIXPair(self, rows: 50)
    let (prod, dr) = (pair.production, pair.recovery)
    try understudy(["sql", "--node", prod.node, "CREATE TABLE other(id INTEGER PRIMARY KEY, x)"])
    try understudy(["sql", "--node", prod.node, "INSERT INTO other VALUES (1, 2.5)"])
    try pair.waitForReplica()
    for server in [prod, dr] {
      let ok = try understudy(["verify", "--node", server.node, "--json"])
      XCTAssertEqual(ok.status, 0, "\(server.name): \(ok.stdout) \(ok.stderr)")
      try assertConforms(ok.json, to: "verify.schema.json")
    }
    // One byte of one row, with SQLite directly: no tracker sees it.
    do {
      let raw = try Connection(path: dr.database)
      try raw.execute("UPDATE t SET v = 'row 8' WHERE id = 7")
    }
    let caught = try understudy(["verify", "--node", dr.node, "--json"])
    XCTAssertEqual(caught.status, 1, caught.stdout)
    try assertConforms(caught.json, to: "verify.schema.json")
    let differ = (caught.json as? [String: Any])?["differ"] as? [[String: Any]]
    XCTAssertEqual(differ?.compactMap { $0["table"] as? String }, ["t"], caught.stdout)
    let text = try understudy(["verify", "--node", dr.node])
    XCTAssertTrue(text.stdout.contains("DIFFERENT: t"), text.stdout)
    XCTAssertEqual(try understudy(["verify", "--node", prod.node]).status, 0, "production is untouched")
  }

  func testTakeoverAndFileRecoveryPrintWhatAFullScanGives() throws {
    let pair = try MIMIXPair(self, rows: 200)
    let (prod, dr) = (pair.production, pair.recovery)
    try pair.setUp()
    try pair.loseProduction(unshipped: 5)
    let failover = try dr.rtdr(["-q", "--json", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr)
    let takeover = ((failover.json as? [String: Any])?["details"] as? [String: Any])?["takeover"] as? [String: Any]
    let full = try understudy(["checksum", "--node", dr.node, "--full", "--json"])
    XCTAssertEqual(takeover?["checksum"] as? String, (full.json as? [String: Any])?["checksum"] as? String)

    let resync = try prod.rtdr(["-q", "--json", "resync"])
    XCTAssertEqual(resync.status, 0, resync.stderr)
    let steps = (resync.json as? [String: Any])?["steps"] as? [[String: Any]] ?? []
    let recover = steps.first { ($0["command"] as? String)?.contains("recover --node") == true }
    let recovered = recover?["details"] as? [String: Any]
    XCTAssertEqual(recovered?["undone"] as? Int, 5)
    XCTAssertEqual(recovered?["checksum"] as? String, takeover?["checksum"] as? String)
    for server in [prod, dr] {
      let ok = try understudy(["verify", "--node", server.node])
      XCTAssertEqual(ok.status, 0, "\(server.name): \(ok.stdout) \(ok.stderr)")
    }
  }

  /// Continuous verification: a column no later change names is changed on the backup
  /// behind Understudy's back, so the primary's next update of that row still applies
  /// there (its changeset carries only the key and the column it sets). The rows it
  /// changed move the backup's checksum of the table other than the commit record says
  /// they moved the primary's: the updater stops at that transaction (9087) naming it
  /// and the table, and applies nothing of it.
  func testTheUpdaterStopsAtTheFirstTransactionWhoseRowsDiffer() throws {
    let pair = try MIMIXPair(self)
    let (prod, dr) = (pair.production, pair.recovery)
    try understudy(["sql", "--node", prod.node, "CREATE TABLE u(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)"])
    try understudy(["sql", "--node", prod.node, "INSERT INTO u VALUES (1, 'x', 0), (2, 'y', 0)"])
    try pair.waitForReplica()
    try writeBehindReplication(dr.database, "UPDATE u SET a = 'changed behind replication' WHERE id = 1")
    try understudy(["sql", "--node", prod.node, "UPDATE u SET b = 1 WHERE id = 2"])
    let update = try understudy(["sql", "--node", prod.node, "--json", "UPDATE u SET b = 5 WHERE id = 1"])
    let txid = try XCTUnwrap((update.json as? [String: Any])?["txid"] as? Int, update.stdout + update.stderr)
    XCTAssertTrue(
      try eventually(10) { events(dr.node).contains { $0["code"] as? Int == 9087 } },
      "the updater stops: \(events(dr.node).suffix(3))")
    let stop = try XCTUnwrap(events(dr.node).first { $0["code"] as? Int == 9087 })
    XCTAssertEqual(stop["txid"] as? Int, txid)
    XCTAssertEqual(stop["table"] as? String, "u")
    XCTAssertTrue((stop["message"] as? String)?.contains("table u") == true, "\(stop)")
    XCTAssertTrue(
      try eventually(5) {
        let status = try understudy(["status", "--node", dr.node, "--json"]).json as? [String: Any]
        return (status?["updaterStopped"] as? String)?.contains("transaction \(txid)") == true
      }, "status says where the updater stopped")
    let b = try understudy(["query", "--node", dr.node, "--json", "SELECT b FROM u ORDER BY id"])
    XCTAssertEqual(
      (b.json as? [String: Any])?["rows"] as? [[Int]], [[0], [1]], "the earlier update applied, not this one")
    XCTAssertEqual(try understudy(["verify", "--node", dr.node]).status, 1)
  }
}
