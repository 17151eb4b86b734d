// Two MIMIX servers on one machine for the rtdr tests: each with its own home, node,
// database and loopback port, registered as context 1; their daemons run in the
// background as `rtstart` leaves them (killed at teardown).

import Foundation
import Harness
import TestSupport
import XCTest

/// `rtdr`, `rtstart`, `rtstop`, `scconfig` built beside the test bundle (each runs
/// `understudy NAME …`).
func aliasBinary(_ name: String) -> String {
  URL(fileURLWithPath: understudyBinary).deletingLastPathComponent().appendingPathComponent(name).path
}

/// Runs a MIMIX command by its own executable name.
@discardableResult
func mimix(_ name: String, _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws
  -> Outcome
{
  try Executable(path: aliasBinary(name)).run(arguments, stdin: stdin, environment: environment)
}

struct MIMIXServer {
  let name: String
  let home: String
  let node: String
  let database: String
  let port: Int
  var address: String { "127.0.0.1:\(port)" }

  /// `rtdr -C 1 … OPERATION --home HOME`, quiet unless told otherwise.
  @discardableResult
  func rtdr(
    _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:], file: StaticString = #filePath,
    line: UInt = #line
  ) throws -> Outcome {
    try mimix(
      "rtdr", ["-C", "1"] + arguments + ["--home", home, "--timeout", "60"], stdin: stdin, environment: environment)
  }

  @discardableResult
  func command(_ name: String, _ arguments: [String]) throws -> Outcome {
    try mimix(name, arguments + ["--home", home])
  }

  /// A full scan: what the database holds (each node's kept checksum must equal it; the
  /// outputs of rtdr, which print the kept one, are compared with this).
  func checksum() throws -> String {
    let outcome = try understudy(["checksum", "--node", node, "--full", "--json"])
    return ((outcome.json as? [String: Any])?["checksum"] as? String) ?? "none: \(outcome.stderr)"
  }

  func role() throws -> String {
    let outcome = try understudy(["status", "--node", node, "--json"])
    return ((outcome.json as? [String: Any])?["role"] as? String) ?? "none: \(outcome.stderr)"
  }

  /// The daemon rtstart left, if it runs.
  var daemonPid: Int32? {
    guard let text = try? String(contentsOfFile: node + "/state/daemon.pid", encoding: .utf8),
      let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0
    else { return nil }
    return pid
  }

  /// SIGKILL, as a lost server.
  func killDaemon() {
    guard let pid = daemonPid else { return }
    kill(pid, SIGKILL)
    _ = try? eventually(10) { self.daemonPid == nil }
  }

  func count(_ table: String) throws -> Int {
    let outcome = try understudy(["query", "--node", node, "--json", "SELECT count(*) FROM \(table)"])
    return ((outcome.json as? [String: Any])?["rows"] as? [[Int]])?.first?.first ?? -1
  }

  /// A backup of `primary`, connected to it now.
  func follows(_ primary: MIMIXServer) throws -> Bool {
    let status = try understudy(["status", "--node", node, "--json"]).json as? [String: Any]
    return status?["role"] as? String == "backup" && status?["primary"] as? String == primary.address
      && status?["connected"] as? Bool == true
  }

  /// A backup streaming from `relay`, a backup that passes on what it receives.
  func relayed(by relay: MIMIXServer) throws -> Bool {
    let status = try understudy(["status", "--node", node, "--json"]).json as? [String: Any]
    let relayStatus = try understudy(["status", "--node", relay.node, "--json"]).json as? [String: Any]
    return status?["primary"] as? String == relay.address && status?["connected"] as? Bool == true
      && status?["relayedBy"] as? String == relayStatus?["nodeId"] as? String
  }

  /// Waits until this node has applied `primary`'s whole MAT, then compares checksums.
  func catchesUp(with primary: MIMIXServer, file: StaticString = #filePath, line: UInt = #line) throws {
    let status = try understudy(["status", "--node", primary.node, "--json"])
    let end = try XCTUnwrap(positionText(status.json, "durableEnd"), status.stderr, file: file, line: line)
    let waited = try understudy(["wait", "--node", node, "--applied", end, "--timeout", "30"])
    XCTAssertEqual(waited.status, 0, waited.stderr, file: file, line: line)
    XCTAssertEqual(try checksum(), try primary.checksum(), file: file, line: line)
  }

  /// How many initial copies this node has received (9021).
  var copies: Int { events(node).filter { $0["code"] as? Int == 9021 }.count }

  /// Every file under the home and the node directory, and the database, byte for byte.
  func fingerprint() throws -> [String: Data] {
    var result: [String: Data] = [:]
    for root in [home, node] {
      guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
      for case let relative as String in walker {
        let path = root + "/" + relative
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
          continue
        }
        result[path] = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
      }
    }
    for suffix in ["", "-wal"] {
      if let data = try? Data(contentsOf: URL(fileURLWithPath: database + suffix)) {
        result[database + suffix] = data
      }
    }
    return result
  }
}

/// Production (`prod`) and one recovery server (`dr`) of context 1, both daemons running
/// and the replica caught up; a table `t` with a few rows.
struct MIMIXPair {
  let root: String
  let production: MIMIXServer
  let recovery: MIMIXServer

  /// Seconds each recovery server keeps applied image-trail files.
  let retention: Int

