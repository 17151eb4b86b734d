// The numbers `/metrics` serves, computed when scraped from the same code `status` uses
// (NodeStatus, BackupStatus), so the two agree; swift-metrics gauges and counters backed by
// swift-prometheus's registry, which renders the text. Schemas/metrics.md lists each one.

import AuditTrail
import Backup
import Foundation
import Metrics
import Node
import Primary
import Prometheus

/// What one scrape found, also what the health endpoints decide on.
public struct NodeSnapshot: Sendable {
  public var role: Role
  public var primary: NodeStatus?
  public var backup: BackupStatus?
  public var superseded: Bool
}

public final class NodeMetrics: @unchecked Sendable {
  // @unchecked: a scrape runs under `lock`; the registry is thread-safe itself.
  private let layout: NodeLayout
  private let registry = PrometheusCollectorRegistry()
  private let factory: PrometheusMetricsFactory
  private let lock = NSLock()
  private let events: EventCounts
  private var gauges: [String: Metrics.Gauge] = [:]
  /// The gauges set by the scrape under way: the others (a backup gone, the role that was)
  /// are dropped at its end, not served stale.
  private var fresh: Set<String> = []
  private var counters: [String: (counter: Metrics.Counter, value: Int64)] = [:]
  private var lastApplied: (time: Double, bytes: Double)?

  public init(layout: NodeLayout) {
    self.layout = layout
    factory = PrometheusMetricsFactory(registry: registry)
    events = EventCounts(layout: layout)
  }

  /// A position as a byte count: `(sno - 1) * trailFileSize + rba`, the offset it would
  /// have in the trail's files laid end to end if every earlier file had this node's
  /// configured size (files are made that size; only a record larger than a file makes
  /// one longer). Differences within one file, and across files of the configured size,
  /// are exact bytes.
  public static func bytes(_ p: MATPosition, fileSize: Int) -> Double {
    Double(UInt64(p.sno - 1) * UInt64(fileSize) + p.rba)
  }

  public func snapshot() throws -> NodeSnapshot {
    let config = try layout.loadConfig()
    switch config.role {
    case .primary:
      return NodeSnapshot(
        role: .primary, primary: try NodeStatus.read(node: layout.root), backup: nil,
        superseded: config.superseded != nil)
    case .backup:
      return NodeSnapshot(
        role: .backup, primary: nil, backup: try BackupStatus.read(node: layout.root),
        superseded: config.superseded != nil)
    }
  }

  private func gauge(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
    let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
    let g = gauges[key] ?? Metrics.Gauge(label: name, dimensions: labels, factory: factory)
    gauges[key] = g
    fresh.insert(key)
    g.record(value)
  }

  /// Brings a counter up to `total` (it only ever grows by the difference).
  private func counter(_ name: String, _ labels: [(String, String)] = [], _ total: Int64) {
    let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
    var entry = counters[key] ?? (Metrics.Counter(label: name, dimensions: labels, factory: factory), 0)
    if total > entry.value {
      entry.counter.increment(by: total - entry.value)
      entry.value = total
    }
    counters[key] = entry
  }

