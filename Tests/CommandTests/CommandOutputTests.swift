import Foundation
import TestSupport
import XCTest

final class CommandOutputTests: XCTestCase {
  func testEveryJSONOutputMatchesItsSchema() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    let created = try understudy([
      "init", "primary", "--node", node, "--db", root + "/db.sqlite", "--listen", "127.0.0.1:7001", "--json",
    ])
    XCTAssertEqual(created.status, 0, created.stderr)
    try assertConforms(created.json, to: "init.schema.json")
    let backup = try understudy([
      "init", "backup", "--node", root + "/backup", "--db", root + "/backup.sqlite", "--primary", "127.0.0.1:7001",
      "--secret-file", node + "/secret.key", "--json",
    ])
    XCTAssertEqual(backup.status, 0, backup.stderr)
    try assertConforms(backup.json, to: "init.schema.json")
    try assertConforms(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/backup/understudy.json"))),
      to: "node-config.schema.json")
    let backupStatus = try understudy(["status", "--node", root + "/backup", "--json"])
    XCTAssertEqual(backupStatus.status, 0, backupStatus.stderr)
    try assertConforms(backupStatus.json, to: "status.schema.json")
    let secretMode = try FileManager.default.attributesOfItem(atPath: node + "/secret.key")[.posixPermissions] as? Int
    XCTAssertEqual(secretMode, 0o600)
    try assertConforms(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: node + "/understudy.json"))),
      to: "node-config.schema.json")

    let ddl = try understudy([
      "sql", "--node", node, "--json", "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, pic BLOB)",
    ])
    XCTAssertEqual(ddl.status, 0, ddl.stderr)
    try assertConforms(ddl.json, to: "sql.schema.json")
    let first = ddl.json as? [String: Any]
    XCTAssertEqual(first?["txid"] as? Int, 1)
    XCTAssertEqual(first?["position"] as? [String: Int], ["sno": 1, "rba": 64])

    let lines = try understudy(
      ["sql", "--node", node, "--each-line", "--json"],
      stdin:
        "INSERT INTO t VALUES (1, 'a', 1.5, x'00ff')\n\nINSERT INTO t VALUES (2, 'b', NULL, NULL)\nSELECT 1\nUPDATE t SET name = 'z' WHERE id = 1"
    )
    XCTAssertEqual(lines.status, 0, lines.stderr)
    XCTAssertEqual(lines.jsonLines.count, 4)
    for line in lines.jsonLines { try assertConforms(line, to: "sql.schema.json") }
    XCTAssertEqual(lines.jsonLines.compactMap { ($0 as? [String: Any])?["line"] as? Int }, [1, 3, 4, 5])
    XCTAssertTrue(
      (lines.jsonLines[2] as? [String: Any])?["txid"] is NSNull, "a line that changes nothing commits nothing")

    let query = try understudy(["query", "--node", node, "--json", "SELECT * FROM t ORDER BY id"])
    try assertConforms(query.json, to: "query.schema.json")
    let rows = (query.json as? [String: Any])?["rows"] as? [[Any]]
    XCTAssertEqual(rows?.first?[1] as? String, "z")
    XCTAssertEqual((rows?.first?[3] as? [String: String])?["blob"], "00ff")

    let status = try understudy(["status", "--node", node, "--json"])
    try assertConforms(status.json, to: "status.schema.json")
    XCTAssertEqual((status.json as? [String: Any])?["lastTxid"] as? Int, 4)

    let checksum = try understudy(["checksum", "--node", node, "--json"])
    try assertConforms(checksum.json, to: "checksum.schema.json")
    XCTAssertEqual(((checksum.json as? [String: Any])?["tables"] as? [String: [String: Any]])?["t"]?["rows"] as? Int, 2)

    let dump = try understudy(["trail", "dump", "--node", node, "--json"])
    try assertConforms(dump.json, to: "trail-dump.schema.json")
    let records = (dump.json as? [String: Any])?["records"] as? [[String: Any]]
    XCTAssertEqual(records?.count, 4)
    let update = (records?.last?["items"] as? [[String: Any]])?.first
    XCTAssertEqual(update?["op"] as? String, "update")
    XCTAssertEqual(update?["key"] as? [String: Int], ["id": 1])
    let old = update?["old"] as? [String: Any]
    XCTAssertEqual(old?["id"] as? Int, 1)
    XCTAssertEqual(old?["name"] as? String, "a")
    XCTAssertEqual(old?.count, 2)
    XCTAssertEqual(update?["new"] as? [String: String], ["name": "z"])

    let from = try understudy(["trail", "dump", "--node", node, "--from", "1:64"])
    XCTAssertTrue(from.stdout.contains("ddl     CREATE TABLE t"), from.stdout)
    XCTAssertTrue(from.stdout.contains("update t (id=1)  old: id=1, name='a'  new: name='z'"), from.stdout)

    let bench = try understudy(["bench", "commit", "--seconds", "0.2", "--writers", "2", "--dir", root, "--json"])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    try assertConforms(bench.json, to: "bench-commit.schema.json")

    try FileManager.default.createDirectory(atPath: root + "/replicate", withIntermediateDirectories: true)
    let replicate = try understudy([
      "bench", "replicate", "--seconds", "0.2", "--rounds", "2", "--dir", root + "/replicate", "--json",
    ])
    XCTAssertEqual(replicate.status, 0, replicate.stderr)
    try assertConforms(replicate.json, to: "bench-replicate.schema.json")
    XCTAssertEqual(((replicate.json as? [String: Any])?["rounds"] as? [Any])?.count, 2)

    let recover = try understudy(["bench", "recover", "--rows", "300", "--diverged", "5", "--dir", root, "--json"])
    XCTAssertEqual(recover.status, 0, recover.stderr)
    try assertConforms(recover.json, to: "bench-recover.schema.json")
  }

  func testBadInputsFailClearlyAndChangeNothing() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    XCTAssertEqual(try understudy(["init", "primary", "--node", node, "--db", root + "/db.sqlite"]).status, 0)
    XCTAssertEqual(
      try understudy(["sql", "--node", node, "CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE loose(a)"]).status, 0
    )
    try "short\n".write(toFile: root + "/short.key", atomically: true, encoding: .utf8)
    let before = try understudy(["status", "--node", node, "--json"]).stdout
    let sumBefore = try understudy(["checksum", "--node", node, "--json"]).stdout
    let cases: [([String], [String])] = [
      (["sql", "--node", root + "/nowhere", "SELECT 1"], ["is not an Understudy node", "nowhere"]),
      (["sql", "--node", node, "INSERT INTO loose VALUES (1)"], ["table loose has no PRIMARY KEY"]),
      (["sql", "--node", node, "INSERT INTO t VALUES (1); INSERT INTO t VALUS (2)"], ["syntax error"]),
      (["sql", "--node", node, "--file", root + "/missing.sql"], ["cannot read", "missing.sql"]),
      (["trail", "dump", "--node", node, "--from", "1:7"], ["1:7 is not a record boundary"]),
      (["trail", "dump", "--node", node, "--from", "abc"], ["invalid MAT position 'abc'"]),
      (["trail", "dump", "--node", node, "--from", "9:64"], ["AA00000009"]),
      (["init", "primary", "--node", node, "--db", root + "/other.sqlite"], ["already holds an Understudy node"]),
      (
        ["init", "primary", "--node", root + "/n2", "--db", root + "/n2.sqlite", "--listen", "localhost"], ["HOST:PORT"]
      ),
      (["query", "--node", node, "DELETE FROM t"], ["read-only"]),
      (["sql", "--node", node, "UPDATE understudy_state SET last_txid = 0"], ["belongs to Understudy"]),
      (
        [
          "init", "backup", "--node", root + "/b1", "--db", root + "/b1.db", "--primary", "127.0.0.1:9",
          "--secret-file", root + "/none.key",
        ],
        ["cannot read the link secret", "none.key"]
      ),
      (
        [
          "init", "backup", "--node", root + "/b1", "--db", root + "/b1.db", "--primary", "127.0.0.1:9",
          "--secret-file", root + "/short.key",
        ],
        ["at least 16"]
      ),
      (
        [
          "init", "backup", "--node", root + "/b1", "--db", root + "/b1.db", "--primary", "nohost", "--secret-file",
          node + "/secret.key",
        ],
        ["HOST:PORT"]
      ),
      (
        [
          "init", "backup", "--node", root + "/b1", "--db", root + "/db.sqlite", "--primary", "127.0.0.1:9",
          "--secret-file", node + "/secret.key",
        ],
        ["already exists"]
      ),
      (
        [
          "init", "backup", "--node", root + "/b1", "--db", root + "/b1.db", "--primary", "127.0.0.1:9",
          "--secret-file", node + "/secret.key", "--context", "no spaces",
        ],
        ["context name"]
      ),
      (["wait", "--node", node, "--applied", "x:1"], ["invalid MAT position 'x:1'"]),
    ]
    for (arguments, fragments) in cases {
      let text = try understudy(arguments)
      XCTAssertEqual(text.status, 1, "\(arguments)")
      for f in fragments { XCTAssertTrue(text.stderr.contains(f), "\(arguments): '\(f)' not in \(text.stderr)") }
      let json = try understudy(arguments + ["--json"])
      XCTAssertEqual(json.status, 1, "\(arguments)")
      try assertConforms(json.json, to: "error.schema.json")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/n2"))
    XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/b1"))
    for (arguments, fragment) in [
      (["start", "--node", root + "/nowhere"], "is not an Understudy node"),
      (["start", "--node", node], "no listen address"),
      (["stop", "--node", node], "no daemon is running"),
    ] {
      let outcome = try understudy(arguments)
      XCTAssertEqual(outcome.status, 1, "\(arguments)")
      XCTAssertTrue(outcome.stderr.contains(fragment), "\(arguments): '\(fragment)' not in \(outcome.stderr)")
    }
    XCTAssertEqual(try understudy(["status", "--node", node, "--json"]).stdout, before)
    XCTAssertEqual(try understudy(["checksum", "--node", node, "--json"]).stdout, sumBefore)

    // One bad line stops an --each-line run: the lines before it are committed, none after.
    let run = try understudy(
      ["sql", "--node", node, "--each-line", "--json"],
      stdin:
        "INSERT INTO t VALUES (10)\nINSERT INTO t VALUES (11)\nINSERT INTO nope VALUES (1)\nINSERT INTO t VALUES (12)\n"
    )
    XCTAssertEqual(run.status, 1)
    XCTAssertTrue(run.stderr.contains("line 3:") && run.stderr.contains("no such table: nope"), run.stderr)
    let ids =
      try understudy(["query", "--node", node, "--json", "SELECT id FROM t ORDER BY id"]).json as? [String: Any]
    XCTAssertEqual((ids?["rows"] as? [[Int]])?.flatMap { $0 }, [10, 11])
  }

  func testTheDemoPasses() throws {
    let run = try understudy(["demo", "--seed", "11"])
    XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
    XCTAssertTrue(run.stdout.contains("demo passed"), run.stdout)
    XCTAssertFalse(run.stdout.contains("FAIL"), run.stdout)
  }
}
