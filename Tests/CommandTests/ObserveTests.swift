// `start --metrics` and `--log-format json` against real daemons on 127.0.0.1: /metrics
// parsed by Python's prometheus_client and compared with `status --json`, each health
// endpoint's 200 and 503 (and 400) answers, JSON log lines, and systemd's READY=1 on a
// unix datagram socket the test binds.

import Foundation
import Harness
import Link
import Node
import XCTest

final class ObserveTests: XCTestCase {
  /// Parses Prometheus text with prometheus_client: [name: [(labels, value)]].
  func parseMetrics(_ text: String) throws -> [String: [([String: String], Double)]] {
    try ensurePrometheusClient()
    let script = """
      import sys, json
      from prometheus_client.parser import text_string_to_metric_families
      out = {}
      for family in text_string_to_metric_families(sys.stdin.read()):
          for s in family.samples:
              out.setdefault(s.name, []).append([s.labels, s.value])
      print(json.dumps(out))
      """
    let outcome = try Executable(path: "/usr/bin/python3").run(["-c", script], stdin: text)
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
    let object = try XCTUnwrap(outcome.json as? [String: [[Any]]], outcome.stdout + outcome.stderr)
    return object.mapValues { $0.map { (($0[0] as? [String: String]) ?? [:], ($0[1] as? Double) ?? .nan) } }
  }

  func ensurePrometheusClient() throws {
    let python = Executable(path: "/usr/bin/python3")
    if try python.run(["-c", "import prometheus_client"]).status == 0 { return }
    var install = try python.run(["-m", "pip", "install", "-q", "prometheus_client"])
    if install.status != 0 {
      install = try python.run(["-m", "pip", "install", "-q", "--break-system-packages", "prometheus_client"])
    }
    XCTAssertEqual(install.status, 0, install.stderr)
  }

  /// GET http://HOST:PORT/PATH (HOST 127.0.0.1 unless given, `[::1]` for IPv6): status code and body.
  func get(_ port: Int, _ path: String, host: String = "127.0.0.1") throws -> (status: Int, body: String) {
    // -g: the brackets of an IPv6 host are not a range to expand.
    let outcome = try Executable(path: "/usr/bin/curl").run([
      "-s", "-g", "-m", "10", "-w", "\n%{http_code}", "http://\(host):\(port)\(path)",
    ])
    var lines = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    let code = Int(lines.popLast() ?? "") ?? 0
    return (code, lines.joined(separator: "\n"))
  }

  func value(_ metrics: [String: [([String: String], Double)]], _ name: String, _ labels: [String: String] = [:])
    -> Double?
  {
    metrics[name]?.first { sample in labels.allSatisfy { sample.0[$0.key] == $0.value } }?.1
  }

  /// A position as /metrics counts it, with the node's own `trailFileSize`.
  func bytes(_ object: Any?, _ key: String, fileSize: Int) throws -> Double {
    let text = try XCTUnwrap(positionText(object, key), "\(key) in \(String(describing: object))")
    let parts = text.split(separator: ":").map { Double($0)! }
    return (parts[0] - 1) * Double(fileSize) + parts[1]
  }

  /// Sets the node's `metrics` address in its `understudy.json`.
  func setMetrics(_ node: String, _ address: String) throws {
    let path = node + "/understudy.json"
    var config = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    config["metrics"] = address
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
  }