  init(_ test: XCTestCase, rows: Int = 5, retention: Int = 3600) throws {
    self.retention = retention
    let root = try temporaryDirectory(test)
    self.root = root
    func server(_ name: String) -> MIMIXServer {
      MIMIXServer(
        name: name, home: root + "/\(name)/home", node: root + "/\(name)/node", database: root + "/\(name)/data.db",
        port: freePort())
    }
    production = server("prod")
    recovery = server("dr")
    let p = try understudy([
      "init", "primary", "--node", production.node, "--db", production.database, "--listen", production.address,
      "--context", "1", "--name", "prod", "--home", production.home, "--trail-file-size", "65536",
    ])
    XCTAssertEqual(p.status, 0, p.stderr)
    let created = try understudy([
      "sql", "--node", production.node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    ])
    XCTAssertEqual(created.status, 0, created.stderr)
    for i in 1...rows { try understudy(["sql", "--node", production.node, "INSERT INTO t VALUES (\(i), 'row \(i)')"]) }
    let b = try understudy([
      "init", "backup", "--node", recovery.node, "--db", recovery.database, "--primary", production.address,
      "--secret-file", production.node + "/secret.key", "--listen", recovery.address, "--context", "1", "--name", "dr",
      "--home", recovery.home, "--retention", String(retention), "--trail-file-size", "65536",
    ])
    XCTAssertEqual(b.status, 0, b.stderr)
    let (prod, dr) = (production, recovery)
    test.addTeardownBlock {
      prod.killDaemon()
      dr.killDaemon()
    }
    for server in [production, recovery] {
      let started = try server.command("rtstart", ["-C", "1"])
      XCTAssertEqual(started.status, 0, started.stderr)
    }
    try waitForReplica()
  }

  /// A further recovery server, registered and started: of production (fan-out), or
  /// behind `upstream`, which relays to it what it receives (a cascade).
  func addRecoveryServer(_ test: XCTestCase, name: String, behind upstream: MIMIXServer? = nil) throws -> MIMIXServer {
    let server = MIMIXServer(
      name: name, home: root + "/\(name)/home", node: root + "/\(name)/node", database: root + "/\(name)/data.db",
      port: freePort())
    let b = try understudy([
      "init", "backup", "--node", server.node, "--db", server.database, "--primary",
      (upstream ?? production).address,
      "--secret-file", production.node + "/secret.key", "--listen", server.address, "--context", "1", "--name", name,
      "--home", server.home, "--retention", String(retention), "--trail-file-size", "65536",
    ])
    XCTAssertEqual(b.status, 0, b.stderr)
    test.addTeardownBlock { server.killDaemon() }
    let started = try server.command("rtstart", ["-C", "1"])
    XCTAssertEqual(started.status, 0, started.stderr)
    let status = try understudy(["status", "--node", production.node, "--json"])
    let end = try XCTUnwrap(positionText(status.json, "durableEnd"), status.stderr)
    XCTAssertEqual(try understudy(["wait", "--node", server.node, "--applied", end, "--timeout", "30"]).status, 0)
    if let upstream {
      XCTAssertTrue(
        try eventually(10) { try server.relayed(by: upstream) }, "\(name) streams from relay \(upstream.name)")
    } else {
      XCTAssertTrue(
        try eventually(10) {
          let status = try understudy(["status", "--node", production.node, "--json"]).json as? [String: Any]
          return (status?["backups"] as? [Any])?.count == 2
        }, "both recovery servers attached")
    }
    return server
  }

  /// A second recovery server `dr2`, and failover context 2 set up on all three servers
  /// with dr2 as the failover site.
  func addFailoverSite(_ test: XCTestCase, file: StaticString = #filePath, line: UInt = #line) throws
    -> MIMIXServer
  {
    let dr2 = try addRecoveryServer(test, name: "dr2")
    for server in [production, recovery, dr2] {
      let setup = try server.rtdr(["-q", "-F", "2", "-s", "dr2", "setup"])
      XCTAssertEqual(setup.status, 0, "\(server.name): \(setup.stderr)", file: file, line: line)
    }
    return dr2
  }

  /// Waits until the node following the other has applied its whole MAT.
  func waitForReplica(from primary: MIMIXServer? = nil, timeout: Double = 30) throws {
    let (source, target) =
      primary.map { $0.name == production.name ? (production, recovery) : (recovery, production) }
      ?? (production, recovery)
    let status = try understudy(["status", "--node", source.node, "--json"])
    let end = try XCTUnwrap(positionText(status.json, "durableEnd"), status.stderr)
    let waited = try understudy(["wait", "--node", target.node, "--applied", end, "--timeout", String(timeout)])
    XCTAssertEqual(waited.status, 0, waited.stderr)
  }

  func setUp() throws {
    for server in [production, recovery] {
      let outcome = try server.rtdr(["-F", "2", "-q", "setup"])
      XCTAssertEqual(outcome.status, 0, outcome.stderr)
    }
  }

  /// setup on both servers, production lost with `unshipped` transactions, failover on
  /// the recovery server.
  func failOver(unshipped: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    try setUp()
    try loseProduction(unshipped: unshipped)
    let failover = try recovery.rtdr(["-q", "failover"])
    XCTAssertEqual(failover.status, 0, failover.stderr, file: file, line: line)
  }

  /// Production lost: its daemon SIGKILLed, then `count` transactions committed there
  /// that the recovery server never receives.
  func loseProduction(unshipped count: Int) throws {
    production.killDaemon()
    for i in 0..<count {
      let outcome = try understudy([
        "sql", "--node", production.node, "INSERT INTO t VALUES (\(900_000 + i), 'never shipped')",
      ])
      XCTAssertEqual(outcome.status, 0, outcome.stderr)
    }
  }
}
