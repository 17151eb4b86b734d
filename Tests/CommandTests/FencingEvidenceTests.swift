// A primary accepts being superseded only on evidence it can check: a node of the next
// generation whose base is a record boundary of its own MAT, after the transaction the
// base names. A backup that announces a forged generation, or a node that serves at a
// backup's address claiming the next generation with no base or a false one, is refused
// (9070) and the primary keeps taking writes. Real takeovers still fence (ProcedureTests).

import AuditTrail
import Foundation
import Link
import TestSupport
import XCTest

final class FencingEvidenceTests: XCTestCase {
  func testABackupWithAForgedGenerationDoesNotFenceThePrimary() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    let (primary, backup) = try pair.startDaemons()
    try backup.stop()
    try editJSON(pair.backup + "/understudy.json") { $0["generation"] = 99 }
    let forged = try Daemon(node: pair.backup)
    defer { try? forged.stop() }

    XCTAssertTrue(
      eventually(20) { events(pair.primary).contains { [829, 9070].contains($0["code"] as? Int) } },
      "no 9070: \(events(pair.primary).suffix(4))")
    sleep(1)
    XCTAssertFalse(events(pair.primary).contains { $0["code"] as? Int == 829 }, "fenced by a forged generation")
    let refusal = try XCTUnwrap(events(pair.primary).first { $0["code"] as? Int == 9070 })
    XCTAssertEqual(refusal["generation"] as? Int, 99)
    XCTAssertTrue((refusal["message"] as? String ?? "").contains("generation 99"), "\(refusal)")
    try assertConforms(refusal, to: "event.schema.json")
    XCTAssertTrue(primary.isRunning)
    try pair.sql("INSERT INTO t VALUES (2, 'still the primary')")
    let config = try jsonObject(pair.primary + "/understudy.json")
    XCTAssertNil(config["superseded"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.primary + "/state/writes-blocked"))
    try primary.stop()
  }

  func testANodeAtABackupsAddressWithoutAValidBaseDoesNotFenceThePrimary() throws {
    let pair = try Pair(self, backupListens: true)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    let (primary, backup) = try pair.startDaemons()
    try backup.stop()
    let status = try XCTUnwrap(try understudy(["status", "--node", pair.primary, "--json"]).json as? [String: Any])
    let primaryID = try XCTUnwrap(status["nodeId"] as? String)
    let lastTxid = try XCTUnwrap(status["lastTxid"] as? Int)
    let end = try XCTUnwrap(status["durableEnd"] as? [String: Any])
    let backupConfig = try jsonObject(pair.backup + "/understudy.json")
    let listen = try XCTUnwrap(backupConfig["listen"] as? String)

    // A node that holds the key and serves where the backup would, at the next generation.
    let impostor = pair.root + "/impostor"
    let made = try understudy([
      "init", "primary", "--node", impostor, "--db", pair.root + "/impostor.db", "--listen", listen, "--secret-file",
      pair.primary + "/secret.key",
    ])
    XCTAssertEqual(made.status, 0, made.stderr)
    let endSno = try XCTUnwrap(end["sno"] as? Int)
    let endRba = try XCTUnwrap(end["rba"] as? Int)
    let claims: [(String, [String: Any]?, String)] = [
      ("no base", nil, "did not begin with a takeover"),
      (
        "a base after another transaction",
        base(primaryID, txid: lastTxid + 5, sno: endSno, rba: endRba), "not \(lastTxid + 5)"
      ),
      ("a base inside a record", base(primaryID, txid: lastTxid, sno: endSno, rba: endRba - 8), "record boundary"),
      (
        "a base in another node's MAT",
        base(UUID().uuidString.lowercased(), txid: lastTxid, sno: endSno, rba: endRba), "not this node's"
      ),
    ]
    for (what, forgedBase, reason) in claims {
      try editJSON(impostor + "/understudy.json") {
        $0["generation"] = 2
        $0["generationBase"] = forgedBase
      }
      let before = events(pair.primary).filter { $0["code"] as? Int == 9070 }.count
      let daemon = try Daemon(node: impostor)
      XCTAssertTrue(
        eventually(20) { events(pair.primary).filter { $0["code"] as? Int == 9070 }.count > before },
        "\(what): no 9070: \(events(pair.primary).suffix(4))")
      try daemon.stop()
      let refusal = try XCTUnwrap(events(pair.primary).last { $0["code"] as? Int == 9070 })
      XCTAssertTrue((refusal["message"] as? String ?? "").contains(reason), "\(what): \(refusal)")
      XCTAssertEqual(refusal["listen"] as? String, listen, what)
      XCTAssertFalse(events(pair.primary).contains { $0["code"] as? Int == 829 }, "\(what): fenced")
      XCTAssertTrue(primary.isRunning, what)
    }
    try pair.sql("INSERT INTO t VALUES (2, 'still the primary')")
    XCTAssertNil(try jsonObject(pair.primary + "/understudy.json")["superseded"])
    try primary.stop()
  }

  /// The base query and answer ride on follow-request and follow-accept by payload size;
  /// the plain messages decode as before, and a size of neither kind is a bad frame.
  func testBaseQueryAndAnswerShareFollowFramesCompatibly() throws {
    let base = Message.GenerationBase(
      generation: Generation(3), matStart: MATPosition(sno: 7, rba: 64), priorNode: NodeID(),
      priorTxid: TransactionID(41), priorEnd: MATPosition(sno: 6, rba: 9000), checksum: "abc123")
    let query = Message.baseQuery.frame
    XCTAssertEqual(query.type, .followRequest)
    XCTAssertEqual(query.payload, [])
    guard case .baseQuery = try Message(decoding: query, peer: "test") else { return XCTFail("not a base query") }
    let answer = Message.base(base).frame
    XCTAssertEqual(answer.type, .followAccept)
    XCTAssertEqual(answer.payload.count, 58 + 6)
    guard case .base(let decoded) = try Message(decoding: answer, peer: "test") else { return XCTFail("not a base") }
    XCTAssertEqual(decoded, base)
    let accept = Message.followAccept(matStart: MATPosition(sno: 7, rba: 64)).frame
    XCTAssertEqual(accept.payload.count, 12)
    guard case .followAccept(let start) = try Message(decoding: accept, peer: "test") else {
      return XCTFail("a plain follow-accept no longer decodes")
    }
    XCTAssertEqual(start, MATPosition(sno: 7, rba: 64))
    let request = Message.followRequest(
      .init(priorNode: base.priorNode, priorTxid: base.priorTxid, priorEnd: base.priorEnd, checksum: ""))
    guard case .followRequest = try Message(decoding: request.frame, peer: "test") else {
      return XCTFail("a follow-request with an empty checksum is not a base query")
    }
    XCTAssertThrowsError(try Message(decoding: Frame(.followAccept, Array(answer.payload.prefix(30))), peer: "test"))
  }

  private func base(_ node: String, txid: Int, sno: Int, rba: Int) -> [String: Any] {
    [
      "generation": 2, "matStart": ["sno": sno + 1, "rba": 64], "priorNode": node, "priorTxid": txid,
      "priorEnd": ["sno": sno, "rba": rba], "checksum": "forged",
    ]
  }
}

func jsonObject(_ path: String) throws -> [String: Any] {
  try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
}

/// Rewrites a JSON object file in place (a config edited by hand).
func editJSON(_ path: String, _ change: (inout [String: Any]) -> Void) throws {
  var object = try jsonObject(path)
  change(&object)
  try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    .write(to: URL(fileURLWithPath: path))
}