  func testMetricsHealthLogsAndReadiness() throws {
    let pair = try Pair(self)
    let primaryMetrics = freePort()
    let backupMetrics = freePort()
    // The primary's address comes from its config, the backup's from `--metrics`.
    try setMetrics(pair.primary, "127.0.0.1:\(primaryMetrics)")

    // systemd's side: a unix datagram socket the daemon is told of in NOTIFY_SOCKET.
    // sun_path holds 108 bytes: a short path, not the test's deep temporary directory.
    let socketPath = "/tmp/understudy-notify-\(getpid()).sock"
    unlink(socketPath)
    defer { unlink(socketPath) }
    let notify = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    XCTAssertGreaterThanOrEqual(notify, 0)
    defer { close(notify) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (i, b) in socketPath.utf8.enumerated() { raw[i] = b }
    }
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(notify, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    XCTAssertEqual(bound, 0, "bind \(socketPath): errno \(errno)")
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(notify, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

    let primary = try Daemon(node: pair.primary)
    let backupLog = pair.backup + ".json.log"
    FileManager.default.createFile(atPath: backupLog, contents: nil)
    let backup = understudyExecutable.process(
      ["start", "--node", pair.backup, "--metrics", "127.0.0.1:\(backupMetrics)", "--log-format", "json"],
      environment: ["NOTIFY_SOCKET": socketPath])
    backup.standardError = FileHandle(forWritingAtPath: backupLog)
    backup.standardOutput = FileHandle.nullDevice
    try backup.run()
    defer { if backup.isRunning { kill(backup.processIdentifier, SIGKILL) } }

    var buffer = [UInt8](repeating: 0, count: 256)
    let received = recv(notify, &buffer, buffer.count, 0)
    XCTAssertGreaterThan(received, 0, "no datagram on NOTIFY_SOCKET within 30 s")
    XCTAssertTrue(String(decoding: buffer.prefix(max(0, received)), as: UTF8.self).contains("READY=1"))

    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES ('one')")
    try pair.sql("INSERT INTO t(v) VALUES ('two')", "INSERT INTO t(v) VALUES ('zebra-row-value-7731')")
    // Past the first 64 KiB file, so that positions have sno > 1.
    for _ in 0..<4 { try pair.sql("INSERT INTO t(v) VALUES (hex(randomblob(12000)))") }
    try pair.waitForBackup()
    XCTAssertTrue(
      try eventually(10) {
        // Acks reach the primary after the backup has applied (CI once compared a status
        // whose ack trailed the scrape's): wait until the primary has heard the last one.
        let s = try understudy(["status", "--node", pair.primary, "--json"]).json as? [String: Any]
        guard let backups = s?["backups"] as? [Any], backups.count == 1 else { return false }
        return positionText(backups.first, "acked") == positionText(s, "durableEnd")
      })

    // The primary: what /metrics says is what `status --json` says.
    let pStatus = try understudy(["status", "--node", pair.primary, "--json"]).json
    let eventsBefore = events(pair.primary).count
    let pMetrics = try parseMetrics(try get(primaryMetrics, "/metrics").body)
    let eventsAfter = events(pair.primary).count
    let ps = try XCTUnwrap(pStatus as? [String: Any])
    let primarySize = try NodeLayout(root: pair.primary).loadConfig().trailFileSize
    let backupSize = try NodeLayout(root: pair.backup).loadConfig().trailFileSize
    XCTAssertGreaterThan(
      try XCTUnwrap(positionText(ps, "durableEnd")).split(separator: ":").first.flatMap { Int($0) } ?? 0, 1)
    XCTAssertEqual(value(pMetrics, "understudy_trail_file_size_bytes"), Double(primarySize))
    XCTAssertEqual(value(pMetrics, "understudy_role", ["role": "primary"]), 1)
    XCTAssertEqual(value(pMetrics, "understudy_role", ["role": "backup"]), 0)
    XCTAssertEqual(value(pMetrics, "understudy_generation"), (ps["generation"] as? Int).map(Double.init))
    XCTAssertEqual(
      value(pMetrics, "understudy_mat_durable_end_bytes"), try bytes(ps, "durableEnd", fileSize: primarySize))
    XCTAssertEqual(value(pMetrics, "understudy_connected_backups"), 1)
    XCTAssertEqual(
      value(pMetrics, "understudy_trail_disk_bytes", ["trail": "mat"]), (ps["matBytes"] as? Int).map(Double.init))
    let attached = try XCTUnwrap((ps["backups"] as? [[String: Any]])?.first)
    XCTAssertEqual(
      value(pMetrics, "understudy_backup_acked_bytes", ["backup": attached["nodeId"] as! String]),
      try bytes(attached, "acked", fileSize: primarySize))
    let eventsTotal = pMetrics["understudy_events_total"]?.reduce(0) { $0 + $1.1 } ?? 0
    XCTAssertGreaterThanOrEqual(eventsTotal, Double(eventsBefore))
    XCTAssertLessThanOrEqual(eventsTotal, Double(eventsAfter))
    XCTAssertGreaterThanOrEqual(value(pMetrics, "understudy_commits_total") ?? 0, 2)
    XCTAssertEqual(
      value(pMetrics, "understudy_commit_latency_seconds_count"), value(pMetrics, "understudy_commits_total"))

    // The backup's positions.
    let bMetrics = try parseMetrics(try get(backupMetrics, "/metrics").body)
    let bs = try XCTUnwrap(try understudy(["status", "--node", pair.backup, "--json"]).json as? [String: Any])
    XCTAssertEqual(value(bMetrics, "understudy_role", ["role": "backup"]), 1)
    XCTAssertEqual(value(bMetrics, "understudy_generation"), (bs["generation"] as? Int).map(Double.init))
    XCTAssertEqual(value(bMetrics, "understudy_backup_applied_bytes"), try bytes(bs, "applied", fileSize: backupSize))
    XCTAssertEqual(value(bMetrics, "understudy_backup_acked_bytes"), try bytes(bs, "acked", fileSize: backupSize))
    XCTAssertEqual(value(bMetrics, "understudy_backlog_records"), 0)
    XCTAssertEqual(value(bMetrics, "understudy_link_connected"), 1)
    XCTAssertNotNil(value(bMetrics, "understudy_rtd_seconds", ["stage": "updater"]))

    // Health.
    XCTAssertEqual(try get(primaryMetrics, "/health").status, 200)
    XCTAssertEqual(try get(backupMetrics, "/health").status, 200)
    let writable = try get(primaryMetrics, "/primary")
    XCTAssertEqual(writable.status, 200, writable.body)
    try assertConforms(try JSONSerialization.jsonObject(with: Data(writable.body.utf8)), to: "health.schema.json")
    let notPrimary = try get(backupMetrics, "/primary")
    XCTAssertEqual(notPrimary.status, 503)
    try assertConforms(try JSONSerialization.jsonObject(with: Data(notPrimary.body.utf8)), to: "health.schema.json")
    XCTAssertEqual(
      (try JSONSerialization.jsonObject(with: Data(notPrimary.body.utf8)) as? [String: Any])?["reason"] as? String,
      "not a primary")
    XCTAssertEqual(try get(primaryMetrics, "/backup?max_rtd=60").status, 503)
    XCTAssertEqual(try get(backupMetrics, "/backup?max_rtd=60").status, 200)
    let refused = try get(backupMetrics, "/backup?max_rtd=abc")
    XCTAssertEqual(refused.status, 400)
    try assertConforms(try JSONSerialization.jsonObject(with: Data(refused.body.utf8)), to: "health.schema.json")
    try assertConforms(stateFile(pair.primary, "commit-stats.json"), to: "state-commit-stats.schema.json")

    // 503 from /health and /primary while the primary cannot learn of a takeover
    // (state/backups.json unreadable), 200 again once it reads.
    let known = pair.primary + "/state/backups.json"
    let saved = try? Data(contentsOf: URL(fileURLWithPath: known))
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: known))
    let broken = try get(primaryMetrics, "/health")
    XCTAssertEqual(broken.status, 503, broken.body)
    XCTAssertTrue(broken.body.contains("fencing broken"), broken.body)
    XCTAssertEqual(try get(primaryMetrics, "/primary").status, 503)
    if let saved {
      try saved.write(to: URL(fileURLWithPath: known))
    } else {
      try FileManager.default.removeItem(atPath: known)
    }
    XCTAssertEqual(try get(primaryMetrics, "/health").status, 200)

    // The updater held while the primary writes on: behind, then caught up after `updater start`.
    let now = Int64(Date().timeIntervalSince1970 * 1e6)
    let stop = try understudy([
      "updater", "stop", "--node", pair.backup, "--at",
      String(format: "%lld.%06lld", now / 1_000_000, now % 1_000_000),
    ])
    XCTAssertEqual(stop.status, 0, stop.stderr)
    for i in 0..<5 { try pair.sql("INSERT INTO t(v) VALUES ('after \(i)')") }
    XCTAssertTrue(try eventually(20) { try get(backupMetrics, "/backup?max_rtd=1").status == 503 })
    let held = try parseMetrics(try get(backupMetrics, "/metrics").body)
    XCTAssertEqual(value(held, "understudy_updater_stopped"), 1)
    XCTAssertGreaterThan(value(held, "understudy_backlog_records") ?? 0, 0)
    XCTAssertEqual(try understudy(["updater", "start", "--node", pair.backup]).status, 0)
    try pair.waitForBackup()
    XCTAssertTrue(try eventually(20) { try get(backupMetrics, "/backup?max_rtd=5").status == 200 })

    // The primary restarted: the backup's link drops (9011) and it reconnects.
    try primary.stop()
    XCTAssertTrue(try eventually(20) { try get(backupMetrics, "/backup?max_rtd=5").status == 200 })
    XCTAssertTrue(
      try eventually(20) {
        value(try parseMetrics(try get(backupMetrics, "/metrics").body), "understudy_link_reconnects_total") ?? 0 >= 1
      })
    let restarted = try Daemon(node: pair.primary)
    XCTAssertTrue(
      try eventually(20) {
        value(try parseMetrics(try get(backupMetrics, "/metrics").body), "understudy_link_connected") == 1
      })

    // The backup's diagnostic lines are JSON, one object a line.
    try Daemon.stopNode(pair.backup)
    backup.waitUntilExit()
    let lines = try String(contentsOfFile: backupLog, encoding: .utf8).split(separator: "\n")
    XCTAssertGreaterThan(lines.count, 2)
    for line in lines {
      let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      XCTAssertNotNil(object?["message"], "not a JSON log line: \(line)")
      try assertConforms(object, to: "log-line.schema.json")
    }
    XCTAssertTrue(lines.contains { $0.contains("\"code\":9001") })
    try restarted.stop()
    // Text on the primary, as before swift-log; no row value or key in either.
    let primaryLog = try String(contentsOfFile: pair.primary + ".log", encoding: .utf8)
    XCTAssertTrue(primaryLog.contains("understudy: 9001 "), primaryLog)
    let key = try Data(contentsOf: URL(fileURLWithPath: pair.primary + "/secret.key"))
    for log in [primaryLog, try String(contentsOfFile: backupLog, encoding: .utf8)] {
      XCTAssertFalse(log.contains("zebra-row-value-7731"))
      XCTAssertFalse(log.contains(String(decoding: key, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
    }
  }

  func testBadMetricsAddressOrPortInUse() throws {
    let pair = try Pair(self)
    let bad = try understudy(["start", "--node", pair.primary, "--metrics", "nowhere"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("nowhere"), bad.stderr)
    let json = try understudy(["start", "--node", pair.primary, "--metrics", "nowhere", "--log-format", "json"])
    XCTAssertNotEqual(json.status, 0)
    let line = try JSONSerialization.jsonObject(with: Data(json.stderr.utf8)) as? [String: Any]
    XCTAssertTrue((line?["message"] as? String)?.contains("nowhere") == true, json.stderr)
    XCTAssertEqual(line?["level"] as? String, "critical")
    let named = try understudy(["start", "--node", pair.primary, "--metrics", "example.org:9000"])
    XCTAssertNotEqual(named.status, 0)
    XCTAssertTrue(named.stderr.contains("example.org:9000"), named.stderr)
    let badSix = try understudy(["start", "--node", pair.primary, "--metrics", "[::g]:9000"])
    XCTAssertNotEqual(badSix.status, 0)
    XCTAssertTrue(badSix.stderr.contains("[::g]:9000"), badSix.stderr)

    // An IPv6 address serves as an IPv4 one does.
    let sixPort = freePort()
    try setMetrics(pair.primary, "[::1]:\(sixPort)")
    let six = try Daemon(node: pair.primary)
    XCTAssertTrue(eventually(10) { (try? get(sixPort, "/health", host: "[::1]"))?.status == 200 })
    XCTAssertEqual(try get(sixPort, "/primary", host: "[::1]").status, 200)
    try six.stop()

    // A port someone else listens on (the link's own listener holds it).
    let port = freePort()
    let taken = try Listener(address: try HostPort(parsing: "127.0.0.1:\(port)"))
    defer { withExtendedLifetime(taken) {} }
    let inUse = try understudy(["start", "--node", pair.primary, "--metrics", "127.0.0.1:\(port)"])
    XCTAssertNotEqual(inUse.status, 0)
    XCTAssertTrue(inUse.stderr.contains("127.0.0.1:\(port)"), inUse.stderr)
  }
}

extension Daemon {
  /// `understudy stop --node NODE`, which must succeed.
  static func stopNode(_ node: String) throws {
    let outcome = try understudy(["stop", "--node", node])
    XCTAssertEqual(outcome.status, 0, outcome.stderr)
  }
}
