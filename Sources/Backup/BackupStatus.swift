// What `status` reports for a backup: its primary and link, how far the image trail is
// acknowledged, how far the database is applied, the safe MAT position, RTD and the
// backlog between acknowledged and applied.

import Apply
import AuditTrail
import Foundation
import Node
import SQLiteSupport

public struct BackupStatus: Sendable {
  public var node: String
  public var nodeId: NodeID
  public var generation: Generation
  public var database: String
  public var context: String
  public var primary: String
  public var daemonRunning: Bool
  public var connected: Bool
  public var acked: MATPosition?
  public var applied: MATPosition?
  public var lastTxid: TransactionID?
  public var safe: MATPosition?
  public var primaryTrailEnd: MATPosition?
  public var rtdReceiver: Double
  public var rtdUpdater: Double
  public var backlogRecords: Int
  public var backlogBytes: Int
  public var lastError: String?
  public var updaterStopped: String?
  /// Connected, but no whole frame for more than `stalledAfter`: when the last one came.
  public var linkStalledSince: Int64?
  public var updaterWaiting: String?
  /// The backup it receives from when that is a relay (a cascade), not the primary.
  public var relayedBy: NodeID?
  /// The operator's stop point for the updater (`updater stop`), whether or not a
  /// daemon runs; with one, whether its updater honours it and stands at it.
  public var updaterStop: UpdaterStop?
  public var updaterStopAcknowledged = false
  public var updaterStopReached = false

  /// Four of the primary's heartbeat intervals.
  public static let stalledAfter = 2.0

  struct Runtime: Decodable {
    var connected: Bool
    var acked: MATPosition?
    var applied: MATPosition?
    var primaryTrailEnd: MATPosition?
    var rtdReceiver: Double
    var rtdUpdater: Double
    var lastError: String?
    var updaterStopped: String?
    var lastFrameMicros: Int64?
    var updaterWaiting: String?
    var relayedBy: NodeID?
    var updaterStopID: String?
    var updaterStopReached: Bool?
  }

  /// The running daemon's link as it last published it, read without walking the
  /// backlog (takeover reads it several times a second): whether it is up, and through
  /// which relay.
  public static func link(_ layout: NodeLayout) throws -> (connected: Bool, relayedBy: NodeID?) {
    let runtime = try StateFile.read(Runtime.self, at: BackupProgress.runtimePath(layout))
    return (runtime?.connected ?? false, runtime?.relayedBy)  // none yet: a daemon starting
  }

  public static func read(node: String) throws -> BackupStatus {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .backup, command: "backup status")
    }
    let running = DaemonLock.isHeld(layout)
    // What the running daemon reports. Unreadable while it runs is an error (takeover
    // decides on `connected`); left by a daemon that is gone, it is only news, shown.
    var runtime: Runtime?
    var runtimeProblem: String?
    do {
      runtime = try StateFile.read(Runtime.self, at: BackupProgress.runtimePath(layout))
    } catch {
      if running { throw error }
      runtimeProblem = "\(error)"
    }
    var state: CommitState?
    if FileManager.default.fileExists(atPath: config.database) {
      state = try CommitState.read(databaseAt: config.database)
    }
    // The image trail's end and the backlog, read from disk.
    var acked = state?.end
    var records = 0
    var bytes = 0
    if let from = state?.end, layout.image.fileExists(sno: from.sno) {
      let reader = try TrailReader(directory: layout.image, from: from)
      loop: while true {
        switch try reader.next() {
        case .record(let r):
          records += 1
          bytes += r.record.size
          acked = r.end
        case .end(let p), .tornTail(let p, _):
          acked = p
          break loop
        }
      }
    }
    let stop = try UpdaterStop.read(layout)
    let honoured = running && stop != nil && runtime?.updaterStopID == stop?.id
    var status = BackupStatus(
      node: layout.root, nodeId: config.nodeId, generation: config.generation, database: config.database,
      context: config.contextName, primary: config.primary ?? "", daemonRunning: running,
      connected: running && (runtime?.connected ?? false), acked: acked, applied: state?.end,
      lastTxid: state?.lastTxid, safe: try SafePosition.read(layout)?.safe, primaryTrailEnd: runtime?.primaryTrailEnd,
      rtdReceiver: running ? runtime?.rtdReceiver ?? 0 : 0, rtdUpdater: running ? runtime?.rtdUpdater ?? 0 : 0,
      backlogRecords: records, backlogBytes: bytes, lastError: running ? runtime?.lastError : runtimeProblem,
      updaterStopped: running ? runtime?.updaterStopped : nil,
      linkStalledSince: running && runtime?.connected == true
        ? runtime?.lastFrameMicros.flatMap {
          Double(Clock.nowMicros() - $0) / 1e6 > stalledAfter ? $0 : nil
        } : nil,
      updaterWaiting: running ? runtime?.updaterWaiting : nil, relayedBy: running ? runtime?.relayedBy : nil)
    status.updaterStop = stop
    status.updaterStopAcknowledged = honoured
    status.updaterStopReached = honoured && runtime?.updaterStopReached == true
    return status
  }

  /// The stop point as `status` shows it, or null.
  var updaterStopJSON: JSON {
    guard let updaterStop else { return .null }
    return .object([
      ("id", .string(updaterStop.id)), ("at", updaterStop.point.json), ("acknowledged", .bool(updaterStopAcknowledged)),
      ("reached", .bool(updaterStopReached)),
    ])
  }

  public var json: JSON {
    let fields: [(String, JSON)] = [
      ("node", .string(node)), ("nodeId", .string(nodeId.description)), ("role", .string("backup")),
      ("generation", .int(Int64(generation.rawValue))), ("database", .string(database)),
      ("context", .string(context)), ("primary", .string(primary)), ("daemon", .bool(daemonRunning)),
      ("connected", .bool(connected)), ("trailEnd", acked?.json ?? .null), ("durableEnd", acked?.json ?? .null),
      ("acked", acked?.json ?? .null), ("applied", applied?.json ?? .null),
      ("lastTxid", lastTxid.map { .int(Int64($0.rawValue)) } ?? .null), ("safe", safe?.json ?? .null),
      ("primaryTrailEnd", primaryTrailEnd?.json ?? .null),
      ("rtdSeconds", .object([("receiver", .double(rtdReceiver)), ("updater", .double(rtdUpdater))])),
      ("backlog", .object([("records", .int(Int64(backlogRecords))), ("bytes", .int(Int64(backlogBytes)))])),
      ("lastError", lastError.map(JSON.string) ?? .null), ("updaterStopped", updaterStopped.map(JSON.string) ?? .null),
      ("linkStalledSince", linkStalledSince.map { .string(isoTime(micros: $0)) } ?? .null),
      ("updaterWaiting", updaterWaiting.map(JSON.string) ?? .null),
      ("relayedBy", relayedBy.map { .string($0.description) } ?? .null),
    ]
    return .object(fields + [("updaterStop", updaterStopJSON)])
  }
}