  /// The Prometheus text for one scrape.
  public func scrape() throws -> String {
    try lock.withLock {
      let config = try layout.loadConfig()
      let size = config.trailFileSize
      let snap = try snapshot()
      fresh = []
      for role in ["primary", "backup"] {
        gauge("understudy_role", [("role", role)], snap.role.rawValue == role ? 1 : 0)
      }
      gauge("understudy_generation", [], Double(config.generation.rawValue))
      gauge("understudy_trail_file_size_bytes", [], Double(size))
      var appliedBytes: Double?
      if let s = snap.primary {
        gauge("understudy_mat_durable_end_bytes", [], Self.bytes(s.durableEnd, fileSize: size))
        gauge("understudy_connected_backups", [], Double(s.backups.count))
        gauge("understudy_writes_blocked", [], s.writesBlocked == nil ? 0 : 1)
        gauge("understudy_trail_disk_bytes", [("trail", "mat")], Double(s.matBytes))
        for b in s.backups {
          let l = [("backup", b.nodeID.description)]
          if let a = b.acked { gauge("understudy_backup_acked_bytes", l, Self.bytes(a, fileSize: size)) }
          if let a = b.applied { gauge("understudy_backup_applied_bytes", l, Self.bytes(a, fileSize: size)) }
        }
        gauge("understudy_last_txid", [], Double(s.lastTxid.rawValue))
      }
      if let s = snap.backup {
        let l = [("backup", s.nodeId.description)]
        if let a = s.acked { gauge("understudy_backup_acked_bytes", l, Self.bytes(a, fileSize: size)) }
        if let a = s.applied {
          appliedBytes = Self.bytes(a, fileSize: size)
          gauge("understudy_backup_applied_bytes", l, appliedBytes!)
        }
        if let a = s.safe { gauge("understudy_backup_safe_bytes", l, Self.bytes(a, fileSize: size)) }
        gauge("understudy_rtd_seconds", [("stage", "receiver")], s.rtdReceiver)
        gauge("understudy_rtd_seconds", [("stage", "updater")], s.rtdUpdater)
        gauge("understudy_backlog_records", [], Double(s.backlogRecords))
        gauge("understudy_backlog_bytes", [], Double(s.backlogBytes))
        gauge("understudy_link_connected", [], s.connected ? 1 : 0)
        gauge("understudy_updater_stopped", [], s.updaterStopped != nil || s.updaterStopReached ? 1 : 0)
        gauge("understudy_trail_disk_bytes", [("trail", "image")], Double(Self.diskBytes(layout.image)))
        if let t = s.lastTxid { gauge("understudy_last_txid", [], Double(t.rawValue)) }
      }
      // Apply rate: applied bytes per second between this scrape and the previous one.
      let now = Date().timeIntervalSince1970
      if let bytes = appliedBytes {
        if let last = lastApplied, now > last.time {
          gauge("understudy_apply_rate_bytes_per_second", [], max(0, bytes - last.bytes) / (now - last.time))
        } else {
          gauge("understudy_apply_rate_bytes_per_second", [], 0)
        }
        lastApplied = (now, bytes)
      }
      let counts = try events.update()
      for (code, n) in counts.byCode { counter("understudy_events_total", [("code", String(code))], Int64(n)) }
      counter("understudy_link_reconnects_total", [], Int64(counts.dropsSinceStart))
      for (key, g) in gauges where !fresh.contains(key) {
        g.destroy()
        gauges[key] = nil
      }
      fresh = []
      var text = registry.emitToString()
      // Zero until some writer has committed (and made the file).
      text += Self.commitText(try CommitStatsFile.read(layout) ?? CommitStatsFile())
      return text
    }
  }

  /// The writers' commits (CommitStats.swift) as a counter and a histogram, rendered here
  /// because the buckets were counted in other processes.
  static func commitText(_ s: CommitStatsFile) -> String {
    var out = "# TYPE understudy_commits_total counter\nunderstudy_commits_total \(s.commits)\n"
    out += "# TYPE understudy_commit_latency_seconds histogram\n"
    var cumulative = 0
    for (i, bound) in CommitStatsFile.bounds.enumerated() {
      cumulative += s.buckets[i]
      out += "understudy_commit_latency_seconds_bucket{le=\"\(bound)\"} \(cumulative)\n"
    }
    cumulative += s.buckets.last ?? 0
    out += "understudy_commit_latency_seconds_bucket{le=\"+Inf\"} \(cumulative)\n"
    out += "understudy_commit_latency_seconds_sum \(s.latencySumSeconds)\n"
    out += "understudy_commit_latency_seconds_count \(cumulative)\n"
    return out
  }

  /// The bytes of a trail's files, one stat each (no reading).
  static func diskBytes(_ trail: TrailDirectory) -> Int {
    var total = 0
    for sno in (try? trail.snos()) ?? [] {
      var info = stat()
      if stat(trail.filePath(sno: sno), &info) == 0 { total += Int(info.st_size) }
    }
    return total
  }
}

/// The events in `events.jsonl` counted by code, read on from where the last scrape
/// stopped (the log only grows), and the link drops since the daemon started.
final class EventCounts {
  private let layout: NodeLayout
  private var offset = 0
  private var startOffset: Int
  private(set) var byCode: [Int: Int] = [:]
  private var drops = 0

  init(layout: NodeLayout) {
    self.layout = layout
    var info = stat()
    startOffset = stat(layout.events, &info) == 0 ? Int(info.st_size) : 0
  }

  func update() throws -> (byCode: [Int: Int], dropsSinceStart: Int) {
    let start = offset
    let (lines, end) = try EventLog.read(layout, from: offset)
    var position = start
    for line in lines {
      let lineStart = position
      position += line.utf8.count + 1
      guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let code = object["code"] as? Int
      else { continue }
      byCode[code, default: 0] += 1
      if code == EventCode.linkDropped.rawValue && lineStart >= startOffset { drops += 1 }
    }
    offset = end
    return (byCode, drops)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
