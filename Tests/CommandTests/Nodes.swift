// Helpers for tests with two nodes on 127.0.0.1: free ports, daemons as real
// processes (stopped cleanly or SIGKILLed), positions from `status --json`.

import Foundation
import Harness
import Link
import Node
import TestSupport
import XCTest

/// A TCP port nobody listens on right now (bound and released).
func freePort() -> Int { Harness.freePort() }

/// `understudy start --node DIR` as a child process; its output goes to `NODE.log`. Returns
/// once the daemon holds the node (it says so with 9001) or has exited: a test that starts
/// a second daemon at once must find this one running, not race it. SIGKILLed if still
/// running when dropped.
final class Daemon {
  let daemon: DaemonProcess
  var node: String { daemon.node }
  var process: Process { daemon.process }

  init(node: String, environment: [String: String] = [:]) throws {
    daemon = try DaemonProcess(executable: understudyExecutable, node: node, environment: environment, startTimeout: 20)
  }

  var isRunning: Bool { daemon.isRunning }

  func kill() { daemon.kill() }

  /// `understudy stop`, which must succeed.
  func stop() throws {
    guard let outcome = try daemon.stopWithCommand() else { return }
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
  }
}

/// A position field of a `status --json` or `sql --json` object as `SNO:RBA`.
func positionText(_ object: Any?, _ key: String) -> String? {
  guard let dict = object as? [String: Any], let p = dict[key] as? [String: Any], let sno = p["sno"] as? Int,
    let rba = p["rba"] as? Int
  else { return nil }
  return "\(sno):\(rba)"
}

/// The events a node has logged, decoded.
func events(_ node: String) -> [[String: Any]] { nodeEvents(node) }

/// A JSON file under `NODE/state/` (a journal or a daemon's snapshot), parsed: for a schema check.
func stateFile(_ node: String, _ name: String) throws -> Any {
  try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: node + "/state/" + name)))
}

/// `understudy ARGS` started in the background with its output discarded: a procedure
/// to SIGKILL mid-run.
func startUnderstudy(_ arguments: [String]) throws -> Process { try understudyExecutable.start(arguments) }

/// Waits until `condition` holds, up to `seconds`.
func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
  try Harness.eventually(seconds, condition)
}

/// A primary and a backup on loopback.
struct Pair {
  let root: String
  let port: Int
  let backupPort: Int?
  let primary: String
  var backup: String { root + "/backup" }
  let primaryDB: String
  var backupDB: String { root + "/backup.db" }

  /// `backupConnectsTo`: a port the backup uses instead of the primary's (a proxy).
  /// `backupListens`: give the backup a listen address, so it can become a primary.
  /// `primaryNode`, `primaryDatabase`: put them elsewhere (a small disk).
  init(
    _ test: XCTestCase, trailFileSize: Int = 65536, retention: Int = 0, backupConnectsTo: Int? = nil,
    backupListens: Bool = false, primaryNode: String? = nil, primaryDatabase: String? = nil,
    primaryOptions: [String] = []
  ) throws {
    root = try temporaryDirectory(test)
    primary = primaryNode ?? root + "/primary"
    primaryDB = primaryDatabase ?? root + "/primary.db"
    port = freePort()
    backupPort = backupListens ? freePort() : nil
    let p = try understudy(
      [
        "init", "primary", "--node", primary, "--db", primaryDB, "--listen", "127.0.0.1:\(port)",
        "--trail-file-size", String(trailFileSize),
      ] + primaryOptions)
    XCTAssertEqual(p.status, 0, p.stderr)
    let b = try understudy(
      [
        "init", "backup", "--node", root + "/backup", "--db", root + "/backup.db", "--primary",
        "127.0.0.1:\(backupConnectsTo ?? port)",
        "--secret-file", primary + "/secret.key", "--retention", String(retention),
      ] + (backupPort.map { ["--listen", "127.0.0.1:\($0)"] } ?? []))
    XCTAssertEqual(b.status, 0, b.stderr)
  }

  /// The primary's own link identity: what a test that plays a hostile primary (one
  /// holding the key, the worst case) presents.
  func primaryIdentity() throws -> LinkIdentity {
    let config = try NodeLayout(root: primary).loadConfig()
    return LinkIdentity(
      context: "default", nodeID: config.nodeId, generation: config.generation,
      key: try Secret.load(path: primary + "/secret.key"))
  }

  func sql(_ statements: String...) throws {
    let outcome = try understudy(["sql", "--node", primary] + statements)
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
  }

  /// The primary's durable end, as `SNO:RBA`.
  func primaryEnd() throws -> String {
    let outcome = try understudy(["status", "--node", primary, "--json"])
    return try XCTUnwrap(positionText(outcome.json, "durableEnd"), outcome.stderr)
  }

  /// Starts both daemons and waits until the backup has applied the primary's end.
  func startDaemons(primaryEnvironment: [String: String] = [:]) throws -> (primary: Daemon, backup: Daemon) {
    let daemons = (try Daemon(node: primary, environment: primaryEnvironment), try Daemon(node: backup))
    try waitForBackup()
    return daemons
  }

  /// Waits until the backup has applied the primary's end; returns the `wait` outcome.
  @discardableResult
  func waitForBackup(timeout: Double = 60) throws -> Outcome {
    let outcome = try understudy([
      "wait", "--node", backup, "--applied", try primaryEnd(), "--timeout", String(timeout),
    ])
    XCTAssertEqual(
      outcome.status, 0, outcome.stderr + "\n" + ((try? String(contentsOfFile: backup + ".log", encoding: .utf8)) ?? "")
    )
    return outcome
  }

  func checksum(_ node: String) throws -> String {
    let outcome = try understudy(["checksum", "--node", node, "--json"])
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
    return ((outcome.json as? [String: Any])?["checksum"] as? String) ?? "none"
  }

  func assertSameContent(_ context: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(try checksum(primary), try checksum(backup), context, file: file, line: line)
  }
}
